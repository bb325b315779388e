package main

import (
	"bufio"
	"bytes"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
)

// setMemoryLimit sets HOOKSTREAM_MEMORY_LIMIT as the Go runtime's soft
// memory limit, unless GOMEMLIMIT is set, which the runtime has applied
// already. 'auto' is 80 % of the memory available to the process (its
// cgroups' limits or the host's memory; none where those cannot be read), a
// guard against running out of memory; below it Go's GC lets the heap grow
// to twice what is live. Most of an embedded hookstream's live heap is the
// NATS server's: an index entry for every job record and attempt log kept,
// the message ids remembered for de-duplication, and its file-store caches
// (docs/performance.md, findings 17 and 19). The limit is soft: a live heap
// above it is not refused, the GC only runs more often (at most about half
// the CPU).
func setMemoryLimit(s *settings, getenv func(string) string, available func() int64, logger *slog.Logger) {
	if getenv("GOMEMLIMIT") != "" {
		return
	}
	limit, auto, _ := s.memoryLimit() // validated with the settings
	if auto {
		limit = available() / 10 * 8
	}
	if limit <= 0 {
		if auto {
			logger.Info("no memory limit: the memory available cannot be read here")
		}
		return
	}
	debug.SetMemoryLimit(limit)
	logger.Info("memory limit set", "bytes", limit, "auto", auto)
}

// availableMemory is the least of the memory limits of the process's
// cgroup and its parents (v2 or v1) and the host's memory, in bytes; 0 when
// none can be read (for example on another OS than Linux).
func availableMemory() int64 { return availableMemoryIn("/") }

// availableMemoryIn is availableMemory with /proc and /sys under root.
func availableMemoryIn(root string) int64 {
	var least int64
	keep := func(n int64) {
		if n > 0 && (least == 0 || n < least) {
			least = n
		}
	}
	if b, err := os.ReadFile(filepath.Join(root, "proc/self/cgroup")); err == nil {
		for line := range strings.Lines(string(b)) {
			dir, file, p, ok := memoryCgroup(line)
			if !ok {
				continue
			}
			// A limit on any cgroup from the process's up to the root
			// bounds the process.
			for ; ; p = path.Dir(p) {
				if b, err := os.ReadFile(filepath.Join(root, dir, p, file)); err == nil {
					n, _ := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64) // "max": no limit
					keep(n)
				}
				if p == "/" {
					break
				}
			}
		}
	}
	if f, err := os.Open(filepath.Join(root, "proc/meminfo")); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if fields := strings.Fields(sc.Text()); len(fields) >= 2 && fields[0] == "MemTotal:" { // MemTotal: <n> kB
				kib, _ := strconv.ParseInt(fields[1], 10, 64)
				keep(kib << 10)
				break
			}
		}
	}
	return least
}

// memoryCgroup reads a line of /proc/self/cgroup, hierarchy:controllers:path:
// the v2 line ("0::/path") or v1's line of the memory controller. It
// returns the directory of that hierarchy under /sys, its limit's file, and
// the cgroup's path.
func memoryCgroup(line string) (dir, file, p string, ok bool) {
	parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
	switch {
	case len(parts) != 3:
		return "", "", "", false
	case parts[1] == "":
		return "sys/fs/cgroup", "memory.max", path.Clean("/" + parts[2]), true
	case slices.Contains(strings.Split(parts[1], ","), "memory"):
		return "sys/fs/cgroup/memory", "memory.limit_in_bytes", path.Clean("/" + parts[2]), true
	}
	return "", "", "", false
}

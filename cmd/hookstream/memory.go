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
// cgroups' limits or the host's memory; none where those cannot be read),
// a guard against running out of memory; below it Go's GC lets the heap grow to twice what is live. Most
// of an embedded hookstream's live heap is the NATS server's: an index
// entry for every job record and attempt log kept, the message ids
// remembered for de-duplication, and its file-store caches
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
			logger.Info("no memory limit: the memory available cannot be read here", "auto", auto)
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
	// Each line of /proc/self/cgroup is hierarchy:controllers:path; v2 has
	// "0::/path", v1 a line whose controllers include memory. A limit on
	// any cgroup from the process's up to the root bounds the process.
	if b, err := os.ReadFile(filepath.Join(root, "proc/self/cgroup")); err == nil {
		for line := range strings.Lines(string(b)) {
			parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
			if len(parts) != 3 {
				continue
			}
			dir, file := "sys/fs/cgroup", "memory.max"
			if parts[1] != "" {
				if !slices.Contains(strings.Split(parts[1], ","), "memory") {
					continue
				}
				dir, file = "sys/fs/cgroup/memory", "memory.limit_in_bytes"
			}
			for p := path.Clean("/" + parts[2]); ; p = path.Dir(p) {
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
			if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
				kib, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
				keep(kib << 10)
				break
			}
		}
	}
	return least
}

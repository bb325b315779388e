package main

import (
	"bufio"
	"bytes"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// setMemoryLimit sets HOOKSTREAM_MEMORY_LIMIT as the Go runtime's soft
// memory limit, unless GOMEMLIMIT is set, which the runtime has applied
// already. 'auto' is 80 % of the memory available to the process (its
// cgroup's limit or the host's memory), a guard against running out of
// memory; below it Go's GC lets the heap grow to twice what is live. Most
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
		return
	}
	debug.SetMemoryLimit(limit)
	logger.Info("memory limit set", "bytes", limit, "auto", auto)
}

// availableMemory is the least of the cgroup's memory limit (v2 or v1) and
// the host's memory, in bytes; 0 when none can be read.
func availableMemory() int64 {
	var least int64
	keep := func(n int64) {
		if n > 0 && (least == 0 || n < least) {
			least = n
		}
	}
	for _, path := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		if b, err := os.ReadFile(path); err == nil {
			n, _ := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64) // "max": no limit
			keep(n)
		}
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
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

package main

import (
	"log/slog"
	"runtime/debug"
)

// setMemoryLimit sets HOOKSTREAM_MEMORY_LIMIT as the Go runtime's soft
// memory limit, unless GOMEMLIMIT is set, which the runtime has applied
// already. Most of an embedded hookstream's memory is the NATS server's: its
// file-store block cache, which grows with throughput, and an index entry
// for every job record and attempt log kept (docs/performance.md, finding
// 17); without a limit Go's GC lets the heap reach twice what is live. The
// limit is soft: a live heap above it is not refused, the GC only runs more
// often (at most about half the CPU).
func setMemoryLimit(s *settings, getenv func(string) string, logger *slog.Logger) {
	if getenv("GOMEMLIMIT") != "" {
		return
	}
	limit, _ := s.memoryLimit() // validated with the settings
	if limit == 0 {
		return
	}
	debug.SetMemoryLimit(limit)
	logger.Info("memory limit set", "bytes", limit)
}

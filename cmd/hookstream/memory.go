package main

import (
	"log/slog"
	"runtime/debug"
)

// setMemoryLimit sets HOOKSTREAM_MEMORY_LIMIT as the Go runtime's soft
// memory limit, unless GOMEMLIMIT is set, which the runtime has applied
// already. Most of an embedded hookstream's memory is the NATS server's: its
// file-store block cache, which grows with throughput, and an index entry
// for every job record and attempt log kept (docs/performance.md, findings
// 17 and 19); without a limit Go's GC lets the heap reach twice what is
// live. The limit is soft: a live heap above it is not refused, the GC only
// runs more often (at most about half the CPU).
//
// It returns the base of an adaptive limit, for 'auto' with no GOMEMLIMIT:
// in embedded mode the all-in-one process then raises the limit above it by
// twice the kept keys' index, so that a growing index does not leave the GC
// running all the time. Zero: the limit stays as set.
func setMemoryLimit(s *settings, getenv func(string) string, logger *slog.Logger) (adaptiveBase int64) {
	if getenv("GOMEMLIMIT") != "" {
		return 0
	}
	limit, auto, _ := s.memoryLimit() // validated with the settings
	if limit == 0 {
		return 0
	}
	debug.SetMemoryLimit(limit)
	logger.Info("memory limit set", "bytes", limit, "auto", auto)
	if auto {
		return limit
	}
	return 0
}

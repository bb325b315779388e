package processor

import "time"

// WriteProgressEvery sets how often a running job's progress is written.
func WriteProgressEvery(cfg *Config, every time.Duration) { cfg.progressEvery = every }

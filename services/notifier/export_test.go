package notifier

import "time"

// ShortParking makes drains look whether they are empty every 100 ms and
// the parked stream be scanned every 500 ms.
func ShortParking(cfg *Config) {
	cfg.parkedCheck, cfg.parkedRescan = 100*time.Millisecond, 500*time.Millisecond
}

// HoldAttemptLogs holds every attempt log's write until gate is closed.
func HoldAttemptLogs(cfg *Config, gate <-chan struct{}) { cfg.logGate = gate }

// GiveUpParkedAfter makes drains dead-letter parked deliveries parked for
// age instead of the parked stream's MaxAge less a margin.
func GiveUpParkedAfter(cfg *Config, age time.Duration) { cfg.parkedGiveUp = age }

package notifier

import (
	"time"

	"github.com/hookstream/hookstream/shared/endpoints"
)

// ShortParking makes drains look whether they are empty every 100 ms and
// the parked stream be scanned every 500 ms.
func ShortParking(cfg *Config) {
	cfg.parkedCheck, cfg.parkedRescan = 100*time.Millisecond, 500*time.Millisecond
}

// FewDrains lets a process run at most n drains at once.
func FewDrains(cfg *Config, n int) { cfg.maxDrains = n }

// MostDrains is the most drains the notifier has run at once.
func (n *Notifier) MostDrains() int {
	n.parking.mu.Lock()
	defer n.parking.mu.Unlock()
	return n.parking.most
}

// ParkAfter parks a delivery put back n times for its endpoint's limits.
func ParkAfter(cfg *Config, n uint64) { cfg.parkAfter = n }

// HoldAttemptLogs holds every attempt log's write until gate is closed.
func HoldAttemptLogs(cfg *Config, gate <-chan struct{}) { cfg.logGate = gate }

// GiveUpParkedAfter makes drains dead-letter parked deliveries parked for
// age instead of the parked stream's MaxAge less a margin.
func GiveUpParkedAfter(cfg *Config, age time.Duration) { cfg.parkedGiveUp = age }

// SlowAfter makes an endpoint slow (slow.go) after d instead of the
// const slowAfter; a negative d: never.
func SlowAfter(cfg *Config, d time.Duration) { cfg.slowAfter = d }

// DirectInUse is how many of fan-out's direct slots are taken.
func (n *Notifier) DirectInUse() int { return len(n.direct) }

// Endpoint is the endpoint as the notifier's index holds it.
func (n *Notifier) Endpoint(tenant, id string) *endpoints.Endpoint { return n.index.Get(tenant, id) }

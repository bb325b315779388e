package notifier

import (
	"context"
	"time"

	"golang.org/x/time/rate"
)

// paceSlice is how much of a second's parks a pacer lets go at once.
const paceSlice = 20 * time.Millisecond

// pacer lets at most a rate of callers a second pass, in groups of a slice's
// worth: the parks of one group publish at the same moment, so the group
// commit writes most of them as one batch, with one disk sync in durable
// mode. Let through one at a time, as by a plain rate.Limiter, most parks were
// a sync of their own, about twice as many syncs at 2,000 parks a second,
// and a healthy endpoint's writes waited behind them (docs/performance.md,
// finding 23).
type pacer struct {
	limiter *rate.Limiter
	group   int
	// turn is held by the caller that waits for the next group; left is
	// how many passes of the current group remain, read and written only
	// while turn is held.
	turn chan struct{}
	left int
}

// newPacer paces perSecond passes a second in groups of slice's worth (at
// least one).
func newPacer(perSecond int, slice time.Duration) *pacer {
	group := max(1, int(float64(perSecond)*slice.Seconds()))
	return &pacer{limiter: rate.NewLimiter(rate.Limit(perSecond), group), group: group, turn: make(chan struct{}, 1)}
}

// Wait blocks until the caller may pass, or ctx ends.
func (p *pacer) Wait(ctx context.Context) error {
	select {
	case p.turn <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-p.turn }()
	if p.left == 0 {
		if err := p.limiter.WaitN(ctx, p.group); err != nil {
			return err
		}
		p.left = p.group
	}
	p.left--
	return nil
}

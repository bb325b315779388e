package notifier

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestPacerLetsGroupsPass checks that parks pass a slice's worth at a time:
// the group after a spent one needs the whole slice's tokens at once, and
// its other members then pass without waiting for the limiter. Deadlines
// make it deterministic: rate.Limiter refuses at once a wait that would
// pass a context's deadline.
func TestPacerLetsGroupsPass(t *testing.T) {
	t.Parallel()
	p := newPacer(2000)
	require.Equal(t, 40, p.group, "20 ms of 2,000 a second")
	short := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		t.Cleanup(cancel)
		return ctx
	}
	for i := range p.group {
		require.NoError(t, p.Wait(short()), "the first group passes at once (pass %d)", i)
	}
	require.Error(t, p.Wait(short()), "the next group needs 20 ms of tokens")
	require.NoError(t, p.Wait(context.Background()))
	for i := 1; i < p.group; i++ {
		require.NoError(t, p.Wait(short()), "the rest of a group passes at once (pass %d)", i)
	}
	require.Error(t, p.Wait(short()))

	require.Equal(t, 1, newPacer(10).group, "a slow pace passes one at a time")
}

func TestPacerWaitEndsWithItsContext(t *testing.T) {
	t.Parallel()
	p := newPacer(1)
	require.NoError(t, p.Wait(context.Background()))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, p.Wait(ctx), context.Canceled)
}

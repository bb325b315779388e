package notifier

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"
)

// TestPacerLetsGroupsPass checks that callers pass a slice's worth at a time:
// a group takes the whole slice's tokens at once, and its other members then
// pass without the limiter. A 10 s slice keeps it deterministic: rate.Limiter
// refuses at once a wait that would pass a context's deadline, and a group's
// tokens take 10 s to come back.
func TestPacerLetsGroupsPass(t *testing.T) {
	t.Parallel()
	p := newPacer(4, 10*time.Second)
	require.Equal(t, 40, p.group)
	soon := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		t.Cleanup(cancel)
		return ctx
	}
	for i := range p.group {
		require.NoError(t, p.Wait(soon()), "the first group passes at once (pass %d)", i)
	}
	require.Error(t, p.Wait(soon()), "the next group needs a whole group's tokens")

	// A full bucket again: the next caller takes all of it, and the rest of
	// its group passes with the limiter empty.
	p.limiter = rate.NewLimiter(p.limiter.Limit(), p.group)
	require.NoError(t, p.Wait(soon()))
	require.Less(t, p.limiter.TokensAt(time.Now()), 1.0, "the group took every token")
	for i := 1; i < p.group; i++ {
		require.NoError(t, p.Wait(soon()), "the rest of a group passes at once (pass %d)", i)
	}
	require.Error(t, p.Wait(soon()))

	require.Equal(t, 40, newPacer(2000, paceSlice).group, "20 ms of 2,000 a second")
	require.Equal(t, 1, newPacer(10, paceSlice).group, "a slow pace passes one at a time")
}

func TestPacerWaitEndsWithItsContext(t *testing.T) {
	t.Parallel()
	p := newPacer(1, paceSlice)
	require.NoError(t, p.Wait(context.Background()))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, p.Wait(ctx), context.Canceled)
}

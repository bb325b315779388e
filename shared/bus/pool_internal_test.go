package bus

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPoolRunsEveryFunction(t *testing.T) {
	t.Parallel()
	p := NewPool()
	var ran atomic.Int64
	var wg sync.WaitGroup
	release := make(chan struct{})
	for range 100 {
		wg.Add(1)
		p.Go(func() { // all at once: none waits for another
			defer wg.Done()
			<-release
			ran.Add(1)
		})
	}
	close(release)
	wg.Wait()
	require.EqualValues(t, 100, ran.Load())
}

// TestPoolKeepsGoroutines: once a function is done, its goroutine waits for
// the next one.
func TestPoolKeepsGoroutines(t *testing.T) {
	t.Parallel()
	p := NewPool()
	done := make(chan struct{})
	p.Go(func() { done <- struct{}{} })
	<-done
	require.Eventually(t, func() bool {
		select {
		case p.work <- func() { done <- struct{}{} }: // only an idle goroutine takes it
			return true
		default:
			return false
		}
	}, 5*time.Second, time.Millisecond)
	<-done
}

package notifier

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

type publisherFunc func(*nats.Msg) error

func (f publisherFunc) PublishMsg(_ context.Context, msg *nats.Msg, _ ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	return &jetstream.PubAck{}, f(msg)
}

// Logs in flight are bounded by their size: a log that would exceed the
// bound waits for the ones before it, and every log's then is called once
// it is written, failed or not.
func TestAttemptLogsBoundedBySize(t *testing.T) {
	t.Parallel()
	var written atomic.Int32
	gate := make(chan struct{})
	l := newAttemptLogs(publisherFunc(func(*nats.Msg) error {
		if written.Add(1) == 2 {
			return nats.ErrTimeout // the second write fails: its then is called all the same
		}
		return nil
	}), gate)
	logger := slog.New(slog.DiscardHandler)
	half := func() *nats.Msg {
		msg := nats.NewMsg("$KV.HOOKSTREAM_DELIVERY_LOG.acme.evt.msg")
		msg.Data = make([]byte, maxPendingLogBytes/2+1)
		return msg
	}
	var settled, stored atomic.Int32
	then := func(ok bool) {
		settled.Add(1)
		if ok {
			stored.Add(1)
		}
	}
	l.write(context.Background(), logger, half(), 1, then) // room: returns at once
	second := make(chan struct{})
	go func() {
		l.write(context.Background(), logger, half(), 1, then)
		close(second)
	}()
	select {
	case <-second:
		t.Fatal("a log beyond the size bound was taken while the first was in flight")
	case <-time.After(100 * time.Millisecond):
	}
	close(gate)
	<-second
	l.wait()
	require.Equal(t, int32(2), written.Load())
	require.Equal(t, int32(2), settled.Load())
	require.Equal(t, int32(1), stored.Load(), "then is told which write failed")
}

// A log is written up to its number of tries while its writes fail in a
// way a later one may not; one that can never be stored (too large) is
// over at once.
func TestAttemptLogTries(t *testing.T) {
	t.Parallel()
	logger := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		name      string
		failures  []error
		tries     int
		wantCalls int32
		wantOver  bool
	}{
		{name: "stored at the third try", failures: []error{nats.ErrTimeout, context.DeadlineExceeded}, tries: 3, wantCalls: 3, wantOver: true},
		{name: "every try fails", failures: []error{nats.ErrTimeout, nats.ErrTimeout, nats.ErrTimeout, nats.ErrTimeout}, tries: 3, wantCalls: 3, wantOver: false},
		{name: "one try", failures: []error{nats.ErrNoResponders}, tries: 1, wantCalls: 1, wantOver: false},
		{name: "too large: never", failures: []error{nats.ErrMaxPayload, nats.ErrMaxPayload}, tries: 3, wantCalls: 1, wantOver: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int32
			l := newAttemptLogs(publisherFunc(func(*nats.Msg) error {
				n := int(calls.Add(1))
				if n <= len(tc.failures) {
					return tc.failures[n-1]
				}
				return nil
			}), nil)
			l.pause = time.Millisecond
			result := make(chan bool, 1)
			l.write(context.Background(), logger, nats.NewMsg("$KV.HOOKSTREAM_DELIVERY_LOG.acme.evt.msg"), tc.tries, func(over bool) { result <- over })
			require.Equal(t, tc.wantOver, <-result)
			require.Equal(t, tc.wantCalls, calls.Load())
		})
	}
}

// A delivery given up on is acknowledged only once its attempt log, its
// only record, is stored; every other verdict stands either way.
func TestDeadLetteredOnlyOnceLogged(t *testing.T) {
	t.Parallel()
	require.Equal(t, deadLettered, deadLettered.onceLogged(true))
	require.Equal(t, unrecorded, deadLettered.onceLogged(false))
	for _, v := range []verdict{done, again, malformed} {
		require.Equal(t, v, v.onceLogged(false))
		require.Equal(t, v, v.onceLogged(true))
	}
}

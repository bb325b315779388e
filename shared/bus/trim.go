package bus

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultTrimInterval is how often [Trim] removes what consumers have
// acknowledged, by default.
const DefaultTrimInterval = 10 * time.Second

// trimCheck is how often Trim looks at the consumers for a quiet moment.
const trimCheck = 200 * time.Millisecond

// trimWarnEvery is how many failed checks of a stream in a row are logged once.
const trimWarnEvery = int(30 * time.Second / trimCheck)

// Trim removes from streams kept with LimitsPolicy the messages that their
// consumers have acknowledged, about every interval (DefaultTrimInterval
// when 0) until ctx ends. For each consumer's filter subject it purges, in
// one request, every message up to the lowest ack floor of the consumers
// whose filters overlap it. A subject that no consumer reads is never
// trimmed (MaxAge removes it).
//
// This is what a work queue does on every ack, but there each ack removes its
// message at once, and with a sync on every write each removal is a disk sync
// of its own (a tombstone). On a limits stream an ack only updates the
// consumer's state, which nats-server writes at most ten times a second, and
// one purge removes thousands of messages with one sync. A crash can lose the
// acks of the last 100 ms; those messages are delivered again, which the
// consumers of hookstream's streams already expect (at-least-once).
//
// An acknowledged message stays until every message of its subject before it
// is acknowledged too: a job waiting for its retry keeps the jobs of its type
// that came after it. Streams of another retention (work queues created by an
// older version) are left alone: acks remove messages there.
//
// A purge also empties the queue of messages due for redelivery of every
// consumer it touches (nats-server 2.15, consumer.purge): those come back
// only after another AckWait (30 s for hookstream's consumers). That queue is
// empty while a consumer has a pull request waiting or nothing pending, so
// Trim purges a subject once interval has passed and all its readers are
// quiet like that, and only when six intervals have passed without such a
// moment does it purge anyway. Purging seldom keeps the chance small that a
// redelivery is delayed; the price is that acknowledged messages stay up to
// an interval longer, counted toward the stream's size limit.
func Trim(ctx context.Context, js jetstream.JetStream, logger *slog.Logger, interval time.Duration, streams ...string) error {
	if interval <= 0 {
		interval = DefaultTrimInterval
	}
	trims := make([]*streamTrim, len(streams))
	for i, name := range streams {
		trims[i] = &streamTrim{name: name, every: interval, trimmed: map[string]uint64{}, last: map[string]time.Time{}}
	}
	tick := time.NewTicker(min(trimCheck, interval))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		for _, st := range trims {
			err := st.trim(ctx, js)
			switch {
			case err == nil || ctx.Err() != nil:
				st.failures = 0
			case st.failures%trimWarnEvery == 0: // the first of a run, then every 30 s
				st.failures++
				logger.Warn("trim acknowledged messages", "stream", st.name, "error", err)
			default:
				st.failures++
			}
		}
	}
}

// streamTrim is what Trim knows of one stream.
type streamTrim struct {
	name     string
	every    time.Duration
	stream   jetstream.Stream
	off      bool                 // not a limits stream
	trimmed  map[string]uint64    // filter subject → the floor purged to
	last     map[string]time.Time // filter subject → when it was purged
	failures int
}

// reader is one consumer as trimming sees it.
type reader struct {
	filters []string
	floor   uint64
	// quiet: its queue of messages due for redelivery is empty, because it
	// has a pull request waiting or nothing pending.
	quiet bool
}

// trim purges each filter subject of the stream's consumers up to the
// lowest ack floor among the consumers that read any of its messages, when
// it is time (see Trim).
func (st *streamTrim) trim(ctx context.Context, js jetstream.JetStream) error {
	if st.off {
		return nil
	}
	if st.stream == nil {
		stream, err := js.Stream(ctx, st.name)
		if err != nil {
			return err
		}
		if stream.CachedInfo().Config.Retention != jetstream.LimitsPolicy {
			st.off = true
			return nil
		}
		st.stream = stream
	}
	readers, err := st.readers(ctx)
	if err != nil {
		return err
	}
	for _, r := range readers {
		for _, filter := range r.filters {
			if err := st.purge(ctx, filter, readers); err != nil {
				return fmt.Errorf("purge %s: %w", filter, err)
			}
		}
	}
	return nil
}

func (st *streamTrim) readers(ctx context.Context) ([]reader, error) {
	lister := st.stream.ListConsumers(ctx)
	var readers []reader
	for ci := range lister.Info() {
		filters := ci.Config.FilterSubjects
		if ci.Config.FilterSubject != "" {
			filters = append(filters, ci.Config.FilterSubject)
		}
		if len(filters) == 0 {
			filters = []string{">"}
		}
		readers = append(readers, reader{filters: filters, floor: ci.AckFloor.Stream, quiet: ci.NumWaiting > 0 || ci.NumAckPending == 0})
	}
	return readers, lister.Err()
}

// purge removes the messages of filter that every consumer reading them has
// acknowledged, if that floor moved.
func (st *streamTrim) purge(ctx context.Context, filter string, readers []reader) error {
	floor, quiet := uint64(0), true
	first := true
	for _, r := range readers {
		for _, f := range r.filters {
			if server.SubjectsCollide(f, filter) {
				if first || r.floor < floor {
					floor = r.floor
				}
				first = false
				quiet = quiet && r.quiet
				break
			}
		}
	}
	since := time.Since(st.last[filter])
	if floor <= st.trimmed[filter] || since < st.every || (!quiet && since < 6*st.every) {
		return nil
	}
	opts := []jetstream.StreamPurgeOpt{jetstream.WithPurgeSequence(floor + 1)}
	if filter != ">" {
		opts = append(opts, jetstream.WithPurgeSubject(filter))
	}
	if err := st.stream.Purge(ctx, opts...); err != nil {
		return err
	}
	st.trimmed[filter], st.last[filter] = floor, time.Now()
	return nil
}

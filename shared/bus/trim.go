package bus

import (
	"context"
	"encoding/json"
	"errors"
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

// trimForce is how long a due purge waits at most for a quiet moment.
const trimForce = 5 * time.Minute

// trimWarnEvery is how many failed checks of a stream in a row are logged once.
const trimWarnEvery = int(30 * time.Second / trimCheck)

// TrimTarget is a stream for [Trim] and the consumer filter subjects it may
// purge.
type TrimTarget struct {
	Stream string
	// Trims reports whether Trim may purge a consumer's filter subject: a
	// subject all of whose messages are meant to be read by consumers with
	// that filter, such as one job type's. Not a wider one (a consumer on
	// everything would have Trim remove job types no processor reads yet, or
	// retry schedules), which only holds purges back.
	Trims func(filter string) bool
	// Keep, if set, keeps the messages stored less than Keep ago, acknowledged
	// or not, while the stream holds at most a sixteenth of its size limit:
	// a NATS server that restarts knows again the message ids of its
	// de-duplication window only from the messages it still holds. Where
	// the first message kept cannot be read, nothing is kept.
	Keep time.Duration
}

// Trim removes from streams kept with LimitsPolicy the messages that their
// consumers have acknowledged, about every interval (DefaultTrimInterval
// when 0), until ctx ends or no target is a limits stream; it returns nil.
// For each filter subject of a consumer that the target Trims, it purges, in
// one request, every message up to the lowest ack floor of all the stream's
// consumers whose filters overlap that subject.
//
// This is what a work queue does on every ack, but there each ack removes its
// message at once, and with a sync on every write each removal is a disk sync
// of its own (a tombstone). On a limits stream an ack only updates the
// consumer's state, which nats-server writes at most ten times a second, and
// one purge removes thousands of messages with one sync. A crash can lose the
// acks of the last 100 ms; those of the messages not yet purged are delivered
// again, which the consumers of hookstream's streams already expect
// (at-least-once).
//
// An acknowledged message stays until every message of its subject before it
// is acknowledged too: a job waiting for its retry keeps the jobs of its type
// that came after it. Streams of another retention (work queues created by an
// older version) are left alone: acks remove messages there.
//
// A purge also empties the queue of messages due for redelivery of every
// consumer it touches (nats-server 2.15, consumer.purge): those come back
// only after another AckWait (30 s for hookstream's consumers). That queue is
// empty while a consumer has nothing pending, so once a purge is due, Trim
// waits for a moment when every reader of the subject has nothing pending.
// (A pull request waiting is not enough: 45 messages due at once were lost
// from the queue while they were being handed out, in a test.) It purges
// regardless only when no such moment came for trimForce, or when the stream
// holds more than an eighth of its size limit. Purging seldom keeps the
// chance small that a redelivery is delayed; the price is that acknowledged
// messages stay longer, counted toward the stream's size limit.
func Trim(ctx context.Context, js jetstream.JetStream, logger *slog.Logger, interval time.Duration, targets ...TrimTarget) error {
	if interval <= 0 {
		interval = DefaultTrimInterval
	}
	trims := make([]*streamTrim, len(targets))
	for i, t := range targets {
		trims[i] = &streamTrim{TrimTarget: t, js: js, every: interval, filters: map[string]*filterTrim{}}
	}
	tick := time.NewTicker(min(trimCheck, interval))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		active := 0
		for _, st := range trims {
			err := st.trim(ctx, js)
			switch {
			case err == nil || ctx.Err() != nil:
				st.failures = 0
			case st.failures%trimWarnEvery == 0: // the first of a run, then every 30 s
				st.failures++
				logger.Warn("trim acknowledged messages", "stream", st.Stream, "error", err)
			default:
				st.failures++
			}
			if !st.off {
				active++
			}
		}
		if active == 0 {
			return nil
		}
	}
}

// streamTrim is what Trim knows of one stream.
type streamTrim struct {
	TrimTarget
	js       jetstream.JetStream
	every    time.Duration
	stream   jetstream.Stream
	off      bool // not a limits stream
	filters  map[string]*filterTrim
	failures int
	// keepFailing: the first message to Keep could not be read, and that
	// was told.
	keepFailing bool
}

// filterTrim is what Trim knows of one filter subject.
type filterTrim struct {
	trimmed uint64    // the floor purged to
	checked time.Time // when it was purged, or found with nothing to purge
	due     time.Time // since when a purge waits for a quiet moment
	kept    uint64    // Keep's first message kept, as found at keptAt
	keptAt  time.Time
}

// resting reports whether every filter subject of the stream was dealt
// with less than an interval ago, so that its consumers need not be read.
func (st *streamTrim) resting(now time.Time) bool {
	for _, ft := range st.filters {
		if now.Sub(ft.checked) >= st.every {
			return false
		}
	}
	return len(st.filters) > 0
}

// reader is one consumer as trimming sees it.
type reader struct {
	name    string
	filters []string
	floor   uint64
	// quiet: nothing pending, so no message is due for redelivery.
	quiet bool
}

// trim purges, when it is time (see Trim), each filter subject that the
// target Trims up to the lowest ack floor among the stream's consumers
// that read any of its messages.
func (st *streamTrim) trim(ctx context.Context, js jetstream.JetStream) error {
	if st.off {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if st.stream == nil {
		stream, err := js.Stream(ctx, st.Stream)
		if err != nil {
			return err
		}
		if stream.CachedInfo().Config.Retention != jetstream.LimitsPolicy {
			st.off = true
			return nil
		}
		st.stream = stream
	}
	if st.resting(time.Now()) {
		return nil
	}
	readers, err := st.readers(ctx)
	if err != nil {
		return err
	}
	for _, r := range readers {
		for _, filter := range r.filters {
			if !st.Trims(filter) {
				continue
			}
			if err := st.purge(ctx, filter, readers); err != nil {
				return fmt.Errorf("purge %s: %w", filter, err)
			}
		}
	}
	return nil
}

// readers returns every consumer of the stream, or an error: a consumer
// left out (in a cluster, one whose leader does not answer) could have its
// messages purged, so a listing with gaps is not used.
func (st *streamTrim) readers(ctx context.Context) ([]reader, error) {
	names := st.stream.ConsumerNames(ctx)
	var readers []reader
	for name := range names.Name() {
		cons, err := st.stream.Consumer(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("consumer %s: %w", name, err)
		}
		ci := cons.CachedInfo()
		filters := ci.Config.FilterSubjects
		if ci.Config.FilterSubject != "" {
			filters = append(filters, ci.Config.FilterSubject)
		}
		if len(filters) == 0 {
			filters = []string{">"}
		}
		readers = append(readers, reader{name: name, filters: filters, floor: ci.AckFloor.Stream, quiet: ci.NumAckPending == 0})
	}
	return readers, names.Err()
}

// purge removes the messages of filter that every consumer reading them has
// acknowledged, when a purge is due and the time is right.
func (st *streamTrim) purge(ctx context.Context, filter string, readers []reader) error {
	floor, quiet, first := uint64(0), true, true
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
	ft := st.filters[filter]
	if ft == nil {
		ft = &filterTrim{}
		st.filters[filter] = ft
	}
	now := time.Now()
	if now.Sub(ft.checked) < st.every {
		return nil
	}
	var keepErr error
	if st.Keep > 0 {
		if now.Sub(ft.keptAt) >= st.every { // once an interval, however long a purge waits
			ft.kept, keepErr = st.keptFrom(ctx, now.Add(-st.Keep))
			ft.keptAt = now
		}
		if ft.kept > 0 && ft.kept-1 < floor {
			floor = ft.kept - 1
		}
	}
	switch {
	case keepErr != nil && !st.keepFailing:
		// Purged as if nothing were kept: a stream that kept everything
		// would fill up (a NATS user not allowed the read answers nothing).
		// Told once a run of failures.
		st.keepFailing = true
		keepErr = fmt.Errorf("%w; purges keep nothing until it can be read", keepErr)
	case keepErr != nil:
		keepErr = nil
	case now.Equal(ft.keptAt):
		st.keepFailing = false
	}
	if floor <= ft.trimmed {
		ft.checked = now
		return keepErr
	}
	if ft.due.IsZero() {
		ft.due = now
	}
	if !quiet && now.Sub(ft.due) < trimForce {
		if full, err := st.over(ctx, 8); err != nil || !full {
			return errors.Join(err, keepErr)
		}
	}
	// A consumer created since the readers were listed (a second reader of
	// a subject trimmed already, reading from its start) would lose what it
	// has not read: the purge waits for a round that lists it.
	if same, err := st.sameReaders(ctx, readers); err != nil || !same {
		return errors.Join(err, keepErr)
	}
	if err := st.stream.Purge(ctx, jetstream.WithPurgeSubject(filter), jetstream.WithPurgeSequence(floor+1)); err != nil {
		return err
	}
	ft.trimmed, ft.checked, ft.due = floor, now, time.Time{}
	return keepErr
}

// keptFrom is the sequence of the first message stored at or after since,
// which Keep keeps with every one after it (the next one's when none is);
// 0 when the stream holds more than a sixteenth of its size limit and keeps
// nothing:
// so kept messages never make it an eighth full, where purges no longer
// wait for a quiet moment.
func (st *streamTrim) keptFrom(ctx context.Context, since time.Time) (uint64, error) {
	info, err := st.stream.Info(ctx)
	if err != nil {
		return 0, err
	}
	if limit := info.Config.MaxBytes; limit > 0 && info.State.Bytes > uint64(limit)/16 {
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second) // a read NATS does not allow is never answered
	defer cancel()
	req, err := json.Marshal(map[string]any{"start_time": since.UTC(), "no_hdr": true})
	if err != nil {
		return 0, err
	}
	resp, err := st.js.Conn().RequestWithContext(ctx, APISubject(st.js, "STREAM.MSG.GET."+st.Stream), req)
	if err != nil {
		return 0, fmt.Errorf("first message since %s: %w", since.Format(time.RFC3339), err)
	}
	var answer struct {
		Message *struct {
			Sequence uint64 `json:"seq"`
		} `json:"message"`
		Error *jetstream.APIError `json:"error"`
	}
	switch err := json.Unmarshal(resp.Data, &answer); {
	case err != nil:
		return 0, fmt.Errorf("first message since %s: %w", since.Format(time.RFC3339), err)
	case answer.Error != nil && answer.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		// All older: the next message is the first kept (0 would keep
		// nothing of what comes before this is asked again).
		return info.State.LastSeq + 1, nil
	case answer.Error != nil:
		return 0, fmt.Errorf("first message since %s: %w", since.Format(time.RFC3339), answer.Error)
	case answer.Message == nil:
		return 0, fmt.Errorf("first message since %s: %w", since.Format(time.RFC3339), jetstream.ErrInvalidJetStreamResponse)
	}
	return answer.Message.Sequence, nil
}

// sameReaders tells whether the stream's consumers are still readers'.
func (st *streamTrim) sameReaders(ctx context.Context, readers []reader) (bool, error) {
	known := make(map[string]bool, len(readers))
	for _, r := range readers {
		known[r.name] = true
	}
	names := st.stream.ConsumerNames(ctx)
	n, same := 0, true
	for name := range names.Name() { // read to the end: the lister stops then
		same = same && known[name]
		n++
	}
	return same && n == len(readers), names.Err()
}

// over reports whether the stream holds more than 1/part of its size
// limit, if it has one.
func (st *streamTrim) over(ctx context.Context, part uint64) (bool, error) {
	info, err := st.stream.Info(ctx)
	if err != nil {
		return false, err
	}
	limit := info.Config.MaxBytes
	return limit > 0 && info.State.Bytes > uint64(limit)/part, nil
}

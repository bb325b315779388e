// Package jobstore keeps job state in the JetStream key-value bucket
// contract.BucketJobs: one record per job, changed only with compare-and-set
// so that intake, processors and cancellations never overwrite each other.
package jobstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
)

// Errors callers branch on.
var (
	// ErrNotFound: no such job, or it belongs to another tenant.
	ErrNotFound = errors.New("job not found")
	// ErrExists: a job with this id is already stored.
	ErrExists = errors.New("job already exists")
)

// Store reads and writes job records.
//
// Reads are key-value reads (direct gets), which in a cluster any replica
// of the bucket may answer, one behind its leader included: a read right
// after a write may return the record as it was before it. Writes are
// compare-and-set, so such a read only costs a retry. A decision not to
// write (ErrUnchanged) is checked against the leader's copy before it
// stands (UpdateFrom).
type Store struct {
	kv     jetstream.KeyValue
	pub    bus.Publisher
	reader jetstream.JetStream
}

// Open binds to the job bucket, which bus.Ensure has created. Writes go
// through pub: a bus.GroupCommit, or js itself.
func Open(ctx context.Context, js jetstream.JetStream, pub bus.Publisher) (*Store, error) {
	kv, err := js.KeyValue(ctx, contract.BucketJobs)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", contract.BucketJobs, err)
	}
	return &Store{kv: kv, pub: pub, reader: js}, nil
}

// put writes data under id if the key's last revision is still rev (0: no
// revision yet); false when it is not.
func (s *Store) put(ctx context.Context, id string, data []byte, rev uint64) (uint64, bool, error) {
	if !contract.ValidType(id) { // the rule for job ids, which are keys here
		return 0, false, jetstream.ErrInvalidKey
	}
	msg := nats.NewMsg(bus.KeySubject(contract.BucketJobs, id))
	msg.Data = data
	msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(rev, 10))
	ack, err := s.pub.PublishMsg(ctx, msg)
	if bus.IsWrongLastSequence(err) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	return ack.Sequence, true, nil
}

// Create stores a new record; ErrExists when the id is taken.
func (s *Store) Create(ctx context.Context, rec contract.JobRecord) (uint64, error) {
	data, err := json.Marshal(rec)
	if err != nil {
		return 0, fmt.Errorf("encode job %s: %w", rec.ID, err)
	}
	rev, created, err := s.put(ctx, rec.ID, data, 0)
	if err != nil {
		return 0, fmt.Errorf("create job %s: %w", rec.ID, err)
	}
	if created {
		return rev, nil
	}
	// The key has a revision: a record, or the marker of a deleted one,
	// which the key-value API knows how to write over.
	rev, err = s.kv.Create(ctx, rec.ID, data)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, ErrExists
	}
	if err != nil {
		return 0, fmt.Errorf("create job %s: %w", rec.ID, err)
	}
	return rev, nil
}

// Get returns a record and its revision. An id that no record can have
// (contract.ValidType) is not found, without asking NATS: a subject longer
// than the server's control line ends the connection for good.
func (s *Store) Get(ctx context.Context, id string) (contract.JobRecord, uint64, error) {
	if !contract.ValidType(id) {
		return contract.JobRecord{}, 0, ErrNotFound
	}
	entry, err := s.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return contract.JobRecord{}, 0, ErrNotFound
	}
	if err != nil {
		return contract.JobRecord{}, 0, fmt.Errorf("get job %s: %w", id, err)
	}
	return decode(entry)
}

// GetForTenant is Get that answers ErrNotFound for another tenant's job.
func (s *Store) GetForTenant(ctx context.Context, tenant, id string) (contract.JobRecord, uint64, error) {
	rec, rev, err := s.Get(ctx, id)
	if err == nil && rec.Tenant != tenant {
		return contract.JobRecord{}, 0, ErrNotFound
	}
	return rec, rev, err
}

func decode(entry jetstream.KeyValueEntry) (contract.JobRecord, uint64, error) {
	var rec contract.JobRecord
	if err := json.Unmarshal(entry.Value(), &rec); err != nil {
		return contract.JobRecord{}, 0, fmt.Errorf("decode job %s: %w", entry.Key(), err)
	}
	return rec, entry.Revision(), nil
}

// ErrUnchanged may be returned by an Update function to leave the record as
// it is; Update then returns the current record and ErrUnchanged.
var ErrUnchanged = errors.New("job unchanged")

// Update applies change to the current record and stores it if the record has
// not changed meanwhile, re-reading and re-applying on a conflict.
func (s *Store) Update(ctx context.Context, id string, change func(*contract.JobRecord) error) (contract.JobRecord, error) {
	rec, rev, err := s.Get(ctx, id)
	if err != nil {
		return contract.JobRecord{}, err
	}
	return s.UpdateFrom(ctx, rec, rev, change)
}

// UpdateFrom is Update starting from rec, read at revision rev: it reads
// the record again only when it has changed since. Those reads, and the
// one that confirms ErrUnchanged, go to the bucket's leader (Latest): rec
// may have come from a replica behind it, and a change that leaves the
// record as it is, such as recording the result of a job that reads as
// not running, must not be decided on an older version of it.
func (s *Store) UpdateFrom(ctx context.Context, rec contract.JobRecord, rev uint64, change func(*contract.JobRecord) error) (contract.JobRecord, error) {
	id := rec.ID
	// leaderReads counts the reads of rec from the leader: none at first.
	for leaderReads := 0; ; leaderReads++ {
		if leaderReads > 1 { // many writers, or a leader's read behind (a new leader taking over)
			select {
			case <-ctx.Done():
				return contract.JobRecord{}, ctx.Err()
			case <-time.After(time.Duration(min(leaderReads, 20)) * 5 * time.Millisecond):
			}
		}
		read := rec
		if err := change(&rec); err != nil {
			if !errors.Is(err, ErrUnchanged) || leaderReads > 0 {
				return read, err
			}
		} else {
			data, err := json.Marshal(rec)
			if err != nil {
				return contract.JobRecord{}, fmt.Errorf("encode job %s: %w", id, err)
			}
			_, stored, err := s.put(ctx, id, data, rev)
			if err != nil {
				return contract.JobRecord{}, fmt.Errorf("update job %s: %w", id, err)
			}
			if stored {
				return rec, nil
			}
			if ctx.Err() != nil {
				return contract.JobRecord{}, ctx.Err()
			}
		}
		var err error
		if rec, rev, err = s.Latest(ctx, id); err != nil {
			return contract.JobRecord{}, err
		}
	}
}

// Latest is Get answered by the bucket's leader (a JetStream message get,
// $JS.API.STREAM.MSG.GET) rather than by any replica: it sees every write
// acknowledged before it, except while a new leader takes over. It costs a
// request to the JetStream API, so Get is for everything else.
func (s *Store) Latest(ctx context.Context, id string) (contract.JobRecord, uint64, error) {
	if !contract.ValidType(id) {
		return contract.JobRecord{}, 0, ErrNotFound
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.reader.Options().DefaultTimeout)
		defer cancel()
	}
	req, err := json.Marshal(map[string]string{"last_by_subj": bus.KeySubject(contract.BucketJobs, id)})
	if err != nil {
		return contract.JobRecord{}, 0, err
	}
	resp, err := s.reader.Conn().RequestWithContext(ctx, bus.APISubject(s.reader, "STREAM.MSG.GET.KV_"+contract.BucketJobs), req)
	if err != nil {
		return contract.JobRecord{}, 0, fmt.Errorf("get job %s from the leader: %w", id, err)
	}
	var answer struct {
		Message *struct {
			Sequence uint64 `json:"seq"`
			Header   []byte `json:"hdrs"`
			Data     []byte `json:"data"`
		} `json:"message"`
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &answer); err != nil {
		return contract.JobRecord{}, 0, fmt.Errorf("get job %s from the leader: %w", id, err)
	}
	switch {
	case answer.Error != nil && answer.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return contract.JobRecord{}, 0, ErrNotFound
	case answer.Error != nil:
		return contract.JobRecord{}, 0, fmt.Errorf("get job %s from the leader: %w", id, answer.Error)
	case answer.Message == nil:
		return contract.JobRecord{}, 0, fmt.Errorf("get job %s from the leader: %w", id, jetstream.ErrInvalidJetStreamResponse)
	}
	if len(answer.Message.Header) > 0 {
		hdr, err := nats.DecodeHeadersMsg(answer.Message.Header)
		if err != nil {
			return contract.JobRecord{}, 0, fmt.Errorf("get job %s from the leader: %w", id, err)
		}
		if hdr.Get(bus.HeaderKVOperation) != "" { // a deleted record's marker
			return contract.JobRecord{}, 0, ErrNotFound
		}
	}
	var rec contract.JobRecord
	if err := json.Unmarshal(answer.Message.Data, &rec); err != nil {
		return contract.JobRecord{}, 0, fmt.Errorf("decode job %s: %w", id, err)
	}
	return rec, answer.Message.Sequence, nil
}

// WaitChange blocks until the record changes after revision rev, or ctx ends.
// It returns the newest record and its revision either way. At revision 0 it
// waits for the record's first write, and answers ErrNotFound if there is
// none yet.
func (s *Store) WaitChange(ctx context.Context, id string, rev uint64) (contract.JobRecord, uint64, error) {
	if !contract.ValidType(id) {
		return contract.JobRecord{}, 0, ErrNotFound
	}
	w, err := s.kv.Watch(ctx, id, jetstream.UpdatesOnly())
	if err != nil {
		return contract.JobRecord{}, 0, fmt.Errorf("watch job %s: %w", id, err)
	}
	defer func() { _ = w.Stop() }()
	// A change between the caller's read and the watch start is caught here.
	rec, cur, err := s.Get(ctx, id)
	if rev == 0 && errors.Is(err, ErrNotFound) {
		err = nil // not written yet: wait for the first write
	}
	if err == nil && cur < rev {
		// A replica behind the caller's read: the leader says whether a
		// change came before the watch began, which the watch would not
		// send. An earlier revision is no change.
		rec, cur, err = s.Latest(ctx, id)
	}
	if err != nil || cur > rev {
		return rec, cur, err
	}
	for {
		select {
		case <-ctx.Done():
			return s.Get(context.WithoutCancel(ctx), id)
		case entry, ok := <-w.Updates():
			if !ok {
				return s.Get(ctx, id)
			}
			if entry == nil || entry.Operation() != jetstream.KeyValuePut {
				continue
			}
			return decode(entry)
		}
	}
}

// Delete removes a record if it is still at revision rev.
func (s *Store) Delete(ctx context.Context, id string, rev uint64) error {
	if err := s.kv.Purge(ctx, id, jetstream.LastRevision(rev)); err != nil {
		return fmt.Errorf("delete job %s: %w", id, err)
	}
	return nil
}

// Queued is the record of a job not yet run, made from its message: id and
// the message's tenant and type, its body, and when it was stored (the
// creation time unless the body has one).
func Queued(tenant, jobType, id string, req contract.JobRequest, stored time.Time, retention time.Duration) contract.JobRecord {
	created := stored.UTC()
	if req.CreatedAt != nil {
		created = req.CreatedAt.UTC()
	}
	return contract.JobRecord{
		Job: contract.Job{
			ID: id, Type: jobType, Status: contract.StatusQueued, Metadata: req.Metadata,
			CreatedAt: created, UpdatedAt: created, ExpiresAt: created.Add(retention),
		},
		Tenant: tenant, Payload: req.Payload, CallbackURL: req.CallbackURL, RequestHash: req.RequestHash,
	}
}

package jobstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/jobstore"
	"github.com/hookstream/hookstream/shared/natstest"
)

// stores returns a store on a fresh server and one on the same bucket whose
// reads lag (natstest.LaggingReader); both write to the server.
func stores(t *testing.T) (current, lagging *jobstore.Store) {
	t.Helper()
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	ctx := context.Background()
	require.NoError(t, bus.Ensure(ctx, js, bus.Topology{}))
	current, err := jobstore.Open(ctx, js, js)
	require.NoError(t, err)
	lagging, err = jobstore.Open(ctx, srv.LaggingReader(t), js)
	require.NoError(t, err)
	return current, lagging
}

func queued(id string) contract.JobRecord {
	return jobstore.Queued("acme", "echo", id, contract.JobRequest{}, time.Now(), time.Hour)
}

// finishRunning is what a processor does with an attempt's result: it
// records it only on a record that says running.
func finishRunning(r *contract.JobRecord) error {
	if r.Status != contract.StatusRunning {
		return jobstore.ErrUnchanged
	}
	r.Status = contract.StatusSucceeded
	return nil
}

// A record read from a replica behind the leader says queued after the
// write that made it running; a change that would leave it as it is for
// that is decided again on the leader's copy, and made.
func TestUpdateDecidesUnchangedOnTheLeadersRecord(t *testing.T) {
	t.Parallel()
	current, lagging := stores(t)
	ctx := context.Background()
	_, err := current.Create(ctx, queued("job-1"))
	require.NoError(t, err)
	before, _, err := lagging.Get(ctx, "job-1")
	require.NoError(t, err)
	require.Equal(t, contract.StatusQueued, before.Status)
	_, err = current.Update(ctx, "job-1", func(r *contract.JobRecord) error {
		r.Status, r.Attempts = contract.StatusRunning, 1
		return nil
	})
	require.NoError(t, err)
	stale, _, err := lagging.Get(ctx, "job-1")
	require.NoError(t, err)
	require.Equal(t, contract.StatusQueued, stale.Status, "the lagging reader lags")

	done, err := lagging.Update(ctx, "job-1", finishRunning)
	require.NoError(t, err)
	require.Equal(t, contract.StatusSucceeded, done.Status)
	got, _, err := current.Get(ctx, "job-1")
	require.NoError(t, err)
	require.Equal(t, contract.StatusSucceeded, got.Status)
	require.Equal(t, 1, got.Attempts)

	// Left unchanged on the leader's copy too: ErrUnchanged, with that copy.
	again, err := lagging.Update(ctx, "job-1", finishRunning)
	require.ErrorIs(t, err, jobstore.ErrUnchanged)
	require.Equal(t, contract.StatusSucceeded, again.Status)
}

// A write that conflicts (the record changed since it was read) reads the
// record again from the leader: a replica behind it would conflict again.
func TestUpdateAfterConflictReadsTheLeader(t *testing.T) {
	t.Parallel()
	current, lagging := stores(t)
	ctx := context.Background()
	_, err := current.Create(ctx, queued("job-1"))
	require.NoError(t, err)
	_, _, err = lagging.Get(ctx, "job-1") // the lagging reader keeps this version
	require.NoError(t, err)
	for range 3 {
		_, err = current.Update(ctx, "job-1", func(r *contract.JobRecord) error { r.Attempts++; return nil })
		require.NoError(t, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	got, err := lagging.Update(ctx, "job-1", func(r *contract.JobRecord) error { r.Attempts++; return nil })
	require.NoError(t, err)
	require.Equal(t, 4, got.Attempts)
}

func TestLatest(t *testing.T) {
	t.Parallel()
	current, _ := stores(t)
	ctx := context.Background()
	_, _, err := current.Latest(ctx, "job-1")
	require.ErrorIs(t, err, jobstore.ErrNotFound)

	rev, err := current.Create(ctx, queued("job-1"))
	require.NoError(t, err)
	rec, got, err := current.Latest(ctx, "job-1")
	require.NoError(t, err)
	require.Equal(t, rev, got)
	require.Equal(t, queued("job-1").ID, rec.ID)
	require.Equal(t, contract.StatusQueued, rec.Status)

	require.NoError(t, current.Delete(ctx, "job-1", rev))
	_, _, err = current.Latest(ctx, "job-1")
	require.ErrorIs(t, err, jobstore.ErrNotFound)
	_, _, err = current.Latest(ctx, "not a key")
	require.ErrorIs(t, err, jobstore.ErrNotFound)
}

// runningBehind is a job made running on the leader after the lagging
// store read it queued: both stores, and the running record's revision.
func runningBehind(t *testing.T) (current, lagging *jobstore.Store, rev uint64) {
	t.Helper()
	current, lagging = stores(t)
	ctx := context.Background()
	_, err := current.Create(ctx, queued("job-1"))
	require.NoError(t, err)
	_, _, err = lagging.Get(ctx, "job-1") // the lagging reader keeps this copy
	require.NoError(t, err)
	_, err = current.Update(ctx, "job-1", func(r *contract.JobRecord) error {
		r.Status, r.Attempts = contract.StatusRunning, 1
		return nil
	})
	require.NoError(t, err)
	_, rev, err = current.Get(ctx, "job-1")
	require.NoError(t, err)
	return current, lagging, rev
}

// A wait for a change after a revision is not ended by a replica behind it
// that still has an earlier one: that is no change, and handing it back
// made a long-poll answer at once with an older status.
func TestWaitChangeIgnoresAnEarlierRevision(t *testing.T) {
	t.Parallel()
	_, lagging, rev := runningBehind(t)
	wait, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, cur, err := lagging.WaitChange(wait, "job-1", rev)
	require.NoError(t, err)
	require.GreaterOrEqual(t, time.Since(start), 450*time.Millisecond, "an earlier revision was taken for a change")
	require.LessOrEqual(t, cur, rev, "no change: the caller keeps what it has")
}

// A change the leader made before a wait began is found even when the
// replica read is behind the caller's revision: the watch sends only
// what comes after it.
func TestWaitChangeFindsAChangeMadeBeforeIt(t *testing.T) {
	t.Parallel()
	current, lagging, rev := runningBehind(t)
	ctx := context.Background()
	_, err := current.Update(ctx, "job-1", finishRunning)
	require.NoError(t, err)
	wait, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rec, cur, err := lagging.WaitChange(wait, "job-1", rev)
	require.NoError(t, err)
	require.Greater(t, cur, rev)
	require.Equal(t, contract.StatusSucceeded, rec.Status, "the change made before the wait was missed")
	require.NoError(t, wait.Err(), "found at once, not at the end of the wait")
}

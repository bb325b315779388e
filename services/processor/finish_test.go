package processor_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/services/processor"
	"github.com/hookstream/hookstream/shared/contract"
)

// A finished job's message is acknowledged only once its event is stored:
// while the events stream is full (DiscardNew refuses new events), the job
// message is delivered again and left unacknowledged; once the stream has
// room, the event is published and the message settled.
func TestRunKeepsJobMessageUntilItsEventIsStored(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	events, err := b.js.Stream(ctx, contract.StreamEvents)
	require.NoError(t, err)
	roomy := events.CachedInfo().Config
	require.Equal(t, jetstream.DiscardNew, roomy.Discard)
	full := roomy
	full.MaxMsgs = 1
	_, err = b.js.UpdateStream(ctx, full)
	require.NoError(t, err)
	_, err = b.js.Publish(ctx, contract.EventSubject("other", "filler"), []byte(`{}`))
	require.NoError(t, err)

	b.start(t, processor.Config{Handlers: echoOnly})
	b.publishJob(t, "acme", "echo", "job_x", jobRequest(t, contract.JobRequest{Payload: json.RawMessage(`{"n":1}`)}))
	rec := b.waitJob(t, "job_x")
	require.Equal(t, contract.StatusSucceeded, rec.Status)
	require.Eventually(t, func() bool {
		var delivered uint64
		var pending int
		jobs, err := b.js.Stream(ctx, contract.StreamJobs)
		require.NoError(t, err)
		for ci := range jobs.ListConsumers(ctx).Info() {
			delivered += ci.Delivered.Consumer
			pending += ci.NumAckPending
		}
		return delivered >= 2 && pending == 1
	}, 10*time.Second, 10*time.Millisecond, "the job's message was not kept while its event could not be stored")
	_, err = events.GetLastMsgForSubject(ctx, contract.EventSubject("acme", contract.EventJobSucceeded))
	require.ErrorIs(t, err, jetstream.ErrMsgNotFound)

	_, err = b.js.UpdateStream(ctx, roomy)
	require.NoError(t, err)
	_, job := b.lastEvent(t, "acme", contract.StatusSucceeded)
	require.Equal(t, "job_x", job.ID)
	require.JSONEq(t, `{"n":1}`, string(job.Result))
	b.waitJobsSettled(t)
}

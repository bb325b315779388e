package notifier_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/services/notifier"
	"github.com/hookstream/hookstream/shared/contract"
)

// A task's message is run only if its record says it is queued or
// running: one without a record, or with a pending one, is a task intake
// refused (or whose 503 removed it), dropped once a minute old (it is
// looked at again before, in case a replica is behind the record).
func TestTaskWithoutAQueuedRecordIsNotRun(t *testing.T) {
	t.Parallel()
	later := func() time.Time { return time.Now().Add(2 * time.Minute) } // the messages are a minute old
	b := setup(t, notifier.Config{Now: later})
	ctx := t.Context()
	tenants, err := b.js.KeyValue(ctx, contract.BucketTenants)
	require.NoError(t, err)
	pending := contract.Task{ID: "task_pending", Kind: "recover", EndpointID: "ep_x", Since: time.Now(), Status: contract.TaskPending, CreatedAt: time.Now(), UpdatedAt: time.Now()}
	record, _ := json.Marshal(pending)
	_, err = tenants.Create(ctx, contract.TaskKey("acme", pending.ID), record)
	require.NoError(t, err)
	for _, id := range []string{"task_unrecorded", "task_pending"} {
		task := pending
		task.ID, task.Status = id, contract.TaskQueued
		data, _ := json.Marshal(task)
		_, err := b.js.Publish(ctx, contract.SubjectTasks+".acme.recover", data)
		require.NoError(t, err)
	}
	stream, err := b.js.Stream(ctx, contract.StreamTasks)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := stream.Info(ctx)
		return err == nil && info.State.Msgs == 0
	}, 20*time.Second, 20*time.Millisecond, "the messages are taken")
	_, err = tenants.Get(ctx, contract.TaskKey("acme", "task_unrecorded"))
	require.ErrorIs(t, err, jetstream.ErrKeyNotFound, "not run: its run would have written its record")
	entry, err := tenants.Get(ctx, contract.TaskKey("acme", "task_pending"))
	require.NoError(t, err)
	var after contract.Task
	require.NoError(t, json.Unmarshal(entry.Value(), &after))
	require.Equal(t, contract.TaskPending, after.Status, "not run")
}

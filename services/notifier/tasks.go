package notifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/deliverylog"
)

// TasksConsumer is the durable consumer of background tasks.
const TasksConsumer = "hookstream-tasks"

func (n *Notifier) createTasksConsumer(ctx context.Context) (jetstream.Consumer, error) {
	cons, err := n.js.CreateOrUpdateConsumer(ctx, contract.StreamTasks, jetstream.ConsumerConfig{
		Durable:       TasksConsumer,
		Description:   "hookstream background tasks",
		FilterSubject: contract.SubjectTasks + ".>",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxDeliver:    -1,
	})
	if err != nil {
		return nil, fmt.Errorf("create consumer %s: %w", TasksConsumer, err)
	}
	return cons, nil
}

func (n *Notifier) runTasks(ctx context.Context, cons jetstream.Consumer) error {
	return bus.Workers(ctx, n.js.Conn(), n.logger, cons, 2, n.cfg.ShutdownGrace, func(ctx context.Context, msg jetstream.Msg) {
		defer bus.KeepAlive(msg, 10*time.Second)()
		var task contract.Task
		tenant, _, err := contract.ParseTaskSubject(msg.Subject())
		if err == nil {
			err = json.Unmarshal(msg.Data(), &task)
		}
		if err != nil || task.Kind != "recover" || task.ID == "" {
			n.logger.Error("dropping malformed task", "subject", msg.Subject(), "error", err)
			_ = msg.Term()
			return
		}
		logger := n.logger.With("task_id", task.ID, "tenant_id", tenant)
		switch n.taskToRun(ctx, tenant, task.ID) {
		case taskSkip:
			_ = msg.Ack()
			return
		case taskUnrecorded:
			// A replica behind the record's write, or a task intake
			// refused (it removed the record): looked at again for a
			// minute, then dropped.
			if meta, err := msg.Metadata(); err == nil && n.cfg.Now().Sub(meta.Timestamp) < unrecordedTaskWait {
				_ = msg.NakWithDelay(5 * time.Second)
				return
			}
			logger.Info("task without a queued record (refused, or answered 503, by intake); not run")
			_ = msg.Ack()
			return
		}
		if err := n.recover(ctx, logger, tenant, task); err != nil {
			logger.Warn("recover task", "error", err)
			_ = msg.NakWithDelay(time.Second)
			return
		}
		_ = msg.Ack()
	})
}

// recover sends every failed delivery of the task's endpoint and window
// once more. Run again after a crash it sends what is still failed; a
// re-send within JetStream's duplicate window is de-duplicated.
func (n *Notifier) recover(ctx context.Context, logger *slog.Logger, tenant string, task contract.Task) error {
	n.saveTask(ctx, logger, tenant, task, contract.TaskRunning)
	// Sent as they are read: a large window is not held in memory.
	failed := func(r *contract.DeliveryRecord) bool {
		return r.EndpointID == task.EndpointID && r.Status == contract.DeliveryFailed && !r.CreatedAt.Before(task.Since) &&
			(task.Until == nil || r.CreatedAt.Before(*task.Until))
	}
	err := deliverylog.Scan(ctx, n.js, deliverylog.Endpoint(tenant, task.EndpointID), task.Since, failed, func(r *contract.DeliveryRecord) error {
		err := deliverylog.Replay(ctx, n.js, tenant, *r, r.ID+".recover."+task.ID)
		if errors.Is(err, deliverylog.ErrNoBody) {
			logger.Warn("delivery not recovered", "delivery_id", r.ID, "error", err)
			return nil
		}
		if err != nil {
			return err
		}
		task.Resent++
		return nil
	})
	if err != nil {
		return err
	}
	logger.Info("endpoint recovered", "endpoint_id", task.EndpointID, "resent", task.Resent)
	n.saveTask(ctx, logger, tenant, task, contract.TaskDone)
	return nil
}

// What a task's record says of its message (taskToRun).
const (
	taskRun        = iota
	taskSkip       // done: a second message (a request retried with its Idempotency-Key publishes a queued task's again)
	taskUnrecorded // no record, or a pending one: intake refused the task, or could not store its message, and removed the record
)

// unrecordedTaskWait is how long a task message without a queued record is
// looked at again before it is dropped.
const unrecordedTaskWait = time.Minute

// taskToRun says, by its record, what to do with a task's message. A
// record it cannot read is run.
func (n *Notifier) taskToRun(ctx context.Context, tenant, id string) int {
	entry, err := n.tenants.Get(ctx, contract.TaskKey(tenant, id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return taskUnrecorded
	}
	var task contract.Task
	if err != nil || json.Unmarshal(entry.Value(), &task) != nil {
		return taskRun
	}
	switch task.Status {
	case contract.TaskDone:
		return taskSkip
	case contract.TaskPending:
		return taskUnrecorded
	}
	return taskRun
}

// saveTask records a task's progress, best effort.
func (n *Notifier) saveTask(ctx context.Context, logger *slog.Logger, tenant string, task contract.Task, status string) {
	task.Status, task.UpdatedAt = status, n.cfg.Now().UTC()
	data, _ := json.Marshal(task)
	if _, err := n.tenants.Put(ctx, contract.TaskKey(tenant, task.ID), data); err != nil {
		logger.Warn("record task progress", "error", err)
	}
}

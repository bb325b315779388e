package intake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/deliverylog"
	"github.com/hookstream/hookstream/shared/endpoints"
)

// Paging of the delivery log and of endpoints.
const (
	defaultPageSize = 50
	maxPageSize     = 250
)

// listTenantDeliveries answers GET /v1/deliveries?endpoint=&status=
// &event_id=&event_type=&since=&before=&limit=: the tenant's deliveries,
// newest first, a page at a time; "next" is the before= of the next page. A
// page costs the log written since the oldest delivery on it
// (pageOfDeliveries).
func (s *Service) listTenantDeliveries(c *gin.Context) {
	endpoint, status := c.Query("endpoint"), c.Query("status")
	eventID, eventType := c.Query("event_id"), c.Query("event_type")
	since, err := optionalTime(c.Query("since"), "since")
	if err != nil {
		s.respondError(c, err)
		return
	}
	before, limit, err := pageQuery(c, "before")
	if err != nil {
		s.respondError(c, err)
		return
	}
	switch status {
	case "", contract.DeliveryPending, contract.DeliverySucceeded, contract.DeliveryFailed:
	default:
		s.respondError(c, badRequest("status must be pending, succeeded or failed"))
		return
	}
	tenant := tenantOf(c)
	// The narrowest filter of the log's keys that nats-server can match
	// itself; the rest is matched here.
	filter := deliverylog.Tenant(tenant)
	switch {
	case endpoint != "":
		filter = deliverylog.Endpoint(tenant, endpoint)
	case eventID != "":
		filter = deliverylog.Event(tenant, eventID)
	}
	recs, err := s.pageOfDeliveries(c.Request.Context(), filter, since, before, limit, func(r *contract.DeliveryRecord) bool {
		return (endpoint == "" || r.EndpointID == endpoint) && (status == "" || r.Status == status) &&
			(eventID == "" || r.EventID == eventID) && (eventType == "" || r.EventType == eventType)
	})
	if err != nil {
		s.respondError(c, err)
		return
	}
	page := make([]deliveryView, 0, min(limit, len(recs)))
	for _, r := range recs[:min(limit, len(recs))] {
		page = append(page, deliveryView{DeliveryRecord: r})
	}
	resp := gin.H{"data": page}
	if len(recs) > limit {
		last := page[len(page)-1]
		resp["next"] = pageCursor{at: last.CreatedAt, id: last.ID}.String()
	}
	c.JSON(http.StatusOK, resp)
}

// pageCursor is where a page of the delivery log ends, in its order
// (created_at, then id): an RFC 3339 time, or a time and the id of the
// delivery that ends the page, "<time>,<id>", as "next" gives it, since
// deliveries may share a creation time. Zero: no end.
type pageCursor struct {
	at time.Time
	id string
}

// pageQuery reads a page's cursor, query parameter name, and its ?limit=:
// 1 to maxPageSize, defaultPageSize if not given.
func pageQuery(c *gin.Context, name string) (pageCursor, int, error) {
	at, id, _ := strings.Cut(c.Query(name), ",")
	t, err := optionalTime(at, name)
	if err != nil {
		return pageCursor{}, 0, err
	}
	limit := defaultPageSize
	if v := c.Query("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > maxPageSize {
			return pageCursor{}, 0, badRequest(fmt.Sprintf("limit must be 1 to %d", maxPageSize))
		}
	}
	return pageCursor{at: t, id: id}, limit, nil
}

// admits says whether r is past the cursor: older in the log's order, so
// on a later page, since the newest come first.
func (p pageCursor) admits(r *contract.DeliveryRecord) bool {
	if p.at.IsZero() {
		return true
	}
	if c := r.CreatedAt.Compare(p.at); c != 0 || p.id == "" {
		return c < 0
	}
	return r.ID < p.id
}

func (p pageCursor) String() string {
	return p.at.Format(time.RFC3339Nano) + "," + p.id
}

// The first window of the delivery log that a page is looked for in, and
// how much larger each next one is.
const (
	firstPageWindow  = 10 * time.Second
	pageWindowGrowth = 8
)

// pageOfDeliveries returns, newest first, up to limit+1 of the deliveries
// that filter matches and keep passes, created at or after since (zero: any
// time) and before the cursor. It reads the log back from the cursor (or now) in
// growing windows, each read costing the writes made since its start, until
// one holds more than limit of them or reaches since or the oldest write
// kept: the first pages of a large log cost what was written lately, not
// the whole log.
func (s *Service) pageOfDeliveries(ctx context.Context, filter deliverylog.Filter, since time.Time, before pageCursor, limit int, keep func(*contract.DeliveryRecord) bool) ([]contract.DeliveryRecord, error) {
	oldest, err := deliverylog.Oldest(ctx, s.js)
	if err != nil {
		return nil, err
	}
	end := s.now().Add(deliverylog.ClockMargin) // the newest a record can be
	if !before.at.IsZero() && before.at.Before(end) {
		end = before.at
	}
	for window := firstPageWindow; ; window *= pageWindowGrowth {
		from := end.Add(-window)
		whole := oldest.IsZero() || !from.After(since) || !from.Add(-deliverylog.ClockMargin).After(oldest) ||
			window > math.MaxInt64/pageWindowGrowth
		if whole {
			from = since
		}
		recs, err := deliverylog.ReadNewest(ctx, s.js, filter, from, func(r *contract.DeliveryRecord) bool {
			return !r.CreatedAt.Before(from) && before.admits(r) && keep(r)
		}, limit+1)
		if err != nil {
			return nil, err
		}
		if whole || len(recs) > limit {
			return recs, nil
		}
	}
}

func optionalTime(v, name string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, badRequest(name + " must be an RFC 3339 time")
	}
	return t, nil
}

// getDelivery answers GET /v1/deliveries/{id}: one delivery's record, with
// its attempts and the body of its webhook (if the record keeps it).
func (s *Service) getDelivery(c *gin.Context) {
	if rec, ok := s.deliveryOf(c); ok {
		c.JSON(http.StatusOK, deliveryView{DeliveryRecord: rec, Body: rec.Body})
	}
}

// deliveryOf reads the record, with its body, of the delivery that the
// path's id names, of the request's tenant; it answers 404 (or the
// error) itself when it cannot (ok false).
func (s *Service) deliveryOf(c *gin.Context) (rec contract.DeliveryRecord, ok bool) {
	tenant, id := tenantOf(c), c.Param("id")
	if !contract.ValidTenant(id) {
		s.respondError(c, notFound("delivery"))
		return rec, false
	}
	recs, err := s.readRecords(c.Request.Context(), deliverylog.Delivery(tenant, id), time.Time{}, nil, true)
	if err != nil {
		s.respondError(c, err)
		return rec, false
	}
	if len(recs) == 0 {
		s.respondError(c, notFound("delivery"))
		return rec, false
	}
	return recs[0], true
}

// retryDelivery answers POST /v1/deliveries/{id}/retry: one attempt now,
// with the same webhook-id and body.
func (s *Service) retryDelivery(c *gin.Context) {
	tenant := tenantOf(c)
	rec, ok := s.deliveryOf(c)
	if !ok {
		return
	}
	if err := s.endpointTakesRetries(c.Request.Context(), tenant, rec.EndpointID); err != nil {
		s.respondError(c, err)
		return
	}
	if rec.Status == contract.DeliveryPending && rec.NextAttemptAt != nil && s.now().Before(rec.NextAttemptAt.Add(time.Minute)) {
		// Its scheduled retry would come after the replay's attempt, with
		// the attempts from before it, and a failed replay would be taken
		// for the last attempt. A pending record whose retry is long past
		// is stale (its last write was lost, or parked): it may be retried.
		s.respondError(c, conflict("the delivery is still being retried, next at "+rec.NextAttemptAt.UTC().Format(time.RFC3339)+"; retry it once it has succeeded or failed"))
		return
	}
	idemKey, err := idempotencyKey(c)
	if err != nil {
		s.respondError(c, err)
		return
	}
	ctx, cancel := s.publishContext(c)
	defer cancel()
	msgID := replayID(rec)
	if idemKey != "" {
		// The same key is the same retry, however often it is asked for,
		// within the deliveries stream's de-duplication window.
		msgID = idempotentID(rec.ID+".retry.", tenant, idemKey)
	}
	err = deliverylog.Replay(ctx, s.js, tenant, rec, msgID)
	if errors.Is(err, deliverylog.ErrNoBody) {
		s.respondError(c, conflict(err.Error()))
		return
	}
	if err != nil {
		s.respondError(c, err)
		return
	}
	c.JSON(http.StatusAccepted, gin.H{"delivery_id": rec.ID})
}

// endpointTakesRetries answers 409 for a delivery to an endpoint that is
// disabled or deleted, whose retry could only fail at once; nil for a job
// callback (no endpoint).
func (s *Service) endpointTakesRetries(ctx context.Context, tenant, endpointID string) error {
	if endpointID == "" {
		return nil
	}
	ep, _, err := s.endpoints.Get(ctx, tenant, endpointID)
	switch {
	case errors.Is(err, endpoints.ErrNotFound):
		return conflict("the delivery's endpoint " + endpointID + " was deleted")
	case err != nil:
		return err
	case !ep.Enabled:
		return conflict("the endpoint is disabled: enable it (PATCH {\"enabled\":true}) before retrying its deliveries")
	}
	return nil
}

// recoverRequest is the body of POST /v1/endpoints/{id}/recover.
type recoverRequest struct {
	Since time.Time  `json:"since"`
	Until *time.Time `json:"until,omitempty"`
}

// recoverEndpoint answers POST /v1/endpoints/{id}/recover with 202 and a
// task to poll at /v1/tasks/{id}: the notifier sends every failed delivery
// to the endpoint created in [since, until) once more, with the same
// webhook-id. The task is a message in JetStream, so a restart finishes it.
func (s *Service) recoverEndpoint(c *gin.Context) {
	var req recoverRequest
	if err := readJSON(c, s.cfg.MaxBodyBytes, s.cfg.MaxJSONDepth, &req); err != nil {
		s.respondError(c, err)
		return
	}
	if req.Since.IsZero() {
		s.respondError(c, invalid(`field "since" is required (RFC 3339)`))
		return
	}
	if req.Until != nil && !req.Until.After(req.Since) {
		s.respondError(c, invalid(`field "until" must be later than "since"`))
		return
	}
	tenant, id := tenantOf(c), c.Param("id")
	ep, _, err := s.endpoints.Get(c.Request.Context(), tenant, id)
	if err != nil {
		s.respondError(c, err)
		return
	}
	if !ep.Enabled {
		s.respondError(c, conflict("the endpoint is disabled: enable it (PATCH {\"enabled\":true}) before recovering"))
		return
	}
	idemKey, err := idempotencyKey(c)
	if err != nil {
		s.respondError(c, err)
		return
	}
	now := s.now().UTC()
	task := contract.Task{
		ID: newID("task_"), Kind: "recover", EndpointID: id, Since: req.Since, Until: req.Until,
		Status: contract.TaskQueued, CreatedAt: now, UpdatedAt: now,
	}
	if idemKey != "" {
		// The task's id comes from the key: a retried request finds the
		// task the first made, for as long as it is kept (7 days).
		task.ID = idempotentID("task_", tenant, idemKey)
	}
	ctx, cancel := s.publishContext(c)
	defer cancel()
	if idemKey != "" {
		if made, found, err := s.taskOfKey(ctx, tenant, task); found || err != nil {
			if err != nil {
				s.respondError(c, err)
				return
			}
			s.respondTask(c, made, true)
			return
		}
	}
	if err := s.pruneTasks(ctx, tenant, now); err != nil {
		s.respondError(c, err)
		return
	}
	// Counted and queued one at a time in this process (admittingTasks);
	// intakes elsewhere count what they read.
	s.admittingTasks.Lock()
	admitting := sync.OnceFunc(s.admittingTasks.Unlock)
	defer admitting()
	pending := task
	pending.Status = contract.TaskPending
	data, _ := json.Marshal(pending)
	rev, err := s.tenants.Create(ctx, contract.TaskKey(tenant, task.ID), data)
	if err != nil {
		if idemKey != "" && errors.Is(err, jetstream.ErrKeyExists) { // the same key at the same moment
			made, found, err := s.taskOfKey(ctx, tenant, task)
			switch {
			case err != nil:
				s.respondError(c, err) // 409 while the other is being decided
				return
			case found:
				s.respondTask(c, made, true)
				return
			default: // refused and removed meanwhile
				s.respondError(c, keyInProgress())
				return
			}
		}
		s.respondError(c, fmt.Errorf("store task: %w", err))
		return
	}
	// Counted once stored, so that requests at the same moment cannot all
	// pass the bound; admitted, it is queued (a request with its key
	// republishes only a queued task's message), then published. A task
	// refused, or not queued, is removed (it would hold its key and a
	// place); one queued whose message failed too, unless a retry with its
	// key can publish it again (it may even be stored, its ack lost).
	key := contract.TaskKey(tenant, task.ID)
	if err := s.admitTask(ctx, tenant, task, rev); err != nil {
		s.purgeTenantKey(context.WithoutCancel(ctx), key, rev)
		s.respondError(c, err)
		return
	}
	data, _ = json.Marshal(task)
	queued, err := s.tenants.Update(ctx, key, data, rev)
	if err != nil {
		s.purgeTenantKey(context.WithoutCancel(ctx), key, rev)
		s.respondError(c, err)
		return
	}
	admitting() // queued: counted by the next
	if err := s.publishTask(ctx, tenant, task, queued); err != nil {
		if idemKey == "" {
			s.purgeTenantKey(context.WithoutCancel(ctx), key, queued)
		}
		s.respondError(c, err)
		return
	}
	s.respondTask(c, task, false)
}

// publishTask publishes a queued task's message. Its Nats-Msg-Id is the
// task's id and the record's revision: the same record published again
// within 2 minutes is one message, and a task stored again with its key,
// after a first try whose record was removed, is not taken for that one's.
func (s *Service) publishTask(ctx context.Context, tenant string, task contract.Task, rev uint64) error {
	return bus.PublishJSON(ctx, s.js, contract.SubjectTasks+"."+tenant+".recover", task.ID+"."+strconv.FormatUint(rev, 10), task)
}

// admitTask answers 429 unless task, stored pending at revision rev, has
// room among the tenant's open tasks (queued or running, written in the
// last openTaskWindow): at most maxOpenTasks. A request reads once its own
// task is stored, so it sees every task stored before it: of requests at
// the same moment, only as many pass as there is room for.
func (s *Service) admitTask(ctx context.Context, tenant string, task contract.Task, rev uint64) error {
	before := 0 // open tasks stored before this one
	err := bus.ReadAll(ctx, s.tenants, contract.TaskKey(tenant, "*"), func(e jetstream.KeyValueEntry) error {
		var t contract.Task
		if e.Key() == contract.TaskKey(tenant, task.ID) || json.Unmarshal(e.Value(), &t) != nil {
			return nil
		}
		// Counted: the tasks admitted (queued or running), and those
		// being admitted that were stored before this one (pending, at a
		// lower revision, for a minute at most: one whose request failed
		// to remove it does not hold a place). Of requests at the same
		// moment, the later counts the earlier, pending or admitted.
		switch {
		case t.Status == contract.TaskDone || task.UpdatedAt.Sub(t.UpdatedAt) > openTaskWindow:
		case t.Status == contract.TaskPending && (e.Revision() > rev || task.UpdatedAt.Sub(t.UpdatedAt) > pendingTaskLife):
		default:
			before++
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("count tasks: %w", err)
	}
	if before < maxOpenTasks {
		return nil
	}
	return &apiError{status: http.StatusTooManyRequests, slug: "too-many-tasks", retryAfter: time.Minute,
		detail: fmt.Sprintf("this tenant has %d tasks queued or running, the most allowed at once; retry once one is done (GET /v1/tasks/{id})", maxOpenTasks)}
}

// taskOfKey reads the task that an Idempotency-Key made (its id is
// want.ID): found, the task as it is now; 422 if another request made it.
// A task still queued has its message published again, in case the first
// request failed after storing the record (JetStream de-duplicates it
// within 2 minutes; the notifier runs a task once, by its record).
func (s *Service) taskOfKey(ctx context.Context, tenant string, want contract.Task) (contract.Task, bool, error) {
	entry, err := s.tenants.Get(ctx, contract.TaskKey(tenant, want.ID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return contract.Task{}, false, nil
	}
	if err != nil {
		return contract.Task{}, false, err
	}
	var made contract.Task
	if err := json.Unmarshal(entry.Value(), &made); err != nil {
		return contract.Task{}, false, fmt.Errorf("read task %s: %w", want.ID, err)
	}
	sameUntil := (made.Until == nil) == (want.Until == nil) && (made.Until == nil || made.Until.Equal(*want.Until))
	if made.EndpointID != want.EndpointID || !made.Since.Equal(want.Since) || !sameUntil {
		return contract.Task{}, false, invalid("Idempotency-Key was already used with a different request")
	}
	switch {
	case made.Status == contract.TaskPending && s.now().Sub(made.UpdatedAt) > pendingTaskLife:
		// Its request never finished (a crash): removed, and made again.
		s.purgeTenantKey(ctx, contract.TaskKey(tenant, want.ID), entry.Revision())
		return contract.Task{}, false, nil
	case made.Status == contract.TaskPending:
		// Its request is deciding whether there is room for it.
		return contract.Task{}, false, keyInProgress()
	case made.Status == contract.TaskQueued:
		if err := s.publishTask(ctx, tenant, made, entry.Revision()); err != nil {
			return contract.Task{}, false, err
		}
	}
	return made, true, nil
}

// keyInProgress is the answer to a request whose Idempotency-Key another
// request is using at that moment.
func keyInProgress() error {
	return &apiError{status: http.StatusConflict, slug: "in-progress", retryAfter: time.Second,
		detail: "a request with this Idempotency-Key is being answered; retry in a moment"}
}

// respondTask answers 202 with a recover task.
func (s *Service) respondTask(c *gin.Context, task contract.Task, replayed bool) {
	if replayed {
		c.Header("Idempotent-Replayed", "true")
	}
	c.Header("Location", "/v1/tasks/"+task.ID)
	c.JSON(http.StatusAccepted, task)
}

// Task records are kept taskRetention after they were last written, and a
// tenant keeps at most maxTasks of them: the tenants bucket, where they
// live, has no TTL.
const (
	taskRetention = 7 * 24 * time.Hour
	maxTasks      = 1000
	// maxOpenTasks bounds a tenant's tasks queued or running (written in
	// the last openTaskWindow): every tenant's tasks share the notifiers'
	// few task workers, first come first served, and one tenant's
	// thousand recoveries of its whole log held everyone's back for hours.
	maxOpenTasks   = 4
	openTaskWindow = 24 * time.Hour
	// pendingTaskLife is how long a task may be pending (its request
	// deciding whether there is room for it): a request takes seconds,
	// so an older one was left by a crash.
	pendingTaskLife = time.Minute
)

// pruneTasks removes the tenant's tasks last written more than
// taskRetention before now, and refuses one more task (429) while the
// tenant keeps maxTasks. A task still queued or running after that long is
// as good as lost (its message is kept 8 days at most).
func (s *Service) pruneTasks(ctx context.Context, tenant string, now time.Time) error {
	var old []string
	kept := 0
	err := bus.ReadAll(ctx, s.tenants, contract.TaskKey(tenant, "*"), func(e jetstream.KeyValueEntry) error {
		var task contract.Task
		if json.Unmarshal(e.Value(), &task) == nil && now.Sub(task.UpdatedAt) > taskRetention {
			old = append(old, e.Key())
		} else {
			kept++
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("prune tasks: %w", err)
	}
	if len(old) > 0 {
		// Removed from the bucket's stream, leaving no delete marker (a
		// KV purge or delete leaves one for good: this bucket has no TTL).
		stream, err := s.js.Stream(ctx, "KV_"+contract.BucketTenants)
		for _, key := range old {
			if err == nil {
				err = stream.Purge(ctx, jetstream.WithPurgeSubject("$KV."+contract.BucketTenants+"."+key))
			}
		}
		if err != nil {
			s.logger.Warn("remove old tasks", "tenant_id", tenant, "error", err) // tried again at the next recover
		}
	}
	if kept >= maxTasks {
		return &apiError{status: http.StatusTooManyRequests, slug: "too-many-tasks", retryAfter: time.Hour,
			detail: fmt.Sprintf("this tenant keeps %d tasks, the most allowed; tasks are removed %s after they were last written", kept, taskRetention)}
	}
	return nil
}

// getTask answers GET /v1/tasks/{id}.
func (s *Service) getTask(c *gin.Context) {
	id := c.Param("id")
	if !contract.ValidTenant(id) {
		s.respondError(c, notFound("task"))
		return
	}
	entry, err := s.tenants.Get(c.Request.Context(), contract.TaskKey(tenantOf(c), id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		s.respondError(c, notFound("task"))
		return
	}
	if err != nil {
		s.respondError(c, err)
		return
	}
	c.Data(http.StatusOK, "application/json; charset=utf-8", entry.Value())
}

// replayID is the message id of a replay of rec (a logged delivery sent
// again for one attempt, same id): the record's as it stands (its attempts
// and when it was last written), so that a retry asked for twice before the
// first one's attempt is recorded (a double click) is the same replay,
// de-duplicated by JetStream, not a second send. An Idempotency-Key names
// the replay instead (retryDelivery).
func replayID(rec contract.DeliveryRecord) string {
	return rec.ID + ".replay." + strconv.Itoa(len(rec.Attempts)) + "." + strconv.FormatInt(rec.UpdatedAt.UnixNano(), 36)
}

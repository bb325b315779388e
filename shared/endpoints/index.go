package endpoints

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/secretbox"
	"github.com/hookstream/hookstream/shared/signing"
)

// Index is an in-memory view of every endpoint, kept current by a watch on
// the bucket. Its size is the number of endpoints, not of events.
type Index struct {
	kv     jetstream.KeyValue
	box    *secretbox.Box
	logger *slog.Logger
	ready  chan struct{}

	mu       sync.RWMutex
	byTenant map[string]map[string]*Endpoint
	// subs maps tenant → subscription pattern → ids of enabled endpoints
	// with that pattern, so that matching costs the number of distinct
	// patterns, not of endpoints. allTypes is the pattern of endpoints
	// subscribed to everything.
	subs map[string]map[string]map[string]struct{}
	// wild maps tenant → the patterns of subs that hold wildcards; exact
	// types are found with one map lookup.
	wild map[string]map[string]struct{}
	// gone holds, for goneFor, the revision at which each endpoint left the
	// bucket, so that a late Put of an older state (stored by this process
	// just before the delete) does not bring it back.
	gone      map[string]goneMark
	lastPrune time.Time
	// changed, if set, is told of every change the watch brings.
	changed func(old, now *Endpoint)
}

// OnChange has the watch tell changed of every endpoint it changes: old is
// the endpoint as it was (nil when new), now as it is (nil when deleted).
// changed runs on the watch's goroutine, under the index's lock, before
// readers see the change: it must not call the index. It is set before
// Run.
func (x *Index) OnChange(changed func(old, now *Endpoint)) { x.changed = changed }

type goneMark struct {
	revision uint64
	at       time.Time
}

// goneFor is how long a deleted endpoint's mark is kept: far longer than a
// Put can come late.
const goneFor = time.Minute

const allTypes = ">"

// NewIndex returns an index; Run fills it and keeps it current.
func NewIndex(ctx context.Context, js jetstream.JetStream, box *secretbox.Box, logger *slog.Logger) (*Index, error) {
	kv, err := js.KeyValue(ctx, contract.BucketEndpoints)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", contract.BucketEndpoints, err)
	}
	return &Index{kv: kv, box: box, logger: logger, ready: make(chan struct{}), byTenant: map[string]map[string]*Endpoint{}, subs: map[string]map[string]map[string]struct{}{}, wild: map[string]map[string]struct{}{}}, nil
}

// Ready is closed once every stored endpoint has been read.
func (x *Index) Ready() <-chan struct{} { return x.ready }

// Run watches the bucket until ctx ends.
func (x *Index) Run(ctx context.Context) error {
	return bus.Mirror(ctx, x.kv, x.logger, x.ready, x.apply)
}

func (x *Index) apply(entry jetstream.KeyValueEntry) {
	tenant, id, _ := strings.Cut(entry.Key(), ".")
	var ep *Endpoint
	if entry.Operation() == jetstream.KeyValuePut {
		decoded, err := decode(x.box, entry.Value())
		if errors.Is(err, signing.ErrUnreadable) {
			// Kept, so that its deliveries are made and dead-lettered with
			// the reason (destination) until its secret is rotated.
			x.logger.Error("endpoint whose signing secret cannot be read: its webhooks are dead-lettered until it is rotated", "key", entry.Key(), "error", err)
		} else if err != nil {
			x.logger.Error("unreadable endpoint record", "key", entry.Key(), "error", err)
			return
		}
		decoded.Revision = entry.Revision()
		ep = &decoded
	}
	x.mu.Lock()
	old := x.byTenant[tenant][id]
	if ep == nil {
		x.markGone(entry.Key(), entry.Revision(), old)
	}
	x.set(tenant, id, ep)
	now := x.byTenant[tenant][id]
	if x.changed != nil && now != old {
		// Before readers see now: a delivery that finds an endpoint
		// enabled again finds its circuit closed too.
		x.changed(old, now)
	}
	x.mu.Unlock()
}

// markGone notes that the endpoint under key left the bucket at revision
// (0 when not known: then the revision held, old's); x.mu is held.
func (x *Index) markGone(key string, revision uint64, old *Endpoint) {
	now := time.Now()
	if x.gone == nil {
		x.gone = map[string]goneMark{}
	}
	if now.Sub(x.lastPrune) > goneFor {
		for k, m := range x.gone {
			if now.Sub(m.at) > goneFor {
				delete(x.gone, k)
			}
		}
		x.lastPrune = now
	}
	if old != nil {
		revision = max(revision, old.Revision)
	}
	x.gone[key] = goneMark{revision: revision, at: now}
}

// set replaces (or, with nil, removes) an endpoint; x.mu is held.
func (x *Index) set(tenant, id string, ep *Endpoint) {
	old := x.byTenant[tenant][id]
	if old != nil && ep != nil && ep.Revision != 0 && ep.Revision < old.Revision {
		return // an older state than the one held (a late local Put)
	}
	if old != nil {
		for _, p := range patterns(old) {
			delete(x.subs[tenant][p], id)
			if len(x.subs[tenant][p]) == 0 {
				delete(x.subs[tenant], p)
				delete(x.wild[tenant], p)
			}
		}
		delete(x.byTenant[tenant], id)
	}
	if ep == nil {
		if len(x.byTenant[tenant]) == 0 { // the tenant's last endpoint: no maps left for it
			delete(x.byTenant, tenant)
			delete(x.subs, tenant)
			delete(x.wild, tenant)
		}
		return
	}
	if x.byTenant[tenant] == nil {
		x.byTenant[tenant] = map[string]*Endpoint{}
		x.subs[tenant] = map[string]map[string]struct{}{}
		x.wild[tenant] = map[string]struct{}{}
	}
	x.byTenant[tenant][id] = ep
	if !ep.Enabled {
		return
	}
	for _, p := range patterns(ep) {
		if x.subs[tenant][p] == nil {
			x.subs[tenant][p] = map[string]struct{}{}
			if strings.ContainsAny(p, "*>") {
				x.wild[tenant][p] = struct{}{}
			}
		}
		x.subs[tenant][p][id] = struct{}{}
	}
}

func patterns(ep *Endpoint) []string {
	if len(ep.EventTypes) == 0 {
		return []string{allTypes}
	}
	return ep.EventTypes
}

// Put applies an endpoint this process has just stored, without waiting for
// the watch to bring it back.
func (x *Index) Put(ep Endpoint) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if mark, ok := x.gone[Key(ep.Tenant, ep.ID)]; ok && ep.Revision <= mark.revision {
		return // deleted since it was stored
	}
	x.set(ep.Tenant, ep.ID, &ep)
}

// Get returns a tenant's endpoint; nil when there is none.
func (x *Index) Get(tenant, id string) *Endpoint {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.byTenant[tenant][id]
}

// Matching returns the ids of the tenant's enabled endpoints subscribed to
// eventType.
func (x *Index) Matching(tenant, eventType string) []string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var ids []string
	var seen map[string]struct{} // only needed once two patterns match
	matched := 0
	sets := make([]map[string]struct{}, 0, 4)
	if set, ok := x.subs[tenant][eventType]; ok {
		sets = append(sets, set)
	}
	for p := range x.wild[tenant] {
		if MatchType(p, eventType) {
			sets = append(sets, x.subs[tenant][p])
		}
	}
	for _, set := range sets {
		matched++
		if matched == 2 {
			seen = make(map[string]struct{}, len(ids))
			for _, id := range ids {
				seen[id] = struct{}{}
			}
		}
		for id := range set {
			if seen != nil {
				if _, dup := seen[id]; dup {
					continue
				}
				seen[id] = struct{}{}
			}
			ids = append(ids, id)
		}
	}
	return ids
}

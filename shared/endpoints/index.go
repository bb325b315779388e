package endpoints

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/secretbox"
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
}

// NewIndex returns an index; Run fills it and keeps it current.
func NewIndex(ctx context.Context, js jetstream.JetStream, box *secretbox.Box, logger *slog.Logger) (*Index, error) {
	kv, err := js.KeyValue(ctx, contract.BucketEndpoints)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", contract.BucketEndpoints, err)
	}
	return &Index{kv: kv, box: box, logger: logger, ready: make(chan struct{}), byTenant: map[string]map[string]*Endpoint{}}, nil
}

// Ready is closed once every stored endpoint has been read.
func (x *Index) Ready() <-chan struct{} { return x.ready }

// Run watches the bucket until ctx ends.
func (x *Index) Run(ctx context.Context) error {
	w, err := x.kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch endpoints: %w", err)
	}
	defer func() { _ = w.Stop() }()
	readyOnce := sync.OnceFunc(func() { close(x.ready) })
	for {
		select {
		case <-ctx.Done():
			return nil
		case entry, ok := <-w.Updates():
			if !ok {
				return nil
			}
			if entry == nil {
				readyOnce()
				continue
			}
			x.apply(entry)
		}
	}
}

func (x *Index) apply(entry jetstream.KeyValueEntry) {
	tenant, id, _ := strings.Cut(entry.Key(), ".")
	x.mu.Lock()
	defer x.mu.Unlock()
	if entry.Operation() != jetstream.KeyValuePut {
		delete(x.byTenant[tenant], id)
		return
	}
	ep, err := decode(x.box, entry.Value())
	if err != nil {
		x.logger.Error("unreadable endpoint record", "key", entry.Key(), "error", err)
		return
	}
	if x.byTenant[tenant] == nil {
		x.byTenant[tenant] = map[string]*Endpoint{}
	}
	x.byTenant[tenant][id] = &ep
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
	for id, ep := range x.byTenant[tenant] {
		if ep.Enabled && ep.Matches(eventType) {
			ids = append(ids, id)
		}
	}
	return ids
}

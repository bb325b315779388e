package endpoints

import (
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/secretbox"
	"github.com/hookstream/hookstream/shared/signing"
)

// ErrNotFound: no such endpoint, or it belongs to another tenant.
var ErrNotFound = errors.New("endpoint not found")

// Store reads and writes endpoints.
type Store struct {
	kv  jetstream.KeyValue
	box *secretbox.Box
}

// record is an endpoint as stored: the keyring sealed.
type record struct {
	Endpoint
	SealedKeyring string `json:"keyring"`
}

// Open binds to the endpoints bucket, which bus.Ensure has created.
func Open(ctx context.Context, js jetstream.JetStream, box *secretbox.Box) (*Store, error) {
	kv, err := js.KeyValue(ctx, contract.BucketEndpoints)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", contract.BucketEndpoints, err)
	}
	return &Store{kv: kv, box: box}, nil
}

// Key is an endpoint's key in the bucket.
func Key(tenant, id string) string { return tenant + "." + id }

func (s *Store) encode(ep Endpoint) ([]byte, error) {
	sealed := ep.unreadable // a keyring this process cannot read is kept as it is
	if len(ep.Keyring.Secrets) > 0 {
		sealed = string(signing.Seal(s.box, ep.Keyring))
	}
	return json.Marshal(record{Endpoint: ep, SealedKeyring: sealed})
}

// decode reads a stored endpoint. One whose keyring this process cannot
// read (signing.ErrUnreadable: sealed with another secret key) is returned
// too, with an empty Keyring, and that error: it can be shown, changed,
// deleted, and given a new keyring, but not signed for.
func decode(box *secretbox.Box, data []byte) (Endpoint, error) {
	var rec record
	if err := json.Unmarshal(data, &rec); err != nil {
		return Endpoint{}, fmt.Errorf("decode endpoint: %w", err)
	}
	ring, err := signing.Unseal(box, []byte(rec.SealedKeyring))
	if err != nil {
		rec.Endpoint.unreadable = rec.SealedKeyring
		return rec.Endpoint, fmt.Errorf("endpoint %s: %w", rec.ID, err)
	}
	rec.Endpoint.Keyring = ring
	return rec.Endpoint, nil
}

// Readable is err unless it only says the endpoint's keyring is
// unreadable (decode).
func Readable(err error) error {
	if errors.Is(err, signing.ErrUnreadable) {
		return nil
	}
	return err
}

// Create stores a new endpoint.
func (s *Store) Create(ctx context.Context, ep Endpoint) error {
	data, err := s.encode(ep)
	if err != nil {
		return err
	}
	if _, err := s.kv.Create(ctx, Key(ep.Tenant, ep.ID), data); err != nil {
		return fmt.Errorf("create endpoint %s: %w", ep.ID, err)
	}
	return nil
}

// Get returns a tenant's endpoint.
func (s *Store) Get(ctx context.Context, tenant, id string) (Endpoint, uint64, error) {
	if !contract.ValidTenant(id) {
		return Endpoint{}, 0, ErrNotFound
	}
	entry, err := s.kv.Get(ctx, Key(tenant, id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Endpoint{}, 0, ErrNotFound
	}
	if err != nil {
		return Endpoint{}, 0, fmt.Errorf("get endpoint %s: %w", id, err)
	}
	ep, err := decode(s.box, entry.Value())
	ep.Revision = entry.Revision()
	return ep, entry.Revision(), err
}

// Update applies change to the endpoint and stores it with compare-and-set,
// retrying on a conflict. An endpoint whose keyring is unreadable is given
// to change with an empty Keyring: it keeps that keyring unless change
// sets a new one.
func (s *Store) Update(ctx context.Context, tenant, id string, change func(*Endpoint) error) (Endpoint, error) {
	for {
		ep, rev, err := s.Get(ctx, tenant, id)
		if err = Readable(err); err != nil {
			return Endpoint{}, err
		}
		if err := change(&ep); err != nil {
			return Endpoint{}, err
		}
		data, err := s.encode(ep)
		if err != nil {
			return Endpoint{}, err
		}
		newRev, err := s.kv.Update(ctx, Key(tenant, id), data, rev)
		if err == nil {
			ep.Revision = newRev
			return ep, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return Endpoint{}, fmt.Errorf("update endpoint %s: %w", id, err)
		}
	}
}

// Delete removes a tenant's endpoint, also one whose keyring is unreadable.
func (s *Store) Delete(ctx context.Context, tenant, id string) error {
	if _, _, err := s.Get(ctx, tenant, id); Readable(err) != nil {
		return err
	}
	if err := s.kv.Purge(ctx, Key(tenant, id)); err != nil {
		return fmt.Errorf("delete endpoint %s: %w", id, err)
	}
	return nil
}

// ForgetDeleted removes the markers that deleted endpoints left in the
// bucket more than olderThan ago: otherwise every endpoint ever deleted
// stays there, read again by every index at its start. olderThan should be
// far longer than an index keeps a deleted endpoint's mark (goneFor).
func (s *Store) ForgetDeleted(ctx context.Context, olderThan time.Duration) error {
	if err := s.kv.PurgeDeletes(ctx, jetstream.DeleteMarkersOlderThan(olderThan)); err != nil {
		return fmt.Errorf("forget deleted endpoints: %w", err)
	}
	return nil
}

// Count returns how many endpoints a tenant has, from their keys alone.
func (s *Store) Count(ctx context.Context, tenant string) (int, error) {
	n := 0
	err := bus.ReadAll(ctx, s.kv, tenant+".*", func(jetstream.KeyValueEntry) error {
		n++
		return nil
	}, jetstream.MetaOnly())
	return n, err
}

// List returns a tenant's endpoints, also those whose keyring is
// unreadable (with an empty Keyring).
func (s *Store) List(ctx context.Context, tenant string) ([]Endpoint, error) {
	out := []Endpoint{}
	err := bus.ReadAll(ctx, s.kv, tenant+".*", func(entry jetstream.KeyValueEntry) error {
		ep, err := decode(s.box, entry.Value())
		if err = Readable(err); err == nil {
			out = append(out, ep)
		}
		return err
	})
	return out, err
}

// Page returns up to limit of a tenant's endpoints, oldest first (by
// creation time, then id), those after the endpoint after (zero: from the
// first), and whether more follow. It holds no more than limit of them at
// once, and their keyrings are left sealed (Keyring is empty): a page is
// for showing, and an endpoint whose keyring cannot be opened (sealed with
// another secret key) is listed too.
func (s *Store) Page(ctx context.Context, tenant string, after Endpoint, limit int) ([]Endpoint, bool, error) {
	if limit < 1 {
		return nil, false, fmt.Errorf("page of endpoints: limit %d", limit)
	}
	var page latestFirst // one more than limit, to tell whether more follow
	err := bus.ReadAll(ctx, s.kv, tenant+".*", func(entry jetstream.KeyValueEntry) error {
		var rec record
		if err := json.Unmarshal(entry.Value(), &rec); err != nil {
			return fmt.Errorf("decode endpoint %s: %w", entry.Key(), err)
		}
		ep := rec.Endpoint
		ep.Revision = entry.Revision()
		switch {
		case after.ID != "" && !before(after, ep),
			after.ID == "" && !after.CreatedAt.IsZero() && !ep.CreatedAt.After(after.CreatedAt): // a time alone: strictly after it
		case len(page) <= limit:
			heap.Push(&page, ep)
		case before(ep, page[0]):
			page[0] = ep
			heap.Fix(&page, 0)
		}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	slices.SortFunc(page, func(a, b Endpoint) int {
		if before(a, b) {
			return -1
		}
		return 1
	})
	if len(page) > limit {
		return page[:limit], true, nil
	}
	return page, false, nil
}

// before tells whether a comes before b in a page: created earlier, or at
// the same time with a lower id.
func before(a, b Endpoint) bool {
	if !a.CreatedAt.Equal(b.CreatedAt) {
		return a.CreatedAt.Before(b.CreatedAt)
	}
	return a.ID < b.ID
}

// latestFirst is a heap.Interface of endpoints, the last in before's order
// on top.
type latestFirst []Endpoint

func (h latestFirst) Len() int           { return len(h) }
func (h latestFirst) Less(i, j int) bool { return before(h[j], h[i]) }
func (h latestFirst) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *latestFirst) Push(x any)        { *h = append(*h, x.(Endpoint)) }
func (h *latestFirst) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

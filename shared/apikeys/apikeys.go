// Package apikeys issues and checks tenants' API keys. A key is
// "hs_<key id without its key_ prefix>_<secret>"; only its SHA-256 is stored, in the
// contract.BucketAPIKeys bucket under the key id, and a check compares hashes
// in constant time. Index keeps every key record in memory, current through a
// KV watch, so that authenticating a request reads no bucket.
package apikeys

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
)

// ErrNotFound: no such key for this tenant.
var ErrNotFound = errors.New("api key not found")

// Record is a stored key: never the key itself.
type Record struct {
	ID        string    `json:"id"`
	Tenant    string    `json:"tenant"`
	Hash      string    `json:"hash"`
	CreatedAt time.Time `json:"created_at"`
}

var idEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// Hash is the stored form of a key.
func Hash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// Index is the set of issued keys, in memory.
type Index struct {
	kv     jetstream.KeyValue
	logger *slog.Logger
	ready  chan struct{}

	mu   sync.RWMutex
	byID map[string]Record
}

// NewIndex binds to the bucket; Run fills the index and keeps it current.
func NewIndex(ctx context.Context, js jetstream.JetStream, logger *slog.Logger) (*Index, error) {
	kv, err := js.KeyValue(ctx, contract.BucketAPIKeys)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", contract.BucketAPIKeys, err)
	}
	return &Index{kv: kv, logger: logger, ready: make(chan struct{}), byID: map[string]Record{}}, nil
}

// Ready is closed once every stored key has been read.
func (x *Index) Ready() <-chan struct{} { return x.ready }

// Run watches the bucket until ctx ends.
func (x *Index) Run(ctx context.Context) error {
	return bus.Mirror(ctx, x.kv, x.logger, x.ready, x.apply)
}

func (x *Index) apply(entry jetstream.KeyValueEntry) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if entry.Operation() != jetstream.KeyValuePut {
		delete(x.byID, entry.Key())
		return
	}
	var rec Record
	if err := json.Unmarshal(entry.Value(), &rec); err != nil {
		x.logger.Error("unreadable api key record", "key_id", entry.Key(), "error", err)
		return
	}
	x.byID[entry.Key()] = rec
}

// Authenticate returns the tenant of an issued key.
func (x *Index) Authenticate(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, "hs_")
	idBody, _, ok2 := strings.Cut(rest, "_")
	if !ok || !ok2 {
		return "", false
	}
	id := "key_" + idBody
	x.mu.RLock()
	rec, found := x.byID[id]
	x.mu.RUnlock()
	if !found {
		return "", false
	}
	if subtle.ConstantTimeCompare([]byte(Hash(key)), []byte(rec.Hash)) != 1 {
		return "", false
	}
	return rec.Tenant, true
}

// Issue creates a key for tenant and returns its record and the key, which
// is shown once and never stored.
func (x *Index) Issue(ctx context.Context, tenant string, now time.Time) (Record, string, error) {
	var idBytes [10]byte
	var secret [32]byte
	if _, err := rand.Read(idBytes[:]); err != nil {
		return Record{}, "", fmt.Errorf("generate key: %w", err)
	}
	_, _ = rand.Read(secret[:])
	idBody := idEncoding.EncodeToString(idBytes[:])
	id := "key_" + idBody
	key := "hs_" + idBody + "_" + base64.RawURLEncoding.EncodeToString(secret[:])
	rec := Record{ID: id, Tenant: tenant, Hash: Hash(key), CreatedAt: now.UTC()}
	data, _ := json.Marshal(rec)
	if _, err := x.kv.Create(ctx, id, data); err != nil {
		return Record{}, "", fmt.Errorf("store key: %w", err)
	}
	x.apply(putEntry{key: id, value: data}) // usable at once in this process
	return rec, key, nil
}

// List returns the tenant's key records.
func (x *Index) List(ctx context.Context, tenant string) ([]Record, error) {
	out := []Record{}
	err := bus.ReadAll(ctx, x.kv, ">", func(entry jetstream.KeyValueEntry) error {
		var rec Record
		if err := json.Unmarshal(entry.Value(), &rec); err == nil && rec.Tenant == tenant {
			out = append(out, rec)
		}
		return nil
	})
	return out, err
}

// Revoke deletes one of the tenant's keys.
func (x *Index) Revoke(ctx context.Context, tenant, id string) error {
	if !contract.ValidType(id) { // no key has it; a long one would end the connection
		return ErrNotFound
	}
	entry, err := x.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("get key %s: %w", id, err)
	}
	var rec Record
	if err := json.Unmarshal(entry.Value(), &rec); err != nil || rec.Tenant != tenant {
		return ErrNotFound
	}
	if err := x.kv.Purge(ctx, id); err != nil {
		return fmt.Errorf("revoke key %s: %w", id, err)
	}
	x.mu.Lock()
	delete(x.byID, id)
	x.mu.Unlock()
	return nil
}

// putEntry lets Issue apply its own write without waiting for the watch.
type putEntry struct {
	jetstream.KeyValueEntry
	key   string
	value []byte
}

func (e putEntry) Key() string                     { return e.key }
func (e putEntry) Value() []byte                   { return e.value }
func (e putEntry) Operation() jetstream.KeyValueOp { return jetstream.KeyValuePut }

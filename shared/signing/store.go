package signing

import (
	"context"
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
	"github.com/hookstream/hookstream/shared/secretbox"
)

// Store reads and writes tenants' keyrings, sealed with a secretbox. Reads
// are cached for DefaultCacheTTL so that the delivery loop does not read the
// bucket for every webhook. A rotation made by another process is seen as
// soon as its change reaches this one while Watch runs, else within that
// time (the old secret keeps signing meanwhile).
type Store struct {
	kv  jetstream.KeyValue
	box *secretbox.Box
	now func() time.Time

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	ring Keyring
	rev  uint64    // the record's revision: an older read never replaces it
	at   time.Time // when the read that got it began
	// deleted: the record was removed (the tenant deleted) at rev; a read
	// that began before does not bring its keyring back.
	deleted bool
}

// ErrTenantDeleted: the tenant was deleted (contract.TenantDeletedKey), so
// no keyring is made for it.
var ErrTenantDeleted = errors.New("the tenant was deleted")

// DefaultCacheTTL is how long a read keyring is reused.
const DefaultCacheTTL = 5 * time.Second

// Open binds to the tenants bucket, which bus.Ensure has created.
func Open(ctx context.Context, js jetstream.JetStream, box *secretbox.Box) (*Store, error) {
	kv, err := js.KeyValue(ctx, contract.BucketTenants)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", contract.BucketTenants, err)
	}
	return &Store{kv: kv, box: box, now: time.Now, cache: map[string]cached{}}, nil
}

const keySuffix = ".signing"

func key(tenant string) string { return tenant + keySuffix }

// Watch applies every change to a keyring that another process makes to
// the cache as it comes, until ctx ends: a rotation signs with the new
// secret, and stops the old ones when its grace is 0, at once and not
// after DefaultCacheTTL. It returns an error only if the bucket cannot be
// watched (bus.MirrorKeys); the cache then goes on by its TTL alone.
func (s *Store) Watch(ctx context.Context, logger *slog.Logger) error {
	return bus.MirrorKeys(ctx, s.kv, "*"+keySuffix, logger, make(chan struct{}), s.apply)
}

// apply caches the keyring of a change to its record, or that it was
// removed; a change older than what the cache holds (a rotation by this
// process that the watch brings late) is left out.
func (s *Store) apply(entry jetstream.KeyValueEntry) {
	tenant, ok := strings.CutSuffix(entry.Key(), keySuffix)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.cache[tenant]
	if entry.Operation() != jetstream.KeyValuePut && entry.Revision() == 0 {
		// Gone while the watch was down (bus.Mirror): its revision is not
		// known, but it is later than anything cached.
		s.cache[tenant] = cached{rev: c.rev + 1, at: s.now(), deleted: true}
		return
	}
	if ok && c.rev > entry.Revision() {
		return
	}
	if entry.Operation() != jetstream.KeyValuePut {
		s.cache[tenant] = cached{rev: entry.Revision(), at: s.now(), deleted: true}
		return
	}
	if !ok {
		return // not cached: the next Get reads it (a keyring cached from the watch's first read could be older than a rotation not yet watched)
	}
	ring, err := Unseal(s.box, entry.Value())
	if err != nil {
		delete(s.cache, tenant) // read again, for its error
		return
	}
	s.cache[tenant] = cached{ring: ring, rev: entry.Revision(), at: s.now()}
}

// Seal encodes and encrypts a keyring for storage.
func Seal(box *secretbox.Box, ring Keyring) []byte {
	data, _ := json.Marshal(ring)
	return []byte(box.Seal(data))
}

// ErrUnreadable: a keyring sealed with another secret key than this
// process's (the deployment's key was replaced, HOOKSTREAM_SECRET_KEY_REPLACE),
// or not a keyring. Its secrets are lost; a rotation makes a new one.
var ErrUnreadable = errors.New("the signing secret cannot be read: it was sealed with another secret key (HOOKSTREAM_SECRET_KEY_REPLACE); rotate it to make a new one")

// Unseal decrypts and decodes a stored keyring; ErrUnreadable if it cannot.
func Unseal(box *secretbox.Box, sealed []byte) (Keyring, error) {
	data, err := box.Open(string(sealed))
	if err != nil {
		return Keyring{}, fmt.Errorf("%w (%w)", ErrUnreadable, err)
	}
	var ring Keyring
	if err := json.Unmarshal(data, &ring); err != nil || len(ring.Secrets) == 0 {
		return Keyring{}, fmt.Errorf("%w (not a keyring)", ErrUnreadable)
	}
	return ring, nil
}

// Get returns the tenant's keyring, creating it with a new secret on first
// use; ErrTenantDeleted for a deleted tenant, whose keyring was removed.
func (s *Store) Get(ctx context.Context, tenant string) (Keyring, error) {
	s.mu.Lock()
	c, ok := s.cache[tenant]
	s.mu.Unlock()
	if ok && s.now().Sub(c.at) < DefaultCacheTTL {
		if c.deleted {
			return Keyring{}, ErrTenantDeleted
		}
		return c.ring, nil
	}
	start := s.now()
	ring, rev, err := s.load(ctx, tenant)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		ring, rev, err = s.create(ctx, tenant)
	}
	if err != nil {
		return Keyring{}, err
	}
	return s.remember(tenant, ring, rev, start)
}

// checkNotDeleted is ErrTenantDeleted for a deleted tenant.
func (s *Store) checkNotDeleted(ctx context.Context, tenant string) error {
	_, err := s.kv.Get(ctx, contract.TenantDeletedKey(tenant))
	switch {
	case err == nil:
		return ErrTenantDeleted
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nil
	}
	return err
}

// remember caches ring, the record's revision rev as read from at, and
// returns it; unless the cache holds a later revision cached after this
// read began (a rotation in this process that a slower read began before),
// which it returns instead, or ErrTenantDeleted if that is the record's
// removal. A later revision cached before is not trusted over a fresh read:
// a bucket made again counts its revisions from 1.
func (s *Store) remember(tenant string, ring Keyring, rev uint64, at time.Time) (Keyring, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.cache[tenant]; ok && c.rev > rev && c.at.After(at) {
		if c.deleted {
			return Keyring{}, ErrTenantDeleted
		}
		return c.ring, nil
	}
	s.cache[tenant] = cached{ring: ring, rev: rev, at: at}
	return ring, nil
}

// load reads the tenant's keyring; one it cannot read is ErrUnreadable,
// with the record's revision.
func (s *Store) load(ctx context.Context, tenant string) (Keyring, uint64, error) {
	entry, err := s.kv.Get(ctx, key(tenant))
	if err != nil {
		return Keyring{}, 0, err
	}
	ring, err := Unseal(s.box, entry.Value())
	if err != nil {
		return Keyring{}, entry.Revision(), fmt.Errorf("keyring of %s: %w", tenant, err)
	}
	return ring, entry.Revision(), nil
}

// create makes the keyring of a tenant that has none, unless the tenant
// was deleted (its keyring purged), before or while it was made.
func (s *Store) create(ctx context.Context, tenant string) (Keyring, uint64, error) {
	if err := s.checkNotDeleted(ctx, tenant); err != nil {
		return Keyring{}, 0, err
	}
	ring, err := NewKeyring(s.now())
	if err != nil {
		return Keyring{}, 0, err
	}
	rev, err := s.kv.Create(ctx, key(tenant), Seal(s.box, ring))
	if errors.Is(err, jetstream.ErrKeyExists) {
		return s.load(ctx, tenant) // another process created it first
	} else if err != nil {
		return Keyring{}, 0, fmt.Errorf("create keyring of %s: %w", tenant, err)
	}
	// The delete may have purged before this create: the keyring goes too.
	if err := s.checkNotDeleted(ctx, tenant); err != nil {
		if errors.Is(err, ErrTenantDeleted) {
			_ = s.kv.Purge(ctx, key(tenant))
		}
		return Keyring{}, 0, err
	}
	return ring, rev, nil
}

// Rotate makes secret, or a new secret if it is "", the current one
// (Keyring.Rotate); the previous ones keep signing until grace has passed.
// A keyring it cannot read (ErrUnreadable) is replaced by a new one.
func (s *Store) Rotate(ctx context.Context, tenant string, grace time.Duration, secret string) (Keyring, error) {
	if _, err := s.Get(ctx, tenant); err != nil && !errors.Is(err, ErrUnreadable) {
		return Keyring{}, err
	}
	for {
		ring, rev, err := s.load(ctx, tenant)
		switch {
		case errors.Is(err, ErrUnreadable):
			ring, err = Keyring{}.Rotate(s.now(), grace, secret)
		case err != nil:
			return Keyring{}, fmt.Errorf("load keyring of %s: %w", tenant, err)
		default:
			ring, err = ring.Rotate(s.now(), grace, secret)
		}
		if err != nil {
			return Keyring{}, err
		}
		rev, err = s.kv.Update(ctx, key(tenant), Seal(s.box, ring), rev)
		if errors.Is(err, jetstream.ErrKeyExists) {
			continue // changed meanwhile; rotate again from the new state
		}
		if err != nil {
			return Keyring{}, fmt.Errorf("rotate keyring of %s: %w", tenant, err)
		}
		return s.remember(tenant, ring, rev, s.now())
	}
}

// Package signing keeps each tenant's webhook signing secrets in the
// contract.BucketTenants bucket: the current secret and, during a rotation's
// grace period, the previous ones, which keep signing too.
package signing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/webhook"
)

// MaxOldSecrets is how many rotated-out secrets keep signing at once.
const MaxOldSecrets = 10

// Secret is one signing secret.
type Secret struct {
	Secret    string     `json:"secret"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// Keyring is a tenant's secrets, the current one first.
type Keyring struct {
	Secrets []Secret `json:"secrets"`
}

// Current returns the secret new receivers should be given.
func (k Keyring) Current() Secret { return k.Secrets[0] }

// Keys returns the key bytes of every secret still signing at now.
func (k Keyring) Keys(now time.Time) ([][]byte, error) {
	keys := make([][]byte, 0, len(k.Secrets))
	for _, s := range k.Secrets {
		if s.ExpiresAt != nil && !now.Before(*s.ExpiresAt) {
			continue
		}
		key, err := webhook.ParseSecret(s.Secret)
		if err != nil {
			return nil, fmt.Errorf("stored secret: %w", err)
		}
		keys = append(keys, key)
	}
	return keys, nil
}

// Store reads and writes keyrings. Reads are cached for CacheTTL so that the
// delivery loop does not read the bucket for every webhook.
type Store struct {
	kv       jetstream.KeyValue
	cacheTTL time.Duration
	now      func() time.Time

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	ring Keyring
	at   time.Time
}

// DefaultCacheTTL is how long a read keyring is reused.
const DefaultCacheTTL = 5 * time.Second

// Open binds to the tenants bucket, which bus.Ensure has created.
func Open(ctx context.Context, js jetstream.JetStream) (*Store, error) {
	kv, err := js.KeyValue(ctx, contract.BucketTenants)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", contract.BucketTenants, err)
	}
	return &Store{kv: kv, cacheTTL: DefaultCacheTTL, now: time.Now, cache: map[string]cached{}}, nil
}

func key(tenant string) string { return tenant + ".signing" }

// Get returns the tenant's keyring, creating it with a new secret on first
// use.
func (s *Store) Get(ctx context.Context, tenant string) (Keyring, error) {
	s.mu.Lock()
	c, ok := s.cache[tenant]
	s.mu.Unlock()
	if ok && s.now().Sub(c.at) < s.cacheTTL {
		return c.ring, nil
	}
	ring, _, err := s.load(ctx, tenant)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		ring, err = s.create(ctx, tenant)
	}
	if err != nil {
		return Keyring{}, err
	}
	s.remember(tenant, ring)
	return ring, nil
}

func (s *Store) remember(tenant string, ring Keyring) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cache[tenant] = cached{ring: ring, at: s.now()}
}

func (s *Store) load(ctx context.Context, tenant string) (Keyring, uint64, error) {
	entry, err := s.kv.Get(ctx, key(tenant))
	if err != nil {
		return Keyring{}, 0, err
	}
	var ring Keyring
	if err := json.Unmarshal(entry.Value(), &ring); err != nil || len(ring.Secrets) == 0 {
		return Keyring{}, 0, fmt.Errorf("decode keyring of %s: bad record", tenant)
	}
	return ring, entry.Revision(), nil
}

func (s *Store) create(ctx context.Context, tenant string) (Keyring, error) {
	secret, err := webhook.NewSecret()
	if err != nil {
		return Keyring{}, err
	}
	ring := Keyring{Secrets: []Secret{{Secret: secret, CreatedAt: s.now().UTC()}}}
	data, _ := json.Marshal(ring)
	if _, err := s.kv.Create(ctx, key(tenant), data); errors.Is(err, jetstream.ErrKeyExists) {
		ring, _, err = s.load(ctx, tenant) // another process created it first
		return ring, err
	} else if err != nil {
		return Keyring{}, fmt.Errorf("create keyring of %s: %w", tenant, err)
	}
	return ring, nil
}

// Rotate makes a new current secret; the previous ones keep signing until
// grace has passed. At most MaxOldSecrets old secrets are kept.
func (s *Store) Rotate(ctx context.Context, tenant string, grace time.Duration) (Keyring, error) {
	if _, err := s.Get(ctx, tenant); err != nil {
		return Keyring{}, err
	}
	for {
		ring, rev, err := s.load(ctx, tenant)
		if err != nil {
			return Keyring{}, fmt.Errorf("load keyring of %s: %w", tenant, err)
		}
		secret, err := webhook.NewSecret()
		if err != nil {
			return Keyring{}, err
		}
		now := s.now().UTC()
		until := now.Add(grace)
		next := []Secret{{Secret: secret, CreatedAt: now}}
		for _, old := range ring.Secrets {
			if old.ExpiresAt == nil {
				old.ExpiresAt = &until
			}
			if now.Before(*old.ExpiresAt) && len(next) <= MaxOldSecrets {
				next = append(next, old)
			}
		}
		ring.Secrets = next
		data, _ := json.Marshal(ring)
		_, err = s.kv.Update(ctx, key(tenant), data, rev)
		if errors.Is(err, jetstream.ErrKeyExists) {
			continue // changed meanwhile; rotate again from the new state
		}
		if err != nil {
			return Keyring{}, fmt.Errorf("rotate keyring of %s: %w", tenant, err)
		}
		s.remember(tenant, ring)
		return ring, nil
	}
}

// Package signing keeps webhook signing secrets: a Keyring is the current
// secret and, during a rotation's grace period, the previous ones, which
// keep signing too. Store keeps each tenant's keyring (for job callbacks) in
// the contract.BucketTenants bucket, encrypted at rest.
package signing

import (
	"errors"
	"fmt"
	"time"

	"github.com/hookstream/hookstream/shared/webhook"
)

// Rotation limits.
const (
	// MaxOldSecrets is how many rotated-out secrets keep signing at once.
	MaxOldSecrets = 10
	// MaxGrace is the longest grace period of a rotated-out secret.
	MaxGrace = 7 * 24 * time.Hour
	// DefaultGrace is the default grace period.
	DefaultGrace = 24 * time.Hour
)

// Secret is one signing secret.
type Secret struct {
	Secret    string     `json:"secret"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// Keyring is a set of secrets, the current one first.
type Keyring struct {
	Secrets []Secret `json:"secrets"`
}

// NewKeyring returns a keyring with one new secret.
func NewKeyring(now time.Time) (Keyring, error) {
	secret, err := webhook.NewSecret()
	if err != nil {
		return Keyring{}, err
	}
	return Keyring{Secrets: []Secret{{Secret: secret, CreatedAt: now.UTC()}}}, nil
}

// ErrCurrentSecret is returned by Rotate for the keyring's current secret.
var ErrCurrentSecret = errors.New("the secret is already the current one")

// KeyringOf returns a keyring whose one secret is the caller's own, a whsec_
// secret (webhook.ErrBadSecret if it is not one).
func KeyringOf(secret string, now time.Time) (Keyring, error) {
	if _, err := webhook.ParseSecret(secret); err != nil {
		return Keyring{}, err
	}
	return Keyring{Secrets: []Secret{{Secret: secret, CreatedAt: now.UTC()}}}, nil
}

// Current returns the secret new receivers should be given.
func (k Keyring) Current() Secret { return k.Secrets[0] }

// Previous returns the rotated-out secrets still signing at now.
func (k Keyring) Previous(now time.Time) []Secret {
	var out []Secret
	for _, s := range k.Secrets[1:] {
		if s.ExpiresAt != nil && now.Before(*s.ExpiresAt) {
			out = append(out, s)
		}
	}
	return out
}

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

// Rotate returns the keyring with a new current secret: secret, the
// caller's own (as KeyringOf takes it), or a new one if secret is "". The
// previous ones keep signing until grace has passed, at most MaxOldSecrets
// of them. The current secret is refused (ErrCurrentSecret); a previous one
// becomes current again.
func (k Keyring) Rotate(now time.Time, grace time.Duration, secret string) (Keyring, error) {
	if len(k.Secrets) > 0 && secret == k.Current().Secret {
		return Keyring{}, ErrCurrentSecret
	}
	var fresh Keyring
	var err error
	if secret == "" {
		fresh, err = NewKeyring(now)
	} else {
		fresh, err = KeyringOf(secret, now)
	}
	if err != nil {
		return Keyring{}, err
	}
	until := now.UTC().Add(min(grace, MaxGrace))
	for _, old := range k.Secrets {
		if old.Secret == secret {
			continue // current again
		}
		if old.ExpiresAt == nil {
			old.ExpiresAt = &until
		}
		if now.Before(*old.ExpiresAt) && len(fresh.Secrets) <= MaxOldSecrets {
			fresh.Secrets = append(fresh.Secrets, old)
		}
	}
	return fresh, nil
}

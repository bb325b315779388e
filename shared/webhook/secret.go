package webhook

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// SecretPrefix starts every signing secret.
const SecretPrefix = "whsec_"

// Secret key sizes in bytes.
const (
	MinSecretBytes     = 24
	MaxSecretBytes     = 64
	DefaultSecretBytes = 32
)

// ErrBadSecret is returned for a secret that is not whsec_ + base64 of 24 to
// 64 bytes.
var ErrBadSecret = errors.New("secret is not whsec_ followed by base64 of 24 to 64 bytes")

// NewSecret returns a new random secret of [DefaultSecretBytes] bytes.
func NewSecret() (string, error) {
	key := make([]byte, DefaultSecretBytes)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("read random bytes: %w", err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(key), nil
}

// ParseSecret returns the key bytes of a whsec_ secret.
func ParseSecret(secret string) ([]byte, error) {
	encoded, ok := strings.CutPrefix(secret, SecretPrefix)
	if !ok {
		return nil, ErrBadSecret
	}
	key, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil || len(key) < MinSecretBytes || len(key) > MaxSecretBytes {
		return nil, ErrBadSecret
	}
	if base64.StdEncoding.EncodeToString(key) != encoded {
		// Written another way (line breaks, which the decoder skips): one
		// key, one spelling, so that a secret is compared as it is stored.
		return nil, ErrBadSecret
	}
	return key, nil
}

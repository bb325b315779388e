package signing

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
)

// ErrKeyMismatch is CheckKey's answer to a service whose secret key is not
// the deployment's: it would name jobs differently and could not open the
// stored signing secrets.
var ErrKeyMismatch = errors.New("the secret key is not the deployment's")

// CheckKey makes box's key the deployment's when none is recorded yet (its
// fingerprint at contract.KeySecretKeyFingerprint in contract.BucketTenants),
// and otherwise fails with ErrKeyMismatch unless it is the recorded one.
// Every service checks at start, after bus.Ensure. A deployment from before
// the record gets its key only from a service that can open a stored
// signing secret, so that a misconfigured service starting first cannot
// claim it. With replace, box's key is recorded whatever was before: the
// secrets sealed with another key stay unreadable.
func CheckKey(ctx context.Context, js jetstream.JetStream, box *secretbox.Box, replace bool) error {
	kv, err := js.KeyValue(ctx, contract.BucketTenants)
	if err != nil {
		return fmt.Errorf("open bucket %s: %w", contract.BucketTenants, err)
	}
	mine := box.Fingerprint()
	if replace {
		if _, err := kv.Put(ctx, contract.KeySecretKeyFingerprint, []byte(mine)); err != nil {
			return fmt.Errorf("record the secret key's fingerprint: %w", err)
		}
		return nil
	}
	recorded, err := recordedFingerprint(ctx, kv, 1)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		if err := opensSealedSecret(ctx, kv, box); err != nil {
			return err
		}
		_, err = kv.Create(ctx, contract.KeySecretKeyFingerprint, []byte(mine))
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("record the secret key's fingerprint: %w", err)
		}
		recorded, err = recordedFingerprint(ctx, kv, 5) // another service was first
	}
	if err != nil {
		return fmt.Errorf("read the secret key's fingerprint: %w", err)
	}
	if recorded != mine {
		return fmt.Errorf("%w (its fingerprint %s, this key's %s)", ErrKeyMismatch, recorded, mine)
	}
	return nil
}

// WatchKey calls mismatch, once, when the deployment's recorded key becomes
// another than box's: a service started since with
// HOOKSTREAM_SECRET_KEY_REPLACE and a new key. A running service with the
// old key would go on naming jobs otherwise than the others (intake would
// answer 202 with ids the processors do not use) and could not open the
// secrets sealed from then on; it must stop, as it would at start. It runs
// until ctx ends; an error means the record cannot be watched.
func WatchKey(ctx context.Context, js jetstream.JetStream, box *secretbox.Box, logger *slog.Logger, mismatch func(error)) error {
	kv, err := js.KeyValue(ctx, contract.BucketTenants)
	if err != nil {
		return fmt.Errorf("open bucket %s: %w", contract.BucketTenants, err)
	}
	mine := box.Fingerprint()
	var once sync.Once
	return bus.MirrorKeys(ctx, kv, contract.KeySecretKeyFingerprint, logger, make(chan struct{}), func(entry jetstream.KeyValueEntry) {
		if recorded := string(entry.Value()); entry.Operation() == jetstream.KeyValuePut && recorded != mine {
			once.Do(func() {
				mismatch(fmt.Errorf("%w: another service recorded a new one (its fingerprint %s, this key's %s)", ErrKeyMismatch, recorded, mine))
			})
		}
	})
}

// recordedFingerprint reads the recorded fingerprint, trying up to tries
// times while it is missing: a replica of a replicated bucket may answer a
// moment behind its leader, which has just recorded it.
func recordedFingerprint(ctx context.Context, kv jetstream.KeyValue, tries int) (string, error) {
	var err error
	for i := range tries {
		if i > 0 {
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
		var entry jetstream.KeyValueEntry
		entry, err = kv.Get(ctx, contract.KeySecretKeyFingerprint)
		if err == nil {
			return string(entry.Value()), nil
		}
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return "", err
		}
	}
	return "", err
}

// errStop ends opensSealedSecret's read after the first secret.
var errStop = errors.New("stop")

// opensSealedSecret fails with ErrKeyMismatch when a signing secret is
// stored and box cannot open it.
func opensSealedSecret(ctx context.Context, kv jetstream.KeyValue, box *secretbox.Box) error {
	var sealedErr error
	err := bus.ReadAll(ctx, kv, "*.signing", func(e jetstream.KeyValueEntry) error {
		if _, err := Unseal(box, e.Value()); errors.Is(err, secretbox.ErrOpen) {
			sealedErr = fmt.Errorf("%w (it cannot open the signing secret of tenant %s)", ErrKeyMismatch, strings.TrimSuffix(e.Key(), ".signing"))
		}
		return errStop
	})
	if err != nil && !errors.Is(err, errStop) {
		return fmt.Errorf("read the signing secrets: %w", err)
	}
	return sealedErr
}

package secretbox_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"os"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/secretbox"
)

func TestSealOpen(t *testing.T) {
	t.Parallel()
	key, err := secretbox.KeyFile(t.TempDir())
	require.NoError(t, err)
	box, err := secretbox.New(key)
	require.NoError(t, err)
	sealed := box.Seal([]byte("whsec_abc"))
	require.NotContains(t, sealed, "whsec_abc")
	require.NotEqual(t, sealed, box.Seal([]byte("whsec_abc")), "a fresh nonce every time")
	plain, err := box.Open(sealed)
	require.NoError(t, err)
	require.Equal(t, "whsec_abc", string(plain))

	other, _ := secretbox.New(bytes.Repeat([]byte{1}, secretbox.KeySize))
	_, err = other.Open(sealed)
	require.ErrorIs(t, err, secretbox.ErrOpen)
	_, err = box.Open("plain")
	require.ErrorIs(t, err, secretbox.ErrOpen)
}

// A fingerprint tells keys apart without revealing them.
func TestFingerprint(t *testing.T) {
	t.Parallel()
	key, a, again, other := threeBoxes(t)
	require.Equal(t, a.Fingerprint(), again.Fingerprint())
	require.NotEqual(t, a.Fingerprint(), other.Fingerprint())
	require.Len(t, a.Fingerprint(), 22)
	require.NotContains(t, a.Fingerprint(), base64.RawURLEncoding.EncodeToString(key[:8]))
}

func TestKeyFileIsStable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a, err := secretbox.KeyFile(dir)
	require.NoError(t, err)
	b, err := secretbox.KeyFile(dir)
	require.NoError(t, err)
	require.Equal(t, a, b)
	_, err = secretbox.ParseKey("short")
	require.Error(t, err)
}

// TestJobIDMaskIsStable: a job id made before an upgrade must still name
// its job after it, so the mask of a key and nonce never changes. The
// values were computed before the HMAC's input buffer was pooled.
func TestJobIDMaskIsStable(t *testing.T) {
	t.Parallel()
	box, err := secretbox.New(make([]byte, secretbox.KeySize))
	require.NoError(t, err)
	for range 3 { // pooled HMACs give the same
		require.Equal(t, uint64(9570856862084082959), box.JobIDMask("0123456789abcdefghijklmnop"))
		require.Equal(t, uint64(2628436775542865068), box.JobIDMask(""))
	}
}

// Processes that make the key file at the same moment all end up with the
// one on disk, which is whole.
func TestKeyFileMadeAtOnce(t *testing.T) {
	t.Parallel()
	for range 20 {
		dir := t.TempDir()
		keys := make([][]byte, 8)
		var wg sync.WaitGroup
		for i := range keys {
			wg.Go(func() {
				key, err := secretbox.KeyFile(dir)
				assert.NoError(t, err)
				keys[i] = key
			})
		}
		wg.Wait()
		onDisk, err := secretbox.KeyFile(dir)
		require.NoError(t, err)
		for _, key := range keys {
			require.Equal(t, onDisk, key)
		}
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		require.Len(t, entries, 1, "no temporary file is left")
	}
}

// A secret's digest is the same for the same key, another for another key,
// and neither a plain hash of it nor the fingerprint.
func TestDigest(t *testing.T) {
	t.Parallel()
	_, a, again, other := threeBoxes(t)
	secret := []byte("whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3")
	require.Equal(t, a.Digest(secret), again.Digest(secret))
	require.NotEqual(t, a.Digest(secret), other.Digest(secret))
	plain := sha256.Sum256(secret)
	require.NotEqual(t, plain[:], a.Digest(secret))
}

// threeBoxes returns a key, two boxes of it and one of another key.
func threeBoxes(t *testing.T) (key []byte, a, again, other *secretbox.Box) {
	t.Helper()
	key = bytes.Repeat([]byte{7}, secretbox.KeySize)
	a, err := secretbox.New(key)
	require.NoError(t, err)
	again, err = secretbox.New(bytes.Clone(key))
	require.NoError(t, err)
	other, err = secretbox.New(bytes.Repeat([]byte{8}, secretbox.KeySize))
	require.NoError(t, err)
	return key, a, again, other
}

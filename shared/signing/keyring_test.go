package signing_test

import (
	"bytes"
	"encoding/base64"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/signing"
	"github.com/hookstream/hookstream/shared/webhook"
)

func TestRotateKeepsOldSecretsForTheGracePeriod(t *testing.T) {
	t.Parallel()
	now := time.Unix(1700000000, 0)
	ring, err := signing.NewKeyring(now)
	require.NoError(t, err)
	first := ring.Current().Secret
	ring, err = ring.Rotate(now, time.Hour, "")
	require.NoError(t, err)
	require.NotEqual(t, first, ring.Current().Secret)

	keys, err := ring.Keys(now.Add(59 * time.Minute))
	require.NoError(t, err)
	require.Len(t, keys, 2, "both sign during the grace period")
	require.Equal(t, first, ring.Previous(now)[0].Secret)
	keys, err = ring.Keys(now.Add(time.Hour))
	require.NoError(t, err)
	require.Len(t, keys, 1, "only the new one after it")
	require.Empty(t, ring.Previous(now.Add(time.Hour)))
}

func TestRotateBoundsOldSecrets(t *testing.T) {
	t.Parallel()
	now := time.Unix(1700000000, 0)
	ring, err := signing.NewKeyring(now)
	require.NoError(t, err)
	for range 20 {
		ring, err = ring.Rotate(now, 30*24*time.Hour, "")
		require.NoError(t, err)
	}
	require.Len(t, ring.Secrets, signing.MaxOldSecrets+1)
	require.True(t, now.Add(signing.MaxGrace).Equal(*ring.Secrets[1].ExpiresAt), "grace is capped at 7 days")
}

// A secret of one's own (a receiver moved from another provider) is taken
// as it is, checked; rotating to the current one is refused, and to a
// previous one makes it current again, without keeping it twice.
func TestKeyringWithASecretOfOnesOwn(t *testing.T) {
	t.Parallel()
	now := time.Unix(1700000000, 0)
	own := "whsec_" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	ring, err := signing.KeyringOf(own, now)
	require.NoError(t, err)
	require.Equal(t, own, ring.Current().Secret)
	for _, bad := range []string{"", "whsec_", own[len("whsec_"):], "whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 23)),
		"whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 65)), "whsec_" + base64.RawStdEncoding.EncodeToString(make([]byte, 31)), own[:20] + "\r\n" + own[20:]} {
		_, err := signing.KeyringOf(bad, now)
		require.ErrorIs(t, err, webhook.ErrBadSecret, bad)
		_, err = ring.Rotate(now, time.Hour, "x"+bad)
		require.ErrorIs(t, err, webhook.ErrBadSecret, bad)
	}
	_, err = ring.Rotate(now, time.Hour, own)
	require.ErrorIs(t, err, signing.ErrCurrentSecret)

	ring, err = ring.Rotate(now, time.Hour, "")
	require.NoError(t, err)
	ring, err = ring.Rotate(now, time.Hour, own)
	require.NoError(t, err)
	require.Equal(t, own, ring.Current().Secret)
	require.Len(t, ring.Secrets, 2, "the own secret once, current, and the one rotated out")
	require.NotEqual(t, own, ring.Secrets[1].Secret)
	keys, err := ring.Keys(now)
	require.NoError(t, err)
	require.Len(t, keys, 2)
}

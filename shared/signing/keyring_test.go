package signing_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/signing"
)

func TestRotateKeepsOldSecretsForTheGracePeriod(t *testing.T) {
	t.Parallel()
	now := time.Unix(1700000000, 0)
	ring, err := signing.NewKeyring(now)
	require.NoError(t, err)
	first := ring.Current().Secret
	ring, err = ring.Rotate(now, time.Hour)
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
		ring, err = ring.Rotate(now, 30*24*time.Hour)
		require.NoError(t, err)
	}
	require.Len(t, ring.Secrets, signing.MaxOldSecrets+1)
	require.True(t, now.Add(signing.MaxGrace).Equal(*ring.Secrets[1].ExpiresAt), "grace is capped at 7 days")
}

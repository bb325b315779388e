package allinone

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// A secret kept in the data dir is made once and read back; a file left
// empty (a crash on first start) is an error, not an empty token that
// would let anyone in.
func TestKeptSecret(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first, created, err := keptSecret(dir, NATSTokenFile, "")
	require.NoError(t, err)
	require.True(t, created)
	require.GreaterOrEqual(t, len(first), 16)
	again, created, err := keptSecret(dir, NATSTokenFile, "")
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, first, again)

	require.NoError(t, os.WriteFile(filepath.Join(dir, NATSTokenFile), []byte(" \n"), 0o600))
	_, _, err = keptSecret(dir, NATSTokenFile, "")
	require.ErrorContains(t, err, "remove it")
}

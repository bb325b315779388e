package allinone

import (
	"bytes"
	"log/slog"
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

// A key file that others may read (a backup restored as 0644) is warned
// about; one made here, 0600, is not.
func TestWarnOpenKeyFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, _, err := keptSecret(dir, NATSTokenFile, "")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "secret-key"), []byte("x\n"), 0o644))
	require.NoError(t, os.Chmod(filepath.Join(dir, "secret-key"), 0o644)) // whatever the umask
	var logs bytes.Buffer
	warnOpenKeyFiles(slog.New(slog.NewTextHandler(&logs, nil)), dir)
	require.Contains(t, logs.String(), "secret-key")
	require.NotContains(t, logs.String(), NATSTokenFile)
}

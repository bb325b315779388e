package allinone

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/hookstream/hookstream/shared/secretbox"
)

// DevTenant is the tenant created when no API keys are configured.
const DevTenant = "dev"

// devKeyFile is where the development key is kept, in the data dir.
const devKeyFile = "dev-api-key"

// NATSTokenFile is where the embedded NATS listener's token is kept, in
// the data dir, when none is configured (Config.NATSToken).
const NATSTokenFile = "nats-token"

// DevKey returns the development API key kept in dataDir, creating it on
// first use (created is then true). The file is readable by its owner only.
func DevKey(dataDir string) (key string, created bool, err error) {
	return keptSecret(dataDir, devKeyFile, "hs_dev_")
}

// keptSecret returns the secret kept in dataDir/name, creating it on first
// use (created is then true): prefix and 24 random bytes, URL-safe base64.
// The file is readable by its owner only. A kept one shorter than 16
// characters (a file left empty by a crash) is an error: an empty token
// would let anyone in.
func keptSecret(dataDir, name, prefix string) (secret string, created bool, err error) {
	path := filepath.Join(dataDir, name)
	data, err := os.ReadFile(path)
	if err == nil {
		if secret = strings.TrimSpace(string(data)); len(secret) < 16 {
			return "", false, fmt.Errorf("%s holds no secret of 16 characters or more: remove it to have a new one made", path)
		}
		return secret, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", false, fmt.Errorf("read %s: %w", path, err)
	}
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", false, fmt.Errorf("generate %s: %w", name, err)
	}
	secret = prefix + base64.RawURLEncoding.EncodeToString(b[:])
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", false, fmt.Errorf("create data dir: %w", err)
	}
	if err := secretbox.CreateFile(path, []byte(secret+"\n")); errors.Is(err, fs.ErrExist) {
		return keptSecret(dataDir, name, prefix) // made by another process meanwhile
	} else if err != nil {
		return "", false, err
	}
	return secret, true, nil
}

// warnOpenKeyFiles warns about the data dir's key files that others than
// their owner may read: made here they are 0600, but a backup restored
// carelessly may not be.
func warnOpenKeyFiles(logger *slog.Logger, dataDir string) {
	for _, name := range []string{"secret-key", NATSTokenFile, devKeyFile} {
		path := filepath.Join(dataDir, name)
		if info, err := os.Stat(path); err == nil && info.Mode().Perm()&0o077 != 0 {
			logger.Warn("a key file may be read by others than its owner; chmod 600 it", "file", path, "mode", info.Mode().Perm().String())
		}
	}
}

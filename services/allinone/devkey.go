package allinone

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DevTenant is the tenant created when no API keys are configured.
const DevTenant = "dev"

// devKeyFile is where the development key is kept, in the data dir.
const devKeyFile = "dev-api-key"

// DevKey returns the development API key kept in dataDir, creating it on
// first use (created is then true). The file is readable by its owner only.
func DevKey(dataDir string) (key string, created bool, err error) {
	path := filepath.Join(dataDir, devKeyFile)
	data, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(data)), false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", false, fmt.Errorf("read %s: %w", path, err)
	}
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", false, fmt.Errorf("generate dev key: %w", err)
	}
	key = "hs_dev_" + base64.RawURLEncoding.EncodeToString(b[:])
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", false, fmt.Errorf("create data dir: %w", err)
	}
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		return "", false, fmt.Errorf("write %s: %w", path, err)
	}
	return key, true, nil
}

//go:build !unix

package allinone

import (
	"fmt"
	"os"
)

// LockFile is the file in the data dir that a running app holds locked,
// where the system can lock files (not here).
const LockFile = "lock"

// lockDataDir creates the data dir; off Unix it takes no lock.
func lockDataDir(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir %s: %w", dir, err)
	}
	return func() {}, nil
}

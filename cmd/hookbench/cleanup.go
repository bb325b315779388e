package main

import (
	"os"
	"sync"
)

// dataDirs are the data directories of the servers a run started. They are
// removed when hookbench exits, not after each scenario: deleting hundreds
// of megabytes on a disk mounted with discard slows the disk's syncs for a
// while, and the next scenario in durable mode would measure that.
var dataDirs struct {
	sync.Mutex
	paths []string
}

// removeLater removes dir when hookbench exits.
func removeLater(dir string) {
	dataDirs.Lock()
	defer dataDirs.Unlock()
	dataDirs.paths = append(dataDirs.paths, dir)
}

// removeDataDirs removes every directory given to removeLater.
func removeDataDirs() {
	dataDirs.Lock()
	defer dataDirs.Unlock()
	for _, dir := range dataDirs.paths {
		_ = os.RemoveAll(dir)
	}
	dataDirs.paths = nil
}

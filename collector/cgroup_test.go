package collector

import (
	"syscall"
	"testing"
)

// inode returns a path's inode number, which is what the kernel reports as the cgroup id of a cgroup v2
// directory.
func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

//go:build linux

package drops

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

// openTracer opens a tracer restricted to ns (or every namespace when ns is nil), closed when the test
// ends. A kernel or machine that cannot run it makes the test skip (fail in CI).
func openTracer(t testing.TB, ns *testenv.NetNS) *Tracer {
	t.Helper()
	testenv.RequireRoot(t)
	var opts Options
	if ns != nil {
		ino, err := NetNSInode(ns.Path)
		if err != nil {
			t.Fatal(err)
		}
		opts.NetNS = ino
	}
	tr, err := Open(opts)
	if errors.Is(err, os.ErrPermission) || errors.Is(err, os.ErrNotExist) {
		testenv.Missing(t, "cannot trace drops: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Error(err)
		}
	})
	if !tr.Attributed() {
		testenv.Missing(t, "kfree_skb has no rx_sk argument (Linux 6.11+): drops cannot be attributed")
	}
	return tr
}

// read reads a snapshot or fails the test.
func read(t testing.TB, tr *Tracer) Snapshot {
	t.Helper()
	s, err := tr.Read()
	if err != nil {
		t.Fatal(err)
	}
	if s.Lost != (Lost{}) {
		t.Errorf("events lost to full maps: %+v", s.Lost)
	}
	return s
}

// byReason sums attributed drops per reason over the drops that match keep (all when nil).
func byReason(s Snapshot, keep func(Drop) bool) map[string]uint64 {
	out := map[string]uint64{}
	for _, d := range s.Drops {
		if keep == nil || keep(d) {
			out[d.Reason] += d.Packets
		}
	}
	return out
}

// cgroupID is the cgroup v2 id of a cgroup directory: its inode number, which is what the kernel reports
// as INET_DIAG_CGROUP_ID for the cgroup's sockets.
func cgroupID(t testing.TB, dir string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// inChildCgroup runs fn with this whole process moved into a new child of its cgroup, moves it back and
// returns the child's id; the child is removed when the test ends. Sockets opened in fn (and sockets
// accepted later by listeners opened in fn) belong to the child.
func inChildCgroup(t testing.TB, fn func() error) uint64 {
	t.Helper()
	return cgroupID(t, testenv.InChildCgroup(t, testenv.Cgroup2Mount(t), fmt.Sprintf("sbtest-drops-%d", os.Getpid()), fn))
}

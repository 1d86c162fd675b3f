//go:build linux

package drops

import (
	"errors"
	"os"
	"strings"
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

// ownCgroupID returns the cgroup v2 id of this process's cgroup: the inode number of its directory under
// /sys/fs/cgroup, which is what the kernel reports as INET_DIAG_CGROUP_ID for its sockets.
func ownCgroupID(t testing.TB) uint64 {
	t.Helper()
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if path, ok := strings.CutPrefix(line, "0::"); ok {
			var st unix.Stat_t
			if err := unix.Stat("/sys/fs/cgroup"+path, &st); err != nil {
				testenv.Missing(t, "cgroup v2 not mounted at /sys/fs/cgroup: %v", err)
			}
			return st.Ino
		}
	}
	testenv.Missing(t, "no cgroup v2 entry in /proc/self/cgroup: %q", data)
	return 0
}

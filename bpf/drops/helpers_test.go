//go:build linux

package drops

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

// cgroup2Mount returns where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified
// on hybrid hosts) and this process's cgroup directory in it.
func cgroup2Mount(t testing.TB) (mount, dir string) {
	t.Helper()
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(info), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if f := strings.Fields(pre); ok && strings.HasPrefix(post, "cgroup2 ") && len(f) > 4 {
			mount = f[4]
			break
		}
	}
	if mount == "" {
		testenv.Missing(t, "no cgroup2 mount in /proc/self/mountinfo")
	}
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if path, ok := strings.CutPrefix(line, "0::"); ok {
			return mount, filepath.Join(mount, path)
		}
	}
	testenv.Missing(t, "no cgroup v2 entry in /proc/self/cgroup: %q", data)
	return "", ""
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
	_, own := cgroup2Mount(t)
	child := filepath.Join(own, fmt.Sprintf("sbtest-drops-%d", os.Getpid()))
	if err := os.Mkdir(child, 0o755); err != nil {
		testenv.Missing(t, "cannot create a cgroup: %v", err)
	}
	t.Cleanup(func() {
		if err := os.Remove(child); err != nil {
			t.Errorf("removing cgroup: %v", err)
		}
	})
	pid := []byte(fmt.Sprint(os.Getpid()))
	if err := os.WriteFile(filepath.Join(child, "cgroup.procs"), pid, 0); err != nil {
		testenv.Missing(t, "cannot move into a child cgroup: %v", err)
	}
	ferr := fn()
	if err := os.WriteFile(filepath.Join(own, "cgroup.procs"), pid, 0); err != nil {
		t.Fatalf("moving back to %s: %v", own, err)
	}
	if ferr != nil {
		t.Fatal(ferr)
	}
	return cgroupID(t, child)
}

package memcg

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tree builds a procfs and a cgroup mount in a temporary directory: proc/self/mountinfo naming the mount,
// proc/42/cgroup naming the process's cgroups, and the cgroup files given (path below the mount → content).
func tree(t *testing.T, fsType, superOpts, mountRoot, procCgroup string, files map[string]string) (procPath string) {
	t.Helper()
	root := t.TempDir()
	mnt := filepath.Join(root, "cgroup")
	procPath = filepath.Join(root, "proc")
	for _, d := range []string{mnt, filepath.Join(procPath, "self"), filepath.Join(procPath, "42")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mountinfo := "25 1 0:23 / /proc rw - proc proc rw\n" +
		"41 31 0:38 " + mountRoot + " " + mnt + " rw,relatime - " + fsType + " cgroup " + superOpts + "\n"
	write(t, filepath.Join(procPath, "self", "mountinfo"), mountinfo)
	write(t, filepath.Join(procPath, "42", "cgroup"), procCgroup)
	for p, c := range files {
		write(t, filepath.Join(mnt, p), c)
	}
	return procPath
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestV1(t *testing.T) {
	proc := tree(t, "cgroup", "rw,memory", "/", "9:name=systemd:/\n4:memory:/app/web\n0::/\n", map[string]string{
		"app/web/memory.kmem.tcp.usage_in_bytes":     "300000\n",
		"app/web/memory.kmem.tcp.limit_in_bytes":     "299008\n",
		"app/web/memory.kmem.tcp.max_usage_in_bytes": "557056\n",
		"app/web/memory.kmem.tcp.failcnt":            "0\n",
		"app/idle/memory.kmem.tcp.usage_in_bytes":    "0\n",
		"app/idle/memory.kmem.tcp.limit_in_bytes":    "9223372036854771712\n",
	})
	r, err := NewReader(proc)
	if err != nil {
		t.Fatal(err)
	}
	if r.Version() != V1 {
		t.Fatalf("version %d, want 1", r.Version())
	}
	path, err := r.CgroupOf(42)
	if err != nil || path != "/app/web" {
		t.Fatalf("CgroupOf(42) = %q, %v; want /app/web", path, err)
	}
	s, err := r.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{Version: V1, TCPAccounted: true, TCPUsage: Value{300000, true}, TCPLimit: Value{299008, true},
		TCPMaxUsage: Value{557056, true}, TCPFailcnt: Value{0, true}}
	if s != want {
		t.Fatalf("Read = %+v\nwant %+v", s, want)
	}
	// No limit written: TCP memory is not accounted, and the maximum is no limit.
	s, err = r.Read("/app/idle")
	if err != nil {
		t.Fatal(err)
	}
	if s.TCPAccounted || s.TCPLimit.OK || !s.TCPUsage.OK || s.TCPMaxUsage.OK {
		t.Fatalf("unlimited cgroup: %+v; want not accounted, no limit, usage 0, no max usage file", s)
	}
}

func TestV2(t *testing.T) {
	proc := tree(t, "cgroup2", "rw", "/", "0::/kubepods/pod1\n", map[string]string{
		"cgroup.controllers":                "cpuset cpu io memory pids\n",
		"kubepods/pod1/memory.current":      "1048576\n",
		"kubepods/pod1/memory.max":          "max\n",
		"kubepods/pod1/memory.stat":         "anon 4096\nfile 0\nsock 65536\nshmem 0\n",
		"kubepods/pod1/memory.events":       "low 0\nhigh 2\nmax 7\noom 0\noom_kill 0\n",
		"kubepods/limited/memory.current":   "10\n",
		"kubepods/limited/memory.max":       "2097152\n",
		"kubepods/malformed/memory.current": "ten\n",
	})
	r, err := NewReader(proc)
	if err != nil {
		t.Fatal(err)
	}
	if r.Version() != V2 {
		t.Fatalf("version %d, want 2", r.Version())
	}
	path, err := r.CgroupOf(42)
	if err != nil || path != "/kubepods/pod1" {
		t.Fatalf("CgroupOf(42) = %q, %v", path, err)
	}
	s, err := r.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{Version: V2, Current: Value{1048576, true}, Sock: Value{65536, true},
		EventsMax: Value{7, true}, EventsHigh: Value{2, true}, EventsOOM: Value{0, true}}
	if s != want {
		t.Fatalf("Read = %+v\nwant %+v", s, want)
	}
	// A missing memory.stat or memory.events leaves its fields absent.
	if s, err := r.Read("/kubepods/limited"); err != nil || s.Max != (Value{2097152, true}) || s.Sock.OK || s.EventsMax.OK {
		t.Fatalf("limited: %+v, %v", s, err)
	}
	if _, err := r.Read("/kubepods/malformed"); err == nil || !strings.Contains(err.Error(), "memory.current") {
		t.Fatalf("malformed memory.current: err %v, want one naming the file", err)
	}
}

// A unified hierarchy without the memory controller (this project's hybrid test hosts) has no memory cgroup.
func TestV2WithoutMemoryController(t *testing.T) {
	proc := tree(t, "cgroup2", "rw", "/", "0::/\n", map[string]string{"cgroup.controllers": "hugetlb\n"})
	if _, err := NewReader(proc); !errors.Is(err, ErrNoMemoryCgroup) {
		t.Fatalf("NewReader: %v, want ErrNoMemoryCgroup", err)
	}
}

// Paths that leave the mount, or a sub-tree mount they are not in, are refused rather than read.
func TestHostilePaths(t *testing.T) {
	proc := tree(t, "cgroup2", "rw", "/kubepods", "0::/kubepods/../../etc\n", map[string]string{
		"cgroup.controllers":  "memory\n",
		"pod1/memory.current": "1\n",
	})
	r, err := NewReader(proc)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := r.Read("/kubepods/pod1"); err != nil || s.Current != (Value{1, true}) {
		t.Fatalf("a cgroup inside the mounted sub-tree: %+v, %v", s, err)
	}
	for _, p := range []string{"/kubepods/../../etc", "/other/pod", "kubepods/pod1", "/kubepods/./pod1"} {
		if _, err := r.Read(p); err == nil {
			t.Errorf("Read(%q) succeeded; want it refused", p)
		}
	}
	path, err := r.CgroupOf(42)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(path); err == nil {
		t.Errorf("Read(%q) from /proc/42/cgroup succeeded; want it refused", path)
	}
	if _, err := r.CgroupOf(43); err == nil {
		t.Error("CgroupOf of a process that does not exist succeeded")
	}
}

// A FIFO where a cgroup file should be is refused at once, not read until it blocks the reader forever.
func TestFIFOIsRefused(t *testing.T) {
	proc := tree(t, "cgroup", "rw,memory", "/", "4:memory:/x\n", map[string]string{"x/memory.kmem.tcp.failcnt": "0\n"})
	mnt := filepath.Join(filepath.Dir(proc), "cgroup")
	if err := syscall.Mkfifo(filepath.Join(mnt, "x", "memory.kmem.tcp.usage_in_bytes"), 0o644); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	r, err := NewReader(proc)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := r.Read("/x"); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("Read with a FIFO: %v; want 'not a regular file'", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read blocked on a FIFO")
	}
}

// Open with a root (a pod's /host/sys/fs/cgroup) reads the hierarchy there rather than the mounts listed in
// mountinfo, for v2 and for a v1 memory hierarchy below it; a root without memory falls back to mountinfo.
func TestOpenAtRoot(t *testing.T) {
	proc := tree(t, "cgroup2", "rw", "/", "0::/\n", map[string]string{"cgroup.controllers": "hugetlb\n"})
	v2 := t.TempDir()
	write(t, filepath.Join(v2, "cgroup.controllers"), "cpu memory pids\n")
	write(t, filepath.Join(v2, "kubepods/memory.current"), "7\n")
	r, err := Open(proc, v2)
	if err != nil || r.Version() != V2 {
		t.Fatalf("Open at a v2 root: %v, %v", r, err)
	}
	if s, err := r.Read("/kubepods"); err != nil || s.Current != (Value{7, true}) {
		t.Fatalf("Read at a v2 root: %+v, %v", s, err)
	}
	v1 := t.TempDir()
	write(t, filepath.Join(v1, "memory", "memory.limit_in_bytes"), "9223372036854771712\n")
	if r, err := Open(proc, v1); err != nil || r.Version() != V1 || r.root != filepath.Join(v1, "memory") {
		t.Fatalf("Open at a v1 root: %+v, %v", r, err)
	}
	// Neither: mountinfo's unified hierarchy has no memory controller either.
	if _, err := Open(proc, t.TempDir()); !errors.Is(err, ErrNoMemoryCgroup) {
		t.Fatalf("Open at an empty root: %v, want ErrNoMemoryCgroup", err)
	}
}

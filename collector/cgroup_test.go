package collector

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
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

func TestFindCgroup2Mount(t *testing.T) {
	for _, tc := range []struct{ fixture, want string }{
		{"mountinfo-hybrid", "/sys/fs/cgroup/unified"},
		{"mountinfo-unified", "/sys/fs/cgroup"},
		{"mountinfo-v1", ""},
		{"mountinfo-escaped", "/mnt/my cgroups"},
	} {
		proc := t.TempDir()
		if err := os.MkdirAll(filepath.Join(proc, "self"), 0o755); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join("testdata", "cgroup", tc.fixture))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(proc, "self", "mountinfo"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := findCgroup2Mount(proc)
		if err != nil || got != tc.want {
			t.Errorf("%s: findCgroup2Mount = %q, %v; want %q", tc.fixture, got, err, tc.want)
		}
	}
	if _, err := findCgroup2Mount(t.TempDir()); err == nil {
		t.Error("findCgroup2Mount without mountinfo: no error")
	}
}

func TestCgroupResolver(t *testing.T) {
	root := t.TempDir()
	mk := func(rel string) uint64 {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		return inode(t, p)
	}
	nginx := mk("system.slice/nginx.service")
	slice := mk("system.slice")
	if err := os.WriteFile(filepath.Join(root, "system.slice", "cgroup.procs"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	r := newCgroupResolver(root)
	r.now = func() time.Time { return now }
	for id, want := range map[uint64]string{nginx: "nginx.service", slice: "system.slice", inode(t, root): "/"} {
		if got := r.name(id); got != want {
			t.Errorf("name(%d) = %q, want %q", id, got, want)
		}
	}

	// A cgroup created after the walk is found on a miss, but not more often than the interval allows.
	late := mk("system.slice/late.service")
	now = now.Add(time.Second)
	if got := r.name(late); got != "" {
		t.Errorf("new cgroup within the interval = %q, want \"\" (rate limited)", got)
	}
	now = now.Add(cgroupRefreshInterval)
	if got := r.name(late); got != "late.service" {
		t.Errorf("new cgroup after the interval: %q", got)
	}
	later := mk("later.scope")
	now = now.Add(time.Second)
	if got := r.name(later); got != "" {
		t.Errorf("new cgroup within the interval = %q, want \"\" (rate limited)", got)
	}
	now = now.Add(cgroupRefreshInterval)
	if got := r.name(later); got != "later.scope" {
		t.Errorf("new cgroup after the interval = %q, want later.scope", got)
	}

	// A removed cgroup is forgotten at the next walk, so the cache does not grow without bound.
	if err := os.Remove(filepath.Join(root, "system.slice", "late.service")); err != nil {
		t.Fatal(err)
	}
	if err := r.walk(); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.names[late]; ok {
		t.Error("removed cgroup still cached after a walk")
	}

	// A hierarchy that vanished leaves every label empty but does not fail.
	gone := newCgroupResolver(filepath.Join(root, "missing"))
	if got := gone.name(nginx); got != "" {
		t.Errorf("missing hierarchy: name = %q", got)
	}
}

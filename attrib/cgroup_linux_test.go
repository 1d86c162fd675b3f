package attrib

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
		got, err := FindCgroup2Mount(proc)
		if err != nil || got != tc.want {
			t.Errorf("%s: FindCgroup2Mount = %q, %v; want %q", tc.fixture, got, err, tc.want)
		}
	}
	if _, err := FindCgroup2Mount(t.TempDir()); err == nil {
		t.Error("FindCgroup2Mount without mountinfo: no error")
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
	r := NewCgroupResolver(root, CgroupLeaf)
	r.now = func() time.Time { return now }
	for id, want := range map[uint64]string{nginx: "nginx.service", slice: "system.slice", inode(t, root): "/"} {
		if got := r.Name(id); got != want {
			t.Errorf("name(%d) = %q, want %q", id, got, want)
		}
	}

	// A cgroup created after the walk is found on a miss, but not more often than the interval allows.
	late := mk("system.slice/late.service")
	now = now.Add(time.Second)
	if got := r.Name(late); got != "" {
		t.Errorf("new cgroup within the interval = %q, want \"\" (rate limited)", got)
	}
	now = now.Add(CgroupRefreshInterval)
	if got := r.Name(late); got != "late.service" {
		t.Errorf("new cgroup after the interval: %q", got)
	}
	later := mk("later.scope")
	now = now.Add(time.Second)
	if got := r.Name(later); got != "" {
		t.Errorf("new cgroup within the interval = %q, want \"\" (rate limited)", got)
	}
	now = now.Add(CgroupRefreshInterval)
	if got := r.Name(later); got != "later.scope" {
		t.Errorf("new cgroup after the interval = %q, want later.scope", got)
	}

	// A removed cgroup is forgotten at the next walk, so the cache does not grow without bound.
	if err := os.Remove(filepath.Join(root, "system.slice", "late.service")); err != nil {
		t.Fatal(err)
	}
	if err := r.Walk(); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.names[late]; ok {
		t.Error("removed cgroup still cached after a walk")
	}

	// A hierarchy that vanished leaves every label empty but does not fail.
	gone := NewCgroupResolver(filepath.Join(root, "missing"), CgroupLeaf)
	if got := gone.Name(nginx); got != "" {
		t.Errorf("missing hierarchy: name = %q", got)
	}
}

// TestCgroupResolverNegativeCache checks that an id no walk finds (a cgroup outside the exporter's cgroup
// namespace) does not cost a walk every interval, that a walk for another id clears it when found, and that
// the cache is bounded.
func TestCgroupResolverNegativeCache(t *testing.T) {
	root := t.TempDir()
	now := time.Unix(1000, 0)
	r := NewCgroupResolver(root, CgroupStable)
	r.now = func() time.Time { return now }
	const unknown = 999999999
	if got := r.Name(unknown); got != "" {
		t.Fatalf("unknown id = %q", got)
	}
	if r.Walks() != 1 {
		t.Fatalf("%d walks after the first lookup, want 1", r.Walks())
	}
	for range 10 {
		now = now.Add(CgroupRefreshInterval)
		r.Name(unknown)
	}
	if r.Walks() != 1 {
		t.Errorf("%d walks for one unknown id over %v, want 1 (negative cache)", r.Walks(), 10*CgroupRefreshInterval)
	}
	now = now.Add(CgroupNegativeTTL)
	r.Name(unknown)
	if r.Walks() != 2 {
		t.Errorf("%d walks after the negative TTL, want 2", r.Walks())
	}

	// A cgroup created after it was missed is found by a walk that another new id triggers.
	p := filepath.Join(root, "late.service")
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
	late := inode(t, p)
	r.misses[late] = now
	now = now.Add(CgroupRefreshInterval)
	if r.Name(unknown+1) != "" || r.Name(late) != "late.service" {
		t.Errorf("missed cgroup not found after a later walk: %q", r.Name(late))
	}

	for id := range uint64(2 * maxCgroupMisses) {
		now = now.Add(CgroupRefreshInterval)
		r.Name(1<<40 + id)
	}
	if len(r.misses) > maxCgroupMisses {
		t.Errorf("negative cache holds %d ids, bound %d", len(r.misses), maxCgroupMisses)
	}
}

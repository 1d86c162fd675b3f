package memcg

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// walkAll walks with the given bound and returns the yielded paths and their stats.
func walkAll(t *testing.T, r *Reader, maxVisit int) ([]string, map[string]Stats, WalkResult) {
	t.Helper()
	var paths []string
	stats := map[string]Stats{}
	res, err := r.Walk(context.Background(), maxVisit, func(p string, s Stats) error {
		paths = append(paths, p)
		stats[p] = s
		return nil
	})
	if err != nil {
		t.Fatalf("Walk: %v", err)
	}
	return paths, stats, res
}

func v1Files(dir string, usage, limit, maxUsage string) map[string]string {
	return map[string]string{
		dir + "/memory.kmem.tcp.usage_in_bytes":     usage + "\n",
		dir + "/memory.kmem.tcp.limit_in_bytes":     limit + "\n",
		dir + "/memory.kmem.tcp.max_usage_in_bytes": maxUsage + "\n",
		dir + "/memory.kmem.tcp.failcnt":            "0\n",
	}
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

const unlimited = "9223372036854771712"

// On v1 only the cgroups with TCP accounting on are yielded, breadth first in name order, with their paths
// as /proc/<pid>/cgroup names them.
func TestWalkV1(t *testing.T) {
	proc := tree(t, "cgroup", "rw,memory", "/", "4:memory:/\n", merge(
		v1Files(".", "0", unlimited, "0"),
		v1Files("system.slice", "4096", unlimited, "4096"),
		v1Files("system.slice/nginx.service", "8192", "299008", "557056"),
		v1Files("docker", "0", unlimited, "0"),
		v1Files("docker/abc", "65536", "1048576", "65536"),
		v1Files("docker/abc/deep", "0", "4096", "0"),
		map[string]string{"empty/.keep": ""}, // a cgroup directory whose files are missing: not accounted
	))
	r, err := NewReader(proc)
	if err != nil {
		t.Fatal(err)
	}
	paths, stats, res := walkAll(t, r, 100)
	if diff := cmp.Diff([]string{"/docker/abc", "/system.slice/nginx.service", "/docker/abc/deep"}, paths); diff != "" {
		t.Errorf("yielded paths (-want +got):\n%s", diff)
	}
	if s := stats["/system.slice/nginx.service"]; s.TCPUsage.V != 8192 || s.TCPLimit.V != 299008 || s.TCPMaxUsage.V != 557056 {
		t.Errorf("nginx.service stats: %+v", s)
	}
	if res.Visited != 7 || res.Truncated || res.Unreadable != 0 {
		t.Errorf("result %+v; want 7 visited, not truncated, none unreadable", res)
	}
}

// On v2 only the cgroups with a memory.max are yielded; a mount of a sub-tree yields paths below its root.
func TestWalkV2SubtreeMount(t *testing.T) {
	proc := tree(t, "cgroup2", "rw", "/kubepods", "0::/kubepods/pod1\n", map[string]string{
		"cgroup.controllers":          "memory\n",
		"pod1/memory.current":         "1048576\n",
		"pod1/memory.max":             "2097152\n",
		"pod1/memory.stat":            "anon 4096\nsock 65536\n",
		"pod1/memory.events":          "low 0\nhigh 0\nmax 3\noom 0\noom_kill 0\n",
		"pod1/ctr/memory.current":     "10\n",
		"pod1/ctr/memory.max":         "max\n",
		"pod1/ctr/memory.stat":        "sock 65536\n",
		"besteffort/memory.current":   "10\n",
		"besteffort/memory.max":       "max\n",
		"besteffort/pod2/memory.max":  "1000000\n",
		"besteffort/pod2/memory.stat": "sock 0\n",
		"besteffort/pod3/memory.max":  "bogus\n", // unreadable: skipped and counted
		"besteffort/pod3/memory.stat": "sock 0\n",
	})
	r, err := NewReader(proc)
	if err != nil {
		t.Fatal(err)
	}
	paths, stats, res := walkAll(t, r, 100)
	if diff := cmp.Diff([]string{"/kubepods/pod1", "/kubepods/besteffort/pod2"}, paths); diff != "" {
		t.Errorf("yielded paths (-want +got):\n%s", diff)
	}
	want := Stats{Version: V2, Current: Value{1048576, true}, Max: Value{2097152, true}, Sock: Value{65536, true},
		EventsMax: Value{3, true}, EventsHigh: Value{0, true}, EventsOOM: Value{0, true}}
	if diff := cmp.Diff(want, stats["/kubepods/pod1"]); diff != "" {
		t.Errorf("pod1 (-want +got):\n%s", diff)
	}
	if res.Unreadable != 1 || res.Truncated {
		t.Errorf("result %+v; want the malformed pod3 counted as unreadable", res)
	}
}

// The bound on visited cgroups stops the walk and says so; the depth bound stops descent.
func TestWalkBounds(t *testing.T) {
	files := map[string]string{}
	for i := range 20 {
		for k, v := range v1Files(fmt.Sprintf("c%02d", i), "0", "4096", "0") {
			files[k] = v
		}
	}
	deep := ""
	for range MaxDepth + 3 {
		deep = filepath.Join(deep, "d")
	}
	for k, v := range v1Files(deep, "0", "4096", "0") {
		files[k] = v
	}
	proc := tree(t, "cgroup", "rw,memory", "/", "4:memory:/\n", files)
	r, err := NewReader(proc)
	if err != nil {
		t.Fatal(err)
	}
	paths, _, res := walkAll(t, r, 6)
	if len(paths) != 5 || res.Visited != 6 || !res.Truncated {
		t.Errorf("maxVisit 6: yielded %v, result %+v; want the root and c00..c04 visited, truncated", paths, res)
	}
	paths, _, res = walkAll(t, r, 1000)
	for _, p := range paths {
		if strings.Count(p, "/") > MaxDepth {
			t.Errorf("yielded %s, deeper than MaxDepth %d", p, MaxDepth)
		}
	}
	if len(paths) != 20 || !res.Truncated {
		t.Errorf("deep tree: yielded %d cgroups, result %+v; want the 20 shallow ones and truncated", len(paths), res)
	}
}

// Symbolic links are not followed: a link to a directory with accounted cgroups (or to itself, which would
// loop) yields nothing.
func TestWalkSkipsSymlinks(t *testing.T) {
	proc := tree(t, "cgroup", "rw,memory", "/", "4:memory:/\n", merge(
		v1Files("real", "0", "4096", "0"),
	))
	mnt := filepath.Join(filepath.Dir(proc), "cgroup")
	if err := os.Symlink(filepath.Join(mnt, "real"), filepath.Join(mnt, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(mnt, filepath.Join(mnt, "real", "loop")); err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(proc)
	if err != nil {
		t.Fatal(err)
	}
	paths, _, res := walkAll(t, r, 100)
	if diff := cmp.Diff([]string{"/real"}, paths); diff != "" || res.Visited != 2 {
		t.Errorf("yielded (-want +got):\n%s\nresult %+v", diff, res)
	}
}

// An unreadable directory is skipped and counted (as root, make it unreadable by removing it mid-walk is
// racy; a directory whose files fail to parse stands for it), and an error from fn stops the walk.
func TestWalkErrors(t *testing.T) {
	proc := tree(t, "cgroup", "rw,memory", "/", "4:memory:/\n", merge(
		v1Files("a", "0", "4096", "0"),
		v1Files("b", "x", "4096", "0"),
		v1Files("c", "0", "4096", "0"),
	))
	r, err := NewReader(proc)
	if err != nil {
		t.Fatal(err)
	}
	paths, _, res := walkAll(t, r, 100)
	if diff := cmp.Diff([]string{"/a", "/c"}, paths); diff != "" || res.Unreadable != 1 {
		t.Errorf("yielded (-want +got):\n%s\nresult %+v", diff, res)
	}
	stop := errors.New("stop")
	n := 0
	if _, err := r.Walk(context.Background(), 100, func(string, Stats) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Errorf("fn error: Walk returned %v after %d calls; want stop after 1", err, n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Walk(ctx, 100, func(string, Stats) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
}

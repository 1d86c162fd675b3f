package collector

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// memcgTree writes a procfs whose self/mountinfo mounts a cgroup hierarchy (fsType "cgroup" with the memory
// option, or "cgroup2") at <dir>/cgroup, and the cgroup files given (path below the mount -> content). It
// returns the proc path and the mount.
func memcgTree(t *testing.T, fsType string, files map[string]string) (proc, mnt string) {
	t.Helper()
	dir := t.TempDir()
	proc, mnt = filepath.Join(dir, "proc"), filepath.Join(dir, "cgroup")
	opts := "rw,memory"
	if fsType == "cgroup2" {
		opts = "rw"
	}
	writeTree(t, dir, map[string]string{
		"proc/self/mountinfo": "25 1 0:23 / /proc rw - proc proc rw\n" +
			"41 31 0:38 / " + mnt + " rw,relatime - " + fsType + " cgroup " + opts + "\n",
	})
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	writeTree(t, mnt, files)
	return proc, mnt
}

func memcgV1(dir, usage, limit, maxUsage string) map[string]string {
	return map[string]string{
		dir + "/memory.kmem.tcp.usage_in_bytes":     usage + "\n",
		dir + "/memory.kmem.tcp.limit_in_bytes":     limit + "\n",
		dir + "/memory.kmem.tcp.max_usage_in_bytes": maxUsage + "\n",
		dir + "/memory.kmem.tcp.failcnt":            "0\n",
	}
}

func union(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

func newTestMemcg(t *testing.T, proc string, maxCgroups int) (*memcgCollector, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	c, err := factories["memcg"].build(Config{ProcPath: proc, Memcg: MemcgConfig{MaxCgroups: maxCgroups}},
		slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return c.(*memcgCollector), &logs
}

func TestMemcgCollectorV1(t *testing.T) {
	proc, _ := memcgTree(t, "cgroup", union(
		memcgV1(".", "0", "9223372036854771712", "0"),
		memcgV1("app", "4096", "9223372036854771712", "4096"), // TCP accounting off: absent
		memcgV1("app/web", "0", "299008", "557056"),
		memcgV1("app/db", "131072", "1048576", "262144"),
	))
	c, _ := newTestMemcg(t, proc, 10)
	want := `
sockbuf_memcg_cgroups_skipped{reason="max_cgroups"} 0
sockbuf_memcg_cgroups_skipped{reason="unreadable"} 0
sockbuf_memcg_tcp_memory_bytes{cgroup="/app/db"} 131072
sockbuf_memcg_tcp_memory_bytes{cgroup="/app/web"} 0
sockbuf_memcg_tcp_memory_limit_bytes{cgroup="/app/db"} 1.048576e+06
sockbuf_memcg_tcp_memory_limit_bytes{cgroup="/app/web"} 299008
sockbuf_memcg_tcp_memory_max_usage_bytes{cgroup="/app/db"} 262144
sockbuf_memcg_tcp_memory_max_usage_bytes{cgroup="/app/web"} 557056
sockbuf_memcg_walk_truncated 0
`
	if err := testutil.CollectAndCompare(asPromCollector(c), strings.NewReader(withHeaders(t, want))); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.CollectAndLint(asPromCollector(c)); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}

	// The cap keeps the cgroup closest to its limit (web's peak is 1.86 times its limit; db is at 25%).
	capped, _ := newTestMemcg(t, proc, 1)
	if err := testutil.CollectAndCompare(asPromCollector(capped), strings.NewReader(withHeaders(t, `
sockbuf_memcg_cgroups_skipped{reason="max_cgroups"} 1
sockbuf_memcg_cgroups_skipped{reason="unreadable"} 0
sockbuf_memcg_tcp_memory_limit_bytes{cgroup="/app/web"} 299008
`)), "sockbuf_memcg_cgroups_skipped", "sockbuf_memcg_tcp_memory_limit_bytes"); err != nil {
		t.Error(err)
	}
}

func TestMemcgCollectorV2(t *testing.T) {
	proc, _ := memcgTree(t, "cgroup2", map[string]string{
		"cgroup.controllers":                       "cpu memory pids\n",
		"kubepods.slice/memory.current":            "8388608\n",
		"kubepods.slice/memory.max":                "max\n",
		"kubepods.slice/pod1.slice/memory.current": "1048576\n",
		"kubepods.slice/pod1.slice/memory.max":     "2097152\n",
		"kubepods.slice/pod1.slice/memory.stat":    "anon 4096\nsock 65536\n",
		"kubepods.slice/pod1.slice/memory.events":  "low 0\nhigh 0\nmax 7\noom 0\noom_kill 0\n",
		// An old kernel without memory.events: the counter is absent, not 0.
		"system.slice/memory.current": "100\n",
		"system.slice/memory.max":     "4096\n",
		"system.slice/memory.stat":    "sock 0\n",
		"broken/memory.current":       "1\n",
		"broken/memory.max":           "-1\n",
	})
	c, _ := newTestMemcg(t, proc, 10)
	want := `
sockbuf_memcg_cgroups_skipped{reason="max_cgroups"} 0
sockbuf_memcg_cgroups_skipped{reason="unreadable"} 1
sockbuf_memcg_memory_bytes{cgroup="/kubepods.slice/pod1.slice"} 1.048576e+06
sockbuf_memcg_memory_bytes{cgroup="/system.slice"} 100
sockbuf_memcg_memory_limit_bytes{cgroup="/kubepods.slice/pod1.slice"} 2.097152e+06
sockbuf_memcg_memory_limit_bytes{cgroup="/system.slice"} 4096
sockbuf_memcg_memory_max_events_total{cgroup="/kubepods.slice/pod1.slice"} 7
sockbuf_memcg_socket_memory_bytes{cgroup="/kubepods.slice/pod1.slice"} 65536
sockbuf_memcg_socket_memory_bytes{cgroup="/system.slice"} 0
sockbuf_memcg_walk_truncated 0
`
	if err := testutil.CollectAndCompare(asPromCollector(c), strings.NewReader(withHeaders(t, want))); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.CollectAndLint(asPromCollector(c)); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

// Without a memory hierarchy the collector succeeds with nothing, says why once, and finds a hierarchy
// mounted later.
func TestMemcgCollectorNoHierarchy(t *testing.T) {
	proc, _ := memcgTree(t, "cgroup2", map[string]string{"cgroup.controllers": "hugetlb\n"})
	c, logs := newTestMemcg(t, proc, 10)
	for range 3 {
		if n := testutil.CollectAndCount(asPromCollector(c)); n != 0 {
			t.Errorf("%d series without a memory hierarchy; want none", n)
		}
	}
	if n := strings.Count(logs.String(), "exports nothing until one is mounted"); n != 1 {
		t.Errorf("logged %d times; want once:\n%s", n, logs)
	}
	e := NewExporter(map[string]Collector{"memcg": c}, 0, nil)
	if err := testutil.CollectAndCompare(e, strings.NewReader(withHeaders(t, `
sockbuf_scrape_collector_success{collector="memcg"} 1
`)), "sockbuf_scrape_collector_success"); err != nil {
		t.Error(err)
	}
	// The memory controller appears (a remount, a late container mount): the next scrape reads it.
	writeTree(t, filepath.Join(filepath.Dir(proc), "cgroup"), map[string]string{
		"cgroup.controllers": "hugetlb memory\n",
		"a/memory.max":       "4096\n",
		"a/memory.current":   "0\n",
	})
	if n := testutil.CollectAndCount(asPromCollector(c), "sockbuf_memcg_memory_limit_bytes"); n != 1 {
		t.Errorf("after the memory controller appeared: %d limit series, want 1", n)
	}
}

func TestMemcgConfig(t *testing.T) {
	if err := (MemcgConfig{MaxCgroups: 0}).Validate(); err == nil || !strings.Contains(err.Error(), "--collector.memcg.max-cgroups") {
		t.Errorf("MaxCgroups 0: %v", err)
	}
	if _, err := New(Config{}, []string{"memcg"}, nil); err == nil {
		t.Error("New with a zero MemcgConfig succeeded")
	}
	if err := (MemcgConfig{MaxCgroups: DefaultMemcgMaxCgroups}).Validate(); err != nil {
		t.Error(err)
	}
}

// A scrape whose context has ended fails rather than serving half a walk.
func TestMemcgCollectorContext(t *testing.T) {
	proc, _ := memcgTree(t, "cgroup", memcgV1("a", "0", "4096", "0"))
	c, _ := newTestMemcg(t, proc, 10)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ch := make(chan prometheus.Metric, 100)
	if err := c.Update(ctx, ch); err == nil {
		t.Error("Update with an ended context succeeded")
	}
}

// BenchmarkMemcgCollector scrapes a v2 hierarchy of 1000 cgroups (Kubernetes-like: 250 pods of 4 cgroups, the
// pod's limited, its containers' not), files on tmpfs or disk rather than cgroupfs, for the cost of the walk
// and the parsing.
func BenchmarkMemcgCollector(b *testing.B) {
	files := map[string]string{"cgroup.controllers": "cpu memory pids\n"}
	for p := range 250 {
		for _, c := range []string{"", "/c1", "/c2", "/c3"} {
			d := "kubepods.slice/pod" + strconv.Itoa(p) + c
			files[d+"/memory.current"] = "1048576\n"
			files[d+"/memory.max"] = "max\n"
			if c == "" {
				files[d+"/memory.max"] = "2097152\n"
			}
			files[d+"/memory.stat"] = strings.Repeat("anon 4096\nfile 8192\n", 20) + "sock 65536\n"
			files[d+"/memory.events"] = "low 0\nhigh 0\nmax 7\noom 0\noom_kill 0\n"
		}
	}
	dir := b.TempDir()
	proc, mnt := filepath.Join(dir, "proc"), filepath.Join(dir, "cgroup")
	for name, content := range union(files) {
		p := filepath.Join(mnt, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(proc, "self"), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(proc, "self", "mountinfo"),
		[]byte("41 31 0:38 / "+mnt+" rw,relatime - cgroup2 cgroup rw\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	c := newMemcgCollector(Config{ProcPath: proc, Memcg: MemcgConfig{MaxCgroups: 100}}, nil)
	ch := make(chan prometheus.Metric, 1024)
	go func() {
		for range ch {
		}
	}()
	defer close(ch)
	b.ResetTimer()
	for range b.N {
		if err := c.Update(context.Background(), ch); err != nil {
			b.Fatal(err)
		}
	}
}

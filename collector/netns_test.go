package collector

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"

	"github.com/sockbuf/sockbuf_exporter/netns"
)

// The fixture testdata/netns/proc holds links "net:[INODE]" where /proc has namespace links, and
// testdata/netns/run-netns links where /run/netns has namespace bind mounts:
//
//	pid 100 (self) and 1: the exporter's namespace 4026531840
//	pids 200, 201: 4026532100, a Kubernetes pod (systemd driver), also pinned as run-netns/cni-<uuid>
//	pid 300: 4026532200, run-netns/blue, an older kernel without TCPRcvQDrop
//	pid 400: 4026532300, a Docker container
//	pid 500: 4026532400, in the root cgroup: no name
//	pid 600: 4026532500, a Kubernetes pod (cgroupfs driver)
//	pid 700: gone (no ns/net)

// fixtureNamedInode reads a fixture's stand-in for a namespace bind mount; the fixture's self/ns/net, a link
// to "net:[...]", cannot be stat'ed, so nsfs is nil.
func fixtureNamedInode(path string, nsfs *unix.Stat_t) (uint64, bool) {
	l, err := os.Readlink(path)
	if err != nil {
		return 0, false
	}
	return netns.ParseLink(l)
}

// newFixtureNetns builds a collector on a fixture; max 0 stands for the flag's default, 100.
func newFixtureNetns(t testing.TB, proc, named string, max int) *netnsCollector {
	t.Helper()
	if max == 0 {
		max = 100
	}
	c := newNetnsCollector(Config{ProcPath: proc, Netns: NetnsConfig{MaxNamespaces: max, NamedDir: named}})
	c.ns.NamedInode = fixtureNamedInode
	return c
}

var netnsMetricNames = func() []string {
	var names []string
	for _, f := range netnsFields {
		names = append(names, f.spec.FullName())
	}
	return append(names, netnsNamespacesSpec.FullName(), netnsSkippedSpec.FullName(), netnsReadErrorsSpec.FullName())
}()

// The labels of the fixture's namespaces.
const (
	pod       = `netns="kubepods-burstable-pod0a1b_2c3d.slice",netns_inode="4026532100"`
	blue      = `netns="blue",netns_inode="4026532200"`
	docker    = `netns="docker-abc123.scope",netns_inode="4026532300"`
	anonymous = `netns="netns-4026532400",netns_inode="4026532400"`
	cgroupfs  = `netns="pod1234-5678",netns_inode="4026532500"`
)

func TestNetnsCollector(t *testing.T) {
	all := `
sockbuf_netns_tcp_prune_called_total{` + pod + `} 50
sockbuf_netns_tcp_prune_called_total{` + blue + `} 7
sockbuf_netns_tcp_prune_called_total{` + docker + `} 50
sockbuf_netns_tcp_prune_called_total{` + anonymous + `} 0
sockbuf_netns_tcp_prune_called_total{` + cgroupfs + `} 1
sockbuf_netns_tcp_rcv_pruned_total{` + pod + `} 5
sockbuf_netns_tcp_rcv_pruned_total{` + blue + `} 0
sockbuf_netns_tcp_rcv_pruned_total{` + docker + `} 0
sockbuf_netns_tcp_rcv_pruned_total{` + anonymous + `} 0
sockbuf_netns_tcp_rcv_pruned_total{` + cgroupfs + `} 0
sockbuf_netns_tcp_ofo_pruned_total{` + pod + `} 1
sockbuf_netns_tcp_ofo_pruned_total{` + blue + `} 0
sockbuf_netns_tcp_ofo_pruned_total{` + docker + `} 0
sockbuf_netns_tcp_ofo_pruned_total{` + anonymous + `} 0
sockbuf_netns_tcp_ofo_pruned_total{` + cgroupfs + `} 0
sockbuf_netns_tcp_rcv_collapsed_total{` + pod + `} 400
sockbuf_netns_tcp_rcv_collapsed_total{` + blue + `} 30
sockbuf_netns_tcp_rcv_collapsed_total{` + docker + `} 0
sockbuf_netns_tcp_rcv_collapsed_total{` + anonymous + `} 0
sockbuf_netns_tcp_rcv_collapsed_total{` + cgroupfs + `} 2
sockbuf_netns_tcp_rcvq_drop_total{` + pod + `} 3
sockbuf_netns_tcp_rcvq_drop_total{` + docker + `} 0
sockbuf_netns_tcp_rcvq_drop_total{` + anonymous + `} 0
sockbuf_netns_tcp_rcvq_drop_total{` + cgroupfs + `} 0
sockbuf_netns_tcp_backlog_drop_total{` + pod + `} 0
sockbuf_netns_tcp_backlog_drop_total{` + blue + `} 1
sockbuf_netns_tcp_backlog_drop_total{` + docker + `} 0
sockbuf_netns_tcp_backlog_drop_total{` + anonymous + `} 0
sockbuf_netns_tcp_backlog_drop_total{` + cgroupfs + `} 0
sockbuf_netns_tcp_listen_overflows_total{` + pod + `} 2
sockbuf_netns_tcp_listen_overflows_total{` + blue + `} 0
sockbuf_netns_tcp_listen_overflows_total{` + docker + `} 0
sockbuf_netns_tcp_listen_overflows_total{` + anonymous + `} 0
sockbuf_netns_tcp_listen_overflows_total{` + cgroupfs + `} 0
sockbuf_netns_tcp_in_segments_total{` + pod + `} 10000
sockbuf_netns_tcp_in_segments_total{` + blue + `} 500
sockbuf_netns_tcp_in_segments_total{` + docker + `} 20
sockbuf_netns_tcp_in_segments_total{` + anonymous + `} 3
sockbuf_netns_tcp_in_segments_total{` + cgroupfs + `} 40
sockbuf_netns_tcp_memory_pressures_total{` + pod + `} 4
sockbuf_netns_tcp_memory_pressures_total{` + blue + `} 2
sockbuf_netns_tcp_memory_pressures_total{` + docker + `} 0
sockbuf_netns_tcp_memory_pressures_total{` + anonymous + `} 0
sockbuf_netns_tcp_memory_pressures_total{` + cgroupfs + `} 1
sockbuf_netns_tcp_memory_pressure_seconds_total{` + pod + `} 2.5
sockbuf_netns_tcp_memory_pressure_seconds_total{` + docker + `} 0
sockbuf_netns_tcp_memory_pressure_seconds_total{` + anonymous + `} 0
sockbuf_netns_tcp_memory_pressure_seconds_total{` + cgroupfs + `} 0.12
sockbuf_netns_namespaces 5
sockbuf_netns_namespaces_skipped 0
sockbuf_netns_read_errors_total 0
`
	// Capped at 2, ranked by harm: the pod lost data; then blue, which collapsed (30) although docker
	// called prune more (50 against 7): PruneCalled alone is not harm. The others are counted.
	var capped strings.Builder
	for _, line := range strings.Split(all, "\n") {
		if strings.Contains(line, "{") && !strings.Contains(line, pod) && !strings.Contains(line, blue) {
			continue
		}
		line = strings.Replace(line, "sockbuf_netns_namespaces_skipped 0", "sockbuf_netns_namespaces_skipped 3", 1)
		capped.WriteString(line + "\n")
	}
	for _, tc := range []struct {
		name string
		max  int
		want string
	}{
		{"all", 0, all},
		{"capped", 2, capped.String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newFixtureNetns(t, "testdata/netns/proc", "testdata/netns/run-netns", tc.max)
			for scrape := 1; scrape <= 3; scrape++ { // the second and third come from the caches
				if err := testutil.CollectAndCompare(asPromCollector(c), strings.NewReader(withHeaders(t, tc.want)), netnsMetricNames...); err != nil {
					t.Errorf("scrape %d: %v", scrape, err)
				}
			}
			lintClean(t, c)
		})
	}
}

func TestNetnsPermissionDenied(t *testing.T) {
	c := newFixtureNetns(t, "testdata/netns/proc", "testdata/netns/run-netns", 0)
	c.ns.Readlink = func(path string) (string, error) {
		if strings.Contains(path, "/self") {
			return os.Readlink(path)
		}
		return "", &fs.PathError{Op: "readlink", Path: path, Err: fs.ErrPermission}
	}
	err := c.Update(context.Background(), make(chan prometheus.Metric, 100))
	if !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), "CAP_SYS_PTRACE") {
		t.Fatalf("Update = %v, want a permission error naming CAP_SYS_PTRACE", err)
	}

	// Some readable: the others are skipped without error.
	c = newFixtureNetns(t, "testdata/netns/proc", "testdata/netns/run-netns", 0)
	c.ns.Readlink = func(path string) (string, error) {
		if strings.Contains(path, "/200/") || strings.Contains(path, "/400/") {
			return "", &fs.PathError{Op: "readlink", Path: path, Err: fs.ErrPermission}
		}
		return os.Readlink(path)
	}
	got := gather(t, c)
	if got["sockbuf_netns_namespaces"] != 4 { // 201 stands for the pod's namespace
		t.Errorf("namespaces = %g, want 4", got["sockbuf_netns_namespaces"])
	}
	if v, ok := got[`sockbuf_netns_tcp_prune_called_total{netns="kubepods-burstable-pod0a1b_2c3d.slice",netns_inode="4026532100"}`]; ok {
		t.Errorf("pod namespace exported through pid 201, which has no net files: %g", v)
	}
}

// fakeNetnsProc builds a /proc tree with pids processes spread over spaces namespaces (the first, pid 1 and
// self's, is the exporter's own), each namespace's processes in one cgroup, and returns its path.
func fakeNetnsProc(t testing.TB, pids, spaces int) string {
	t.Helper()
	proc := filepath.Join(t.TempDir(), "proc")
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	netstat, err := os.ReadFile("testdata/netns/proc/200/net/netstat")
	must(err)
	snmp, err := os.ReadFile("testdata/netns/proc/200/net/snmp")
	must(err)
	for pid := 1; pid <= pids; pid++ {
		space := (pid - 1) % spaces
		dir := filepath.Join(proc, fmt.Sprint(pid))
		must(os.MkdirAll(filepath.Join(dir, "ns"), 0o755))
		must(os.Symlink(fmt.Sprintf("net:[%d]", 4026531840+space), filepath.Join(dir, "ns", "net")))
		must(os.WriteFile(filepath.Join(dir, "cgroup"), fmt.Appendf(nil, "0::/system.slice/app-%d.service\n", space), 0o644))
		must(os.MkdirAll(filepath.Join(dir, "net"), 0o755))
		must(os.WriteFile(filepath.Join(dir, "net", "netstat"), netstat, 0o644))
		must(os.WriteFile(filepath.Join(dir, "net", "snmp"), snmp, 0o644))
	}
	must(os.Symlink("1", filepath.Join(proc, "self")))
	return proc
}

// countingReadlink counts the namespace links read, not self's.
func countingReadlink(n *atomic.Int64) func(string) (string, error) {
	return func(path string) (string, error) {
		if !strings.Contains(path, "/self") {
			n.Add(1)
		}
		return os.Readlink(path)
	}
}

func TestNetnsCache(t *testing.T) {
	proc := fakeNetnsProc(t, 40, 10) // pid 1 is self: 39 other processes, 9 other namespaces
	c := newFixtureNetns(t, proc, t.TempDir(), 0)
	var reads atomic.Int64
	c.ns.Readlink = countingReadlink(&reads)
	now := time.Unix(1e9, 0)
	c.ns.Now = func() time.Time { return now }

	scrape := func() map[string]float64 {
		t.Helper()
		reads.Store(0)
		return gather(t, c)
	}
	// Each scrape also reads the link of every exported namespace's chosen process again after its counters.
	got := scrape()
	if got["sockbuf_netns_namespaces"] != 9 || reads.Load() != 39+9 {
		t.Fatalf("first scrape: %g namespaces, %d links read; want 9, 48", got["sockbuf_netns_namespaces"], reads.Load())
	}
	// The second scrape reads every link again (a process may join a namespace right after fork); from the
	// third on, only the chosen process of each namespace is read, before and after its counters.
	scrape()
	if reads.Load() != 39+9 {
		t.Errorf("second scrape read %d links, want 48", reads.Load())
	}
	got = scrape()
	if reads.Load() != 9+9 {
		t.Errorf("third scrape read %d links, want 18", reads.Load())
	}
	if v := got[`sockbuf_netns_tcp_prune_called_total{netns="app-3.service",netns_inode="4026531843"}`]; v != 50 {
		t.Errorf("app-3 prune = %g, want 50", v)
	}

	// The chosen process of namespace 3 (pid 4) exits: pid 14 takes over. Pid 24 moves to namespace 5.
	if err := os.RemoveAll(filepath.Join(proc, "4")); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(proc, "24", "ns", "net")
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("net:[4026531845]", link); err != nil {
		t.Fatal(err)
	}
	got = scrape()
	if reads.Load() != 10+9 { // 9 chosen, then 14; then the 9 again
		t.Errorf("scrape after an exit read %d links, want 19", reads.Load())
	}
	if c.ns.Namespace(4026531843).Pid != 14 {
		t.Errorf("namespace 3 read through pid %d, want 14", c.ns.Namespace(4026531843).Pid)
	}
	if got["sockbuf_netns_namespaces"] != 9 {
		t.Errorf("namespaces = %g, want 9", got["sockbuf_netns_namespaces"])
	}
	// Pid 24's move is seen at the recheck, when every link is read again.
	now = now.Add(netns.RecheckInterval)
	scrape()
	if reads.Load() != 38+9 {
		t.Errorf("recheck scrape read %d links, want 47", reads.Load())
	}
	if ino, _ := c.ns.PidNamespace(24); ino != 4026531845 {
		t.Errorf("pid 24 cached in %d after the recheck, want 4026531845", ino)
	}

	// A namespace whose processes are all gone disappears.
	for _, pid := range []string{"10", "20", "30", "40"} {
		if err := os.RemoveAll(filepath.Join(proc, pid)); err != nil {
			t.Fatal(err)
		}
	}
	got = scrape()
	if got["sockbuf_netns_namespaces"] != 8 || c.ns.Namespaces() != 8 {
		t.Errorf("after namespace 9 ended: %g namespaces exported, %d known; want 8", got["sockbuf_netns_namespaces"], c.ns.Namespaces())
	}
	if diff := cmp.Diff(map[string]bool{}, danglingPids(c)); diff != "" {
		t.Errorf("cache holds gone pids (-want +got):\n%s", diff)
	}
}

// TestNetnsNewNamespace checks that a namespace appearing once every other is cached is found on the next
// scrape, read through its lowest pid, while the others keep their processes.
func TestNetnsNewNamespace(t *testing.T) {
	proc := fakeNetnsProc(t, 40, 10)
	c := newFixtureNetns(t, proc, t.TempDir(), 0)
	for range 3 {
		gather(t, c)
	}
	chosen := map[uint64]int{}
	found, err := c.ns.Scan()
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range found {
		chosen[ns.Ino] = ns.Pid
	}
	for _, pid := range []string{"52", "51"} {
		dir := filepath.Join(proc, pid)
		if err := os.CopyFS(dir, os.DirFS(filepath.Join(proc, "2"))); err != nil {
			t.Fatal(err)
		}
		replaceNetnsProcess(t, dir, "net:[4026532000]", 9)
	}
	got := gather(t, c)
	if got["sockbuf_netns_namespaces"] != 10 {
		t.Errorf("namespaces = %g, want 10", got["sockbuf_netns_namespaces"])
	}
	if ns := c.ns.Namespace(4026532000); ns == nil || ns.Pid != 51 {
		t.Errorf("new namespace state %+v, want it read through pid 51", ns)
	}
	for ino, pid := range chosen {
		if c.ns.Namespace(ino).Pid != pid {
			t.Errorf("namespace %d read through pid %d, was %d", ino, c.ns.Namespace(ino).Pid, pid)
		}
	}
	if v := got[`sockbuf_netns_tcp_prune_called_total{netns="app-1.service",netns_inode="4026532000"}`]; v != 9 {
		t.Errorf("new namespace prune = %g, want 9", v)
	}
}

// danglingPids lists cached pids whose directory is gone.
func danglingPids(c *netnsCollector) map[string]bool {
	out := map[string]bool{}
	for _, pid := range c.ns.Pids() {
		if _, err := os.Stat(filepath.Join(c.ns.ProcPath(), fmt.Sprint(pid))); err != nil {
			out[fmt.Sprint(pid)] = true
		}
	}
	return out
}

// BenchmarkNetnsScrape measures a steady-state scrape over a fake /proc; the kernel's part (about 100µs to
// generate a namespace's netstat and snmp, 2.4µs per namespace link) comes on top on a real host.
func BenchmarkNetnsScrape(b *testing.B) {
	for _, size := range []struct{ pids, spaces int }{{300, 100}, {1000, 300}} {
		b.Run(fmt.Sprintf("pids=%d/namespaces=%d", size.pids, size.spaces), func(b *testing.B) {
			benchUpdate(b, newFixtureNetns(b, fakeNetnsProc(b, size.pids, size.spaces), b.TempDir(), 0))
		})
	}
}

// benchUpdate runs Update in a benchmark loop, discarding the metrics.
func benchUpdate(b *testing.B, c Collector) {
	ch := make(chan prometheus.Metric, 10000)
	for b.Loop() {
		if err := c.Update(context.Background(), ch); err != nil {
			b.Fatal(err)
		}
		for len(ch) > 0 {
			<-ch
		}
	}
}

// TestNetnsPidReused checks that a namespace whose chosen process was replaced by another namespace's between
// the check of its link and the reading of its counters (the pid reused, or the process moved) is left out of
// that scrape rather than exported with the other namespace's counters, and read through another process on
// the next one.
func TestNetnsPidReused(t *testing.T) {
	proc := fakeNetnsProc(t, 20, 5) // namespace 4026531841: pids 2 (chosen), 7, 12, 17
	c := newFixtureNetns(t, proc, t.TempDir(), 0)
	const app1 = `sockbuf_netns_tcp_prune_called_total{netns="app-1.service",netns_inode="4026531841"}`
	var swapped bool
	c.ns.Readlink = func(path string) (string, error) {
		link, err := os.Readlink(path)
		if path == filepath.Join(proc, "2", "ns", "net") && !swapped {
			// Right after the check: pid 2 exits and the pid goes to a process of namespace 4026531843,
			// whose counters differ.
			swapped = true
			replaceNetnsProcess(t, filepath.Join(proc, "2"), "net:[4026531843]", 999)
		}
		return link, err
	}
	got := gather(t, c)
	if v, ok := got[app1]; ok {
		t.Errorf("namespace 4026531841 exported with the counters of the process that took its pid: %g", v)
	}
	if got["sockbuf_netns_namespaces"] != 4 {
		t.Errorf("namespaces = %g, want 4 (found, though not exported on this scrape)", got["sockbuf_netns_namespaces"])
	}
	got = gather(t, c)
	if v := got[app1]; v != 50 {
		t.Errorf("next scrape: namespace 4026531841 prune = %g, want 50 read through another of its processes", v)
	}
	if pid := c.ns.Namespace(4026531841).Pid; pid == 2 {
		t.Errorf("namespace 4026531841 still read through pid 2")
	}
	if ino, _ := c.ns.PidNamespace(2); ino != 4026531843 {
		t.Errorf("pid 2 cached in namespace %d, want 4026531843", ino)
	}
}

// replaceNetnsProcess makes the fake process at dir a process of namespace link whose PruneCalled is prune.
func replaceNetnsProcess(t *testing.T, dir, link string, prune int) {
	t.Helper()
	nsLink := filepath.Join(dir, "ns", "net")
	if err := os.Remove(nsLink); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(link, nsLink); err != nil {
		t.Fatal(err)
	}
	netstat := fmt.Sprintf("TcpExt: SyncookiesSent PruneCalled\nTcpExt: 0 %d\n", prune)
	if err := os.WriteFile(filepath.Join(dir, "net", "netstat"), []byte(netstat), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestNetnsConfig checks the checks of the netns flags.
func TestNetnsConfig(t *testing.T) {
	for _, max := range []int{0, -1} {
		_, err := factories["netns"].build(Config{ProcPath: "testdata/netns/proc", Netns: NetnsConfig{MaxNamespaces: max}}, nil)
		if err == nil || !strings.Contains(err.Error(), "--collector.netns.max-namespaces") {
			t.Errorf("build with max-namespaces %d = %v, want an error naming the flag", max, err)
		}
	}
	sockets := Config{Netns: NetnsConfig{Sockets: true}}
	if w := NetnsConfigWarning(sockets, []string{"netstat", "sockets"}); !strings.Contains(w, "--collector.netns.sockets") {
		t.Errorf("warning with --collector.netns.sockets and no netns collector = %q, want one naming the flag", w)
	}
	for _, tc := range []struct {
		cfg     Config
		enabled []string
	}{{sockets, []string{"netns"}}, {Config{}, nil}, {Config{}, []string{"netns"}}} {
		if w := NetnsConfigWarning(tc.cfg, tc.enabled); w != "" {
			t.Errorf("NetnsConfigWarning(%+v, %q) = %q, want none", tc.cfg.Netns, tc.enabled, w)
		}
	}
}

// TestNetnsGarbledNamespace checks that a namespace whose netstat cannot be parsed is left out and counted,
// while every other namespace is exported, on every scrape.
func TestNetnsGarbledNamespace(t *testing.T) {
	proc := fakeNetnsProc(t, 40, 10) // namespace 4026531843 is read through pid 4, its lowest
	if err := os.WriteFile(filepath.Join(proc, "4", "net", "netstat"), []byte("TcpExt: PruneCalled\nTcpExt: x y\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := newFixtureNetns(t, proc, t.TempDir(), 0)
	for scrape := 1; scrape <= 2; scrape++ {
		got := gather(t, c)
		if n := len(gatherPrefix(got, "sockbuf_netns_tcp_prune_called_total{")); n != 8 {
			t.Errorf("scrape %d: %d namespaces exported, want the 8 readable ones", scrape, n)
		}
		if v := got[`sockbuf_netns_read_errors_total`]; v != float64(scrape) {
			t.Errorf("scrape %d: read errors = %g, want %d", scrape, v, scrape)
		}
		if _, ok := got[`sockbuf_netns_tcp_prune_called_total{netns="app-3.service",netns_inode="4026531843"}`]; ok {
			t.Errorf("scrape %d: garbled namespace exported", scrape)
		}
	}
	lintClean(t, c)
}

package collector

import (
	"github.com/sockbuf/sockbuf_exporter/internal/socktest"

	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sockbuf/sockbuf_exporter/sockdiag"
)

// nsDumpers stands in for the namespaces' sock_diag clients: a dumper, or a dial error, per namespace inode.
type nsDumpers struct {
	dumpers  map[uint64]socketDumper
	dialErrs map[uint64]error
	dials    map[uint64]int
	closed   map[uint64]int
}

func newNsDumpers() *nsDumpers {
	return &nsDumpers{dumpers: map[uint64]socketDumper{}, dialErrs: map[uint64]error{}, dials: map[uint64]int{}, closed: map[uint64]int{}}
}

func (n *nsDumpers) dial(_ int, ino uint64) (socketDumper, error) {
	n.dials[ino]++
	if err := n.dialErrs[ino]; err != nil {
		return nil, err
	}
	d := n.dumpers[ino]
	if d == nil {
		d = &fakeDumper{}
	}
	return closeCounter{d, func() { n.closed[ino]++ }}, nil
}

// closeCounter records that the collector closed a namespace's client.
type closeCounter struct {
	socketDumper
	onClose func()
}

func (c closeCounter) Close() error { c.onClose(); return c.socketDumper.Close() }

// errDumper fails every dump, as a namespace that went away under its client does.
type errDumper struct{ err error }

func (e errDumper) DumpContext(context.Context, sockdiag.Request, func(*sockdiag.Socket) error) (sockdiag.DumpStats, error) {
	return sockdiag.DumpStats{}, e.err
}
func (errDumper) Close() error { return nil }

func newFixtureNetnsSockets(t testing.TB, proc string, max int, d *nsDumpers) *netnsCollector {
	t.Helper()
	c := newFixtureNetns(t, proc, "testdata/netns/run-netns", max)
	c.socks = newNetnsSockets(0.9, d.dial, nil)
	return c
}

var netnsSocketMetricNames = []string{
	netnsSocketsSpec.FullName(), netnsRecvQueueSpec.FullName(), netnsRcvbufFullSpec.FullName(),
	netnsDumpErrorsSpec.FullName(), netnsDumpsSkippedSpec.FullName(), netnsNamespacesSpec.FullName(),
}

func TestNetnsSockets(t *testing.T) {
	d := newNsDumpers()
	podDumper := &fakeDumper{socks: []socktest.Sock{
		socktest.Listen(8080, 3, 128),                                        // not asked for: its Recv-Q is an accept queue
		{Local: 8080, Remote: 40000, RQ: 1000, Rmem: 120000, Rcvbuf: 131072}, // full at 0.9
		{Local: 8080, Remote: 40001, RQ: 10, Rmem: 2304, Rcvbuf: 131072},
		{Local: 40002, Remote: 443, RQ: 0, Rmem: 0, Rcvbuf: 2097152},
		{Local: 40003, Remote: 443, State: sockdiag.StateTimeWait, NoMem: true}, // not asked for
	}}
	d.dumpers[4026532100] = podDumper
	// A dump the kernel restarted: the first attempt's sockets must not count.
	d.dumpers[4026532500] = &fakeDumper{interrupt: true, socks: []socktest.Sock{
		{Local: 80, Remote: 1, RQ: 1, Rmem: 1000, Rcvbuf: 1000}, {Local: 80, Remote: 2, RQ: 2}, {Local: 80, Remote: 3, RQ: 4},
		{Local: 80, Remote: 4, RQ: 8},
	}}
	d.dialErrs[4026532300] = fmt.Errorf("entering network namespace: setns: %w", syscall.EPERM)
	d.dumpers[4026532400] = errDumper{fmt.Errorf("dumping: %w", syscall.ENOENT)}

	c := newFixtureNetnsSockets(t, "testdata/netns/proc", 0, d)
	for scrape := 1; scrape <= 3; scrape++ {
		want := `
sockbuf_netns_sockets{` + pod + `} 3
sockbuf_netns_sockets{` + blue + `} 0
sockbuf_netns_sockets{` + cgroupfs + `} 4
sockbuf_netns_recv_queue_bytes{` + pod + `} 1010
sockbuf_netns_recv_queue_bytes{` + blue + `} 0
sockbuf_netns_recv_queue_bytes{` + cgroupfs + `} 15
sockbuf_netns_rcvbuf_full_sockets{` + pod + `} 1
sockbuf_netns_rcvbuf_full_sockets{` + blue + `} 0
sockbuf_netns_rcvbuf_full_sockets{` + cgroupfs + `} 1
sockbuf_netns_socket_dump_errors_total ` + fmt.Sprint(2*scrape) + `
sockbuf_netns_socket_dumps_skipped_total 0
sockbuf_netns_namespaces 5
`
		// collectorFunc: one Update per comparison, so that the errors counter moves by one scrape's.
		if err := testutil.CollectAndCompare(collectorFunc{c}, strings.NewReader(withHeaders(t, want)), netnsSocketMetricNames...); err != nil {
			t.Errorf("scrape %d: %v", scrape, err)
		}
	}
	// The counters of the namespaces whose dump failed are still there.
	got := gather(t, c)
	for _, ns := range []string{docker, anonymous} {
		if _, ok := got[`sockbuf_netns_tcp_prune_called_total{`+ns+`}`]; !ok {
			t.Errorf("counters of %s missing after its socket dump failed", ns)
		}
	}
	for _, r := range podDumper.reqs {
		if r.States != netnsDumpStates || r.Extensions != sockdiag.ExtSKMemInfo || r.Family != sockdiag.FamilyUnspec {
			t.Errorf("request %+v, want both families, default states without LISTEN, skmeminfo only", r)
		}
	}
	// One client per namespace for all scrapes; the failing dial is tried again each time.
	for ino, want := range map[uint64]int{4026532100: 1, 4026532200: 1, 4026532400: 1, 4026532500: 1, 4026532300: 4} {
		if d.dials[ino] != want {
			t.Errorf("namespace %d dialed %d times in 4 scrapes, want %d", ino, d.dials[ino], want)
		}
	}
	lintClean(t, c)
}

// lintClean fails the test on every problem CollectAndLint finds in c's output.
func lintClean(t *testing.T, c Collector) {
	t.Helper()
	problems, err := testutil.CollectAndLint(asPromCollector(c))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// TestNetnsSocketsClientLifetime checks that a namespace's client is closed when the namespace is no longer
// exported: its processes are gone, or it fell out of the cap.
func TestNetnsSocketsClientLifetime(t *testing.T) {
	proc := fakeNetnsProc(t, 40, 10) // 9 other namespaces, 4026531841..49
	d := newNsDumpers()
	c := newFixtureNetnsSockets(t, proc, 0, d)
	gather(t, c)
	if len(c.socks.clients) != 9 {
		t.Fatalf("%d clients after the first scrape, want 9", len(c.socks.clients))
	}
	for _, pid := range []string{"10", "20", "30", "40"} { // namespace 4026531849
		if err := os.RemoveAll(filepath.Join(proc, pid)); err != nil {
			t.Fatal(err)
		}
	}
	got := gather(t, c)
	if d.closed[4026531849] != 1 || c.socks.clients[4026531849] != nil {
		t.Errorf("client of a gone namespace closed %d times, still cached: %v", d.closed[4026531849], c.socks.clients[4026531849] != nil)
	}
	if _, ok := got[`sockbuf_netns_sockets{netns="app-9.service",netns_inode="4026531849"}`]; ok {
		t.Errorf("gone namespace still exported")
	}
	// Capped at 3: the others' clients go (every namespace prunes alike, so the lowest inodes stay).
	c.max = 3
	got = gather(t, c)
	if len(c.socks.clients) != 3 {
		t.Errorf("%d clients with the cap at 3, want 3", len(c.socks.clients))
	}
	for ino := uint64(4026531844); ino <= 4026531848; ino++ {
		if d.closed[ino] != 1 {
			t.Errorf("client of namespace %d beyond the cap closed %d times, want 1", ino, d.closed[ino])
		}
	}
	if len(gatherPrefix(got, "sockbuf_netns_sockets{")) != 3 {
		t.Errorf("socket metrics for %d namespaces, want 3", len(gatherPrefix(got, "sockbuf_netns_sockets{")))
	}
}

func gatherPrefix(m map[string]float64, prefix string) []string {
	var out []string
	for k := range m {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	return out
}

// TestNetnsSocketsDeadline checks that when the scrape's deadline comes during a namespace's dump, the dumps
// stop in time for the exporter to keep the collector's output: every namespace's counters, the socket
// metrics of the namespaces dumped before, and the count of those not dumped. The next scrape dumps them all.
func TestNetnsSocketsDeadline(t *testing.T) {
	d := newNsDumpers()
	// Exported in the order of harm: pod (data lost), blue (30 collapsed), cgroupfs (2 collapsed), docker
	// (PruneCalled 50 only), anonymous: the dumps stop at docker's, and the one after it is not reached.
	blocked := &fakeDumper{block: true}
	d.dumpers[4026532300] = blocked
	c := newFixtureNetnsSockets(t, "testdata/netns/proc", 0, d)
	e := NewExporter(map[string]Collector{"netns": c}, 0, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	got := gather(t, collected{e.WithContext(ctx)})
	if got[`sockbuf_scrape_collector_success{collector="netns"}`] != 1 {
		t.Fatalf("netns collector failed on a scrape whose socket dumps ran out of time")
	}
	for _, ns := range []string{pod, docker, blue, cgroupfs, anonymous} {
		if _, ok := got[`sockbuf_netns_tcp_prune_called_total{`+ns+`}`]; !ok {
			t.Errorf("counters of %s missing after the deadline", ns)
		}
	}
	if n := len(gatherPrefix(got, "sockbuf_netns_sockets{")); n != 3 {
		t.Errorf("socket metrics for %d namespaces, want the pod's, blue's and cgroupfs's, dumped before the deadline", n)
	}
	for _, ns := range []string{pod, blue, cgroupfs} {
		if _, ok := got[`sockbuf_netns_sockets{`+ns+`}`]; !ok {
			t.Errorf("no socket metrics for %s, dumped before the deadline", ns)
		}
	}
	if v := got["sockbuf_netns_socket_dumps_skipped_total"]; v != 2 {
		t.Errorf("dumps skipped = %g, want 2 (docker's, cut short, and the one after it)", v)
	}
	if got["sockbuf_netns_socket_dump_errors_total"] != 0 {
		t.Errorf("a deadline counted as a dump error: %g", got["sockbuf_netns_socket_dump_errors_total"])
	}

	blocked.block = false
	got = gather(t, c)
	if n := len(gatherPrefix(got, "sockbuf_netns_sockets{")); n != 5 {
		t.Errorf("socket metrics for %d namespaces on the scrape after a deadline, want 5", n)
	}
	if v := got["sockbuf_netns_socket_dumps_skipped_total"]; v != 2 {
		t.Errorf("dumps skipped = %g after a complete scrape, want still 2", v)
	}
}

// TestNetnsSocketsDeadlineKeepsClients checks that a scrape cut short by its deadline keeps the clients of the
// namespaces it did not reach, so that the next scrape does not dial them again.
func TestNetnsSocketsDeadlineKeepsClients(t *testing.T) {
	d := newNsDumpers()
	blocked := &fakeDumper{}
	d.dumpers[4026532100] = blocked // the pod's, dumped first
	c := newFixtureNetnsSockets(t, "testdata/netns/proc", 0, d)
	gather(t, c)
	blocked.block = true
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := c.Update(ctx, make(chan prometheus.Metric, 1000)); err != nil {
		t.Errorf("UpdateContext = %v, want nil when the deadline cuts the dumps short", err)
	}
	blocked.block = false
	gather(t, c)
	for _, ino := range []uint64{4026532100, 4026532200, 4026532300, 4026532400, 4026532500} {
		if d.dials[ino] != 1 || d.closed[ino] != 0 {
			t.Errorf("namespace %d: dialed %d times, closed %d times in 3 scrapes, one cut short; want 1, 0", ino, d.dials[ino], d.closed[ino])
		}
	}
}

// collected is a prometheus.Collector as a Collector, for gather.
type collected struct{ prometheus.Collector }

func (c collected) Update(_ context.Context, ch chan<- prometheus.Metric) error {
	c.Collect(ch)
	return nil
}

// replayDumper serves prepared sockets, so that a scrape's allocations are the collector's.
type replayDumper struct{ socks []*sockdiag.Socket }

func (r *replayDumper) DumpContext(_ context.Context, _ sockdiag.Request, fn func(*sockdiag.Socket) error) (sockdiag.DumpStats, error) {
	for _, s := range r.socks {
		if err := fn(s); err != nil {
			return sockdiag.DumpStats{}, err
		}
	}
	return sockdiag.DumpStats{Sockets: len(r.socks)}, nil
}
func (*replayDumper) Close() error { return nil }

// TestNetnsSocketsAllocs checks that a scrape's allocations do not grow with the sockets of the namespaces.
func TestNetnsSocketsAllocs(t *testing.T) {
	allocs := func(perNS int) float64 {
		d := newNsDumpers()
		for _, ino := range []uint64{4026532100, 4026532200, 4026532300, 4026532400, 4026532500} {
			r := &replayDumper{}
			for i := range perNS {
				r.socks = append(r.socks, socktest.Sock{Local: 80, Remote: uint16(i), RQ: 1, Rmem: 10, Rcvbuf: 100}.Socket())
			}
			d.dumpers[ino] = r
		}
		c := newFixtureNetnsSockets(t, "testdata/netns/proc", 0, d)
		ch := make(chan prometheus.Metric, 1000)
		return testing.AllocsPerRun(20, func() {
			if err := c.Update(context.Background(), ch); err != nil {
				t.Fatal(err)
			}
			for len(ch) > 0 {
				<-ch
			}
		})
	}
	few, many := allocs(10), allocs(2000)
	t.Logf("allocations per scrape: %g with 10 sockets per namespace, %g with 2000", few, many)
	if many > few {
		t.Errorf("a scrape allocates %g times with 2000 sockets per namespace, %g with 10: allocations per socket", many, few)
	}
}

// TestNetnsSocketsFullRatio checks that --collector.sockets.full-ratio is checked when the netns collector uses it.
func TestNetnsSocketsFullRatio(t *testing.T) {
	_, err := factories["netns"].build(Config{ProcPath: "testdata/netns/proc", Sockets: SocketsConfig{FullRatio: 3},
		Netns: NetnsConfig{MaxNamespaces: 100, Sockets: true}}, nil)
	if err == nil || !strings.Contains(err.Error(), "full-ratio") {
		t.Errorf("build with full ratio 3 = %v, want an error naming the flag", err)
	}
	// 0 is an error too, not a default the collector guesses.
	if _, err := factories["netns"].build(Config{ProcPath: "testdata/netns/proc", Netns: NetnsConfig{MaxNamespaces: 100, Sockets: true}}, nil); err == nil {
		t.Errorf("build with full ratio 0 succeeded, want an error")
	}
	c, err := factories["netns"].build(Config{ProcPath: "testdata/netns/proc", Sockets: DefaultSocketsConfig(), Netns: NetnsConfig{MaxNamespaces: 100, Sockets: true}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := c.(*netnsCollector).socks.fullRatio; r != DefaultFullRatio {
		t.Errorf("full ratio %g from the defaults, want %g", r, DefaultFullRatio)
	}
}

package collector

import (
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"

	"github.com/sockbuf/sockbuf_exporter/internal/socktest"
	"slices"

	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sockbuf/sockbuf_exporter/sockdiag"
)

// fakeDumper serves synthetic sockets, filtered by the request's state mask as the kernel does.
type fakeDumper struct {
	socks     []socktest.Sock
	interrupt bool // deliver every dump twice, the first attempt cut short, as after NLM_F_DUMP_INTR
	block     bool // block until the deadline passes
	reqs      []sockdiag.Request

	mu       sync.Mutex // the test reads deadline
	deadline time.Time  // of the last dump's context

	gone    map[uint64]bool // cookies whose lookup finds no socket
	lookups []uint64        // cookies looked up
}

// LookupContext answers with the socket of that cookie, as sockdiag.Client does.
func (f *fakeDumper) LookupContext(_ context.Context, id *sockdiag.Socket, _ sockdiag.Ext, fn func(*sockdiag.Socket) error) error {
	f.lookups = append(f.lookups, id.Cookie)
	for _, s := range f.socks {
		if s.Cookie == id.Cookie && !f.gone[id.Cookie] {
			return fn(s.Socket())
		}
	}
	return fmt.Errorf("no socket %x: %w", id.Cookie, os.ErrNotExist)
}

func (f *fakeDumper) DumpContext(ctx context.Context, req sockdiag.Request, fn func(*sockdiag.Socket) error) (sockdiag.DumpStats, error) {
	f.reqs = append(f.reqs, req)
	d, _ := ctx.Deadline()
	f.mu.Lock()
	f.deadline = d
	f.mu.Unlock()
	if f.block {
		// As sockdiag.Client does: the read ends when the context does, with an error that matches both.
		select {
		case <-ctx.Done():
			return sockdiag.DumpStats{}, fmt.Errorf("%w (%w)", os.ErrDeadlineExceeded, ctx.Err())
		case <-time.After(10 * time.Second):
			return sockdiag.DumpStats{}, errors.New("fakeDumper: blocked 10s without the context ending")
		}
	}
	var st sockdiag.DumpStats
	attempts := 1
	if f.interrupt {
		attempts, st.Retries = 2, 1
	}
	for attempt := range attempts {
		for i, fs := range f.socks {
			if attempt == 0 && attempts > 1 && i == len(f.socks)/2 {
				break
			}
			s := fs.Socket()
			if req.States&(1<<s.State) == 0 {
				continue
			}
			s.Attempt = attempt
			if req.Extensions&sockdiag.ExtInfo == 0 {
				s.TCPInfoLen = 0 // as the kernel: no tcp_info unless asked for
			}
			if err := fn(s); err != nil {
				return st, err
			}
			st.Sockets++
		}
	}
	return st, nil
}

func (f *fakeDumper) Close() error { return nil }

func newTestSockets(t *testing.T, sc SocketsConfig, d *fakeDumper) *socketsCollector {
	t.Helper()
	sc = withTestDefaults(sc)
	c, err := newSocketsCollector(Config{ProcPath: "testdata/none", Sockets: sc}, nil,
		func() (socketDumper, error) { return d, nil })
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// collectorFunc adapts a Collector to an unchecked prometheus.Collector for testutil, so that registering it
// does not run a scrape (which would move the counters).
type collectorFunc struct{ c Collector }

func (f collectorFunc) Describe(chan<- *prometheus.Desc) {}
func (f collectorFunc) Collect(ch chan<- prometheus.Metric) {
	if err := f.c.Update(context.Background(), ch); err != nil {
		panic(err)
	}
}

// byStateText is the expected sockbuf_tcp_sockets_by_state exposition: listen and established sockets, no others.
func byStateText(listen, established int) string {
	var b strings.Builder
	b.WriteString("# HELP sockbuf_tcp_sockets_by_state " + byStateSpec.Help + "\n# TYPE sockbuf_tcp_sockets_by_state gauge\n")
	for _, state := range []string{"close", "close_wait", "closing", "established", "fin_wait1", "fin_wait2", "last_ack", "listen", "syn_sent"} {
		n := 0
		switch state {
		case "listen":
			n = listen
		case "established":
			n = established
		}
		fmt.Fprintf(&b, "sockbuf_tcp_sockets_by_state{state=%q} %d\n", state, n)
	}
	return b.String()
}

// lintCollector fails t for every metric of c that the Prometheus linter objects to.
func lintCollector(t *testing.T, c Collector) {
	t.Helper()
	problems, err := testutil.CollectAndLint(collectorFunc{c})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

func TestSocketsCollectorOutput(t *testing.T) {
	d := &fakeDumper{socks: []socktest.Sock{
		socktest.Listen(8080, 3, 128),
		socktest.Sock{Local: 8080, Remote: 40000, RQ: 1000, WQ: 0, Rmem: 120000, Rcvbuf: 131072, Drops: 4, Cookie: 1},
		socktest.Sock{Local: 8080, Remote: 40001, RQ: 10, Rmem: 2304, Rcvbuf: 131072, Cookie: 2},
		socktest.Sock{Local: 40002, Remote: 443, WQ: 700, Rmem: 0, Rcvbuf: 2097152, Cookie: 3},
		socktest.Sock{Local: 40003, Remote: 443, State: sockdiag.StateTimeWait, NoMem: true}, // not dumped by default
	}}
	c := newTestSockets(t, SocketsConfig{}, d)
	want := `
# HELP sockbuf_listen_queue_length ` + listenLengthSpec.Help + `
# TYPE sockbuf_listen_queue_length gauge
sockbuf_listen_queue_length{port="8080"} 3
# HELP sockbuf_listen_queue_limit ` + listenLimitSpec.Help + `
# TYPE sockbuf_listen_queue_limit gauge
sockbuf_listen_queue_limit{port="8080"} 128
# HELP sockbuf_rcvbuf_full_sockets ` + rcvbufFullSpec.Help + `
# TYPE sockbuf_rcvbuf_full_sockets gauge
sockbuf_rcvbuf_full_sockets{cgroup="",port="443",process="",role="client"} 0
sockbuf_rcvbuf_full_sockets{cgroup="",port="8080",process="",role="server"} 1
# HELP sockbuf_recv_queue_bytes ` + recvQueueSpec.Help + `
# TYPE sockbuf_recv_queue_bytes gauge
sockbuf_recv_queue_bytes{cgroup="",port="443",process="",role="client"} 0
sockbuf_recv_queue_bytes{cgroup="",port="8080",process="",role="server"} 1010
# HELP sockbuf_socket_drops_total ` + socketDropsSpec.Help + `
# TYPE sockbuf_socket_drops_total counter
sockbuf_socket_drops_total{cgroup="",port="443",process="",role="client"} 0
sockbuf_socket_drops_total{cgroup="",port="8080",process="",role="server"} 4
# HELP sockbuf_sockets ` + socketsSpec.Help + `
# TYPE sockbuf_sockets gauge
sockbuf_sockets{cgroup="",port="443",process="",role="client"} 1
sockbuf_sockets{cgroup="",port="8080",process="",role="server"} 2
# HELP sockbuf_socket_groups_folded ` + groupsFoldedSpec.Help + `
# TYPE sockbuf_socket_groups_folded gauge
sockbuf_socket_groups_folded 0
` + byStateText(1, 3) + `
# HELP sockbuf_rmem_fill_ratio ` + fillRatioSpec.Help + `
# TYPE sockbuf_rmem_fill_ratio histogram
sockbuf_rmem_fill_ratio_bucket{le="0"} 1
sockbuf_rmem_fill_ratio_bucket{le="0.1"} 2
sockbuf_rmem_fill_ratio_bucket{le="0.25"} 2
sockbuf_rmem_fill_ratio_bucket{le="0.5"} 2
sockbuf_rmem_fill_ratio_bucket{le="0.75"} 2
sockbuf_rmem_fill_ratio_bucket{le="0.9"} 2
sockbuf_rmem_fill_ratio_bucket{le="1"} 3
sockbuf_rmem_fill_ratio_bucket{le="1.5"} 3
sockbuf_rmem_fill_ratio_bucket{le="+Inf"} 3
sockbuf_rmem_fill_ratio_sum 0.93310546875
sockbuf_rmem_fill_ratio_count 3
`
	names := []string{"sockbuf_listen_queue_length", "sockbuf_listen_queue_limit", "sockbuf_rcvbuf_full_sockets",
		"sockbuf_recv_queue_bytes", "sockbuf_socket_drops_total", "sockbuf_sockets", "sockbuf_socket_groups_folded",
		"sockbuf_tcp_sockets_by_state", "sockbuf_rmem_fill_ratio"}
	if err := testutil.CollectAndCompare(collectorFunc{c}, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	// A second scrape sees the same drops: the counter must not move. Every metric passes the linter.
	if got := gather(t, c)[`sockbuf_socket_drops_total{cgroup="",port="8080",process="",role="server"}`]; got != 4 {
		t.Errorf("drops after a second scrape = %g, want 4", got)
	}
	lintCollector(t, c)
	// The LISTEN dump asks for no attributes; the other one for skmeminfo only, without LISTEN.
	if r := d.reqs[0]; r.States != 1<<sockdiag.StateListen || r.Extensions != 0 || r.Family != sockdiag.FamilyUnspec {
		t.Errorf("listener request = %+v", r)
	}
	if r := d.reqs[1]; r.States != sockdiag.DefaultStates&^(1<<sockdiag.StateListen) || r.Extensions != sockdiag.ExtSKMemInfo {
		t.Errorf("socket request = %+v", r)
	}
}

func TestSocketsCollectorTCPInfo(t *testing.T) {
	d := &fakeDumper{socks: []socktest.Sock{
		socktest.Sock{Local: 40000, Remote: 443, RcvWnd: 1},
		socktest.Sock{Local: 40001, Remote: 443, RcvWnd: 1000},
	}}
	m := gather(t, newTestSockets(t, SocketsConfig{TCPInfo: true}, d))
	if got := m[`sockbuf_rcv_window_zero_sockets{cgroup="",port="443",process="",role="client"}`]; got != 1 {
		t.Errorf("zero-window sockets = %g, want 1", got)
	}
	if r := d.reqs[1]; r.Extensions != sockdiag.ExtSKMemInfo|sockdiag.ExtInfo {
		t.Errorf("with tcp-info the request has extensions %#x", r.Extensions)
	}
}

// TestSocketsCollectorWindowLookups: without tcp_info in the dump, the full sockets are looked up one by one
// for their window; sockets that are not full are not looked up, and a socket gone before its lookup is
// counted as unchecked.
func TestSocketsCollectorWindowLookups(t *testing.T) {
	if !sockdiag.KernelHasRcvWnd() {
		testenv.Missing(t, "kernel before 6.2: no tcpi_rcv_wnd, the zero-window metric is absent")
	}
	d := &fakeDumper{socks: []socktest.Sock{
		{Local: 40000, Remote: 443, Rmem: 130000, Rcvbuf: 131072, RcvWnd: 1, Cookie: 1},    // full, zero window
		{Local: 40001, Remote: 443, Rmem: 130000, Rcvbuf: 131072, RcvWnd: 5000, Cookie: 2}, // full, open window
		{Local: 40002, Remote: 443, Rmem: 10, Rcvbuf: 131072, RcvWnd: 1, Cookie: 3},        // not full: not looked up
		{Local: 40003, Remote: 443, Rmem: 130000, Rcvbuf: 131072, RcvWnd: 1, Cookie: 4},    // full, closes before its lookup
	}, gone: map[uint64]bool{4: true}}
	m := gather(t, newTestSockets(t, SocketsConfig{}, d))
	if got := m[`sockbuf_rcv_window_zero_sockets{cgroup="",port="443",process="",role="client"}`]; got != 1 {
		t.Errorf("zero-window sockets = %g, want 1", got)
	}
	if got := m[`sockbuf_rcv_window_unchecked_sockets`]; got != 1 {
		t.Errorf("unchecked = %g, want 1", got)
	}
	if r := d.reqs[1]; r.Extensions != sockdiag.ExtSKMemInfo {
		t.Errorf("without tcp-info the dump asks for extensions %#x", r.Extensions)
	}
	if want := []uint64{1, 2, 4}; !slices.Equal(d.lookups, want) {
		t.Errorf("looked up cookies %v, want %v", d.lookups, want)
	}
}

func TestSocketsCollectorRestartedDump(t *testing.T) {
	d := &fakeDumper{interrupt: true, socks: []socktest.Sock{
		socktest.Listen(80, 0, 10), socktest.Listen(81, 0, 10),
		socktest.Sock{Local: 80, Remote: 1, RQ: 5}, socktest.Sock{Local: 80, Remote: 2, RQ: 5},
		socktest.Sock{Local: 81, Remote: 1, RQ: 5}, socktest.Sock{Local: 81, Remote: 2, RQ: 5},
	}}
	c := newTestSockets(t, SocketsConfig{States: "established"}, d)
	m := gather(t, c)
	for _, port := range []string{"80", "81"} {
		if got := m[`sockbuf_sockets{cgroup="",port="`+port+`",process="",role="server"}`]; got != 2 {
			t.Errorf("port %s: %g sockets after a restarted dump, want 2", port, got)
		}
		if got := m[`sockbuf_listen_queue_limit{port="`+port+`"}`]; got != 10 {
			t.Errorf("port %s: listen limit %g after a restarted dump, want 10", port, got)
		}
	}
	if got := m["sockbuf_sockets_dump_retries_total"]; got != 2 {
		t.Errorf("retries = %g, want 2 (one per dump)", got)
	}
	if got := m[`sockbuf_tcp_sockets_by_state{state="established"}`]; got != 4 {
		t.Errorf("established = %g, want 4", got)
	}
}

func TestSocketsCollectorDeadline(t *testing.T) {
	d := &fakeDumper{block: true}
	c := newTestSockets(t, SocketsConfig{}, d)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	ch := make(chan prometheus.Metric, 100)
	start := time.Now()
	err := c.Update(ctx, ch)
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("UpdateContext past the deadline: %v", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("UpdateContext took %v past a 50ms deadline", el)
	}
}

// TestSocketsCollectorDefaultDeadline checks that a scrape without a deadline (Collect, or a scrape without
// X-Prometheus-Scrape-Timeout-Seconds) still gives the dump one, so that a stuck dump cannot hold the
// collector for ever.
func TestSocketsCollectorDefaultDeadline(t *testing.T) {
	d := &fakeDumper{socks: []socktest.Sock{{Local: 40000, Remote: 443}}}
	c := newTestSockets(t, SocketsConfig{}, d)
	start := time.Now()
	successByCollector(t, NewExporter(map[string]Collector{"sockets": c}, 0, discardLogger()))
	d.mu.Lock()
	got := d.deadline
	d.mu.Unlock()
	if got.Before(start.Add(DefaultTimeout-time.Second)) || got.After(time.Now().Add(DefaultTimeout)) {
		t.Errorf("dump deadline without a scrape deadline = %v after the start, want %v", got.Sub(start), DefaultTimeout)
	}
}

func TestSocketsCollectorConfig(t *testing.T) {
	for _, sc := range []SocketsConfig{{MaxGroups: 1, FullRatio: 0.9}, {MaxGroups: 0, FullRatio: 0.9}, {MaxGroups: 200, FullRatio: 0},
		{MaxGroups: 200, FullRatio: -1}, {MaxGroups: 200, FullRatio: 0.9, States: "nope"}} {
		if _, err := newSocketsCollector(Config{Sockets: sc}, nil, nil); err == nil {
			t.Errorf("config %+v accepted", sc)
		}
	}
}

func TestSocketsCollectorCgroupLabels(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "system.slice", "nginx.service")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	d := &fakeDumper{socks: []socktest.Sock{
		socktest.Listen(80, 0, 10),
		socktest.Sock{Local: 80, Remote: 1, Cgroup: inode(t, dir)},
		socktest.Sock{Local: 80, Remote: 2, Cgroup: inode(t, root)},
		socktest.Sock{Local: 80, Remote: 3, Cgroup: 999999999},
	}}
	c := newTestSockets(t, SocketsConfig{CgroupAttribution: true, CgroupRoot: root}, d)
	m := gather(t, c)
	for cg, want := range map[string]float64{"nginx.service": 1, "/": 1, "": 1} {
		if got := m[`sockbuf_sockets{cgroup="`+cg+`",port="80",process="",role="server"}`]; got != want {
			t.Errorf("cgroup %q: %g sockets, want %g", cg, got, want)
		}
	}
}

// gather scrapes c once and returns its series by their text form.
func gather(t *testing.T, c Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(collectorFunc{c})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var b strings.Builder
			b.WriteString(mf.GetName())
			if len(m.GetLabel()) > 0 {
				b.WriteByte('{')
				for i, l := range m.GetLabel() {
					if i > 0 {
						b.WriteByte(',')
					}
					b.WriteString(l.GetName() + `="` + l.GetValue() + `"`)
				}
				b.WriteByte('}')
			}
			switch {
			case m.Gauge != nil:
				out[b.String()] = m.GetGauge().GetValue()
			case m.Counter != nil:
				out[b.String()] = m.GetCounter().GetValue()
			case m.Histogram != nil:
				out[b.String()+"_count"] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// TestSocketsHistogramsAreSnapshots checks that the histograms count the live sockets of each scrape (so
// their _count falls when sockets close) and that their HELP says so and warns against rate().
func TestSocketsHistogramsAreSnapshots(t *testing.T) {
	d := &fakeDumper{socks: []socktest.Sock{
		{Local: 40000, Remote: 443}, {Local: 40001, Remote: 443}, {Local: 40002, Remote: 443},
	}}
	c := newTestSockets(t, SocketsConfig{}, d)
	before := gather(t, c)
	d.socks = d.socks[:1]
	after := gather(t, c)
	for _, name := range []string{"sockbuf_rmem_fill_ratio", "sockbuf_rcvbuf_size_bytes"} {
		if b, a := before[name+"_count"], after[name+"_count"]; b != 3 || a != 1 {
			t.Errorf("%s_count = %g then %g, want 3 then 1 (the live sockets)", name, b, a)
		}
	}
	for _, m := range []MetricSpec{fillRatioSpec, rcvbufSizeSpec} {
		for _, want := range []string{"snapshot of the live sockets", "go down", "do not rate()"} {
			if !strings.Contains(m.Help, want) {
				t.Errorf("HELP of %s does not say %q: %s", m.Name, want, m.Help)
			}
		}
	}
}

func TestParseStates(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint32
		err  bool
	}{
		{"", sockdiag.DefaultStates, false},
		{"established", 1 << sockdiag.StateEstablished, false},
		{"ESTAB, close-wait", 1<<sockdiag.StateEstablished | 1<<sockdiag.StateCloseWait, false},
		{"time_wait,fin-wait-1,fin_wait2", 1<<sockdiag.StateTimeWait | 1<<sockdiag.StateFinWait1 | 1<<sockdiag.StateFinWait2, false},
		{"syn-recv", 1<<sockdiag.StateSynRecv | 1<<sockdiag.StateNewSynRecv, false},
		{"closed,listening", 1<<sockdiag.StateClose | 1<<sockdiag.StateListen, false},
		{"unconn,LISTEN", 1<<sockdiag.StateClose | 1<<sockdiag.StateListen, false},
		{"new-syn-recv", 0, true},
		{"all", 0xffe | 1<<sockdiag.StateNewSynRecv, false},
		{"established,bogus", 0, true},
	} {
		got, err := parseStates(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("parseStates(%q) = %#x, %v; want %#x, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// withTestDefaults fills the zero MaxGroups and FullRatio of a test's configuration with the defaults, which
// the collector itself refuses to guess.
func withTestDefaults(sc SocketsConfig) SocketsConfig {
	if sc.MaxGroups == 0 {
		sc.MaxGroups = DefaultMaxGroups
	}
	if sc.FullRatio == 0 {
		sc.FullRatio = DefaultFullRatio
	}
	return sc
}

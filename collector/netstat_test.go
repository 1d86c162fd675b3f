package collector

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

// hostCollectors are the collectors this file's tests cover; the others have their own tests.
var hostCollectors = []string{"netstat", "sockstat", "softnet", "sysctl"}

// readFixture reads testdata/<name>.
func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkErr fails the test unless err is nil and wantErr empty, or err contains wantErr.
func checkErr(t *testing.T, err error, wantErr string) bool {
	t.Helper()
	switch {
	case wantErr == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case wantErr != "" && err == nil:
		t.Fatalf("no error, want one containing %q", wantErr)
	case wantErr != "" && !strings.Contains(err.Error(), wantErr):
		t.Fatalf("error %q does not contain %q", err, wantErr)
	}
	return err == nil
}

// parseNetstatFile runs the parser the collector runs for <proc>/net/<file> and returns the wanted fields it
// found, keyed "Proto Field".
func parseNetstatFile(file string, data []byte) (map[string]uint64, error) {
	var (
		vals [maxNetstatFields]uint64
		have [maxNetstatFields]bool
		want []protoFields
	)
	for _, f := range netstatFiles {
		if f.name == file {
			want = f.protos
		}
	}
	if err := parseProtoStats(data, want, vals[:], have[:]); err != nil {
		return nil, err
	}
	got := map[string]uint64{}
	for i, f := range netstatFields {
		if have[i] {
			got[f.proto+" "+f.name] = vals[i]
		}
	}
	return got, nil
}

func TestParseNetstat(t *testing.T) {
	for _, tc := range []struct {
		name    string
		file    string // "netstat" or "snmp"
		fixture string
		want    map[string]uint64
		wantErr string
	}{
		{
			name: "linux 6.18", file: "netstat", fixture: "proc-host/net/netstat",
			want: map[string]uint64{
				"TcpExt PruneCalled": 6, "TcpExt RcvPruned": 7, "TcpExt OfoPruned": 8, "TcpExt ListenOverflows": 24,
				"TcpExt ListenDrops": 25, "TcpExt TCPRcvCollapsed": 50, "TcpExt TCPAbortOnMemory": 58,
				"TcpExt TCPMemoryPressures": 62, "TcpExt TCPMemoryPressuresChrono": 63, "TcpExt TCPBacklogDrop": 74,
				"TcpExt TCPRcvCoalesce": 83, "TcpExt TCPOFOQueue": 84, "TcpExt TCPOFODrop": 85, "TcpExt TCPOFOMerge": 86,
				"TcpExt TCPFromZeroWindowAdv": 99, "TcpExt TCPToZeroWindowAdv": 100, "TcpExt TCPWantZeroWindowAdv": 101,
				"TcpExt TCPZeroWindowDrop": 121, "TcpExt TCPRcvQDrop": 122,
			},
		},
		{
			// Linux 4.14 lacks TCPMemoryPressuresChrono, TCPZeroWindowDrop and TCPRcvQDrop: absent, not 0.
			name: "older kernel", file: "netstat", fixture: "proc-old/net/netstat",
			want: map[string]uint64{
				"TcpExt PruneCalled": 50, "TcpExt RcvPruned": 60, "TcpExt OfoPruned": 70, "TcpExt ListenOverflows": 200,
				"TcpExt ListenDrops": 210, "TcpExt TCPRcvCollapsed": 540, "TcpExt TCPAbortOnMemory": 610,
				"TcpExt TCPMemoryPressures": 650, "TcpExt TCPBacklogDrop": 760, "TcpExt TCPRcvCoalesce": 840,
				"TcpExt TCPOFOQueue": 850, "TcpExt TCPOFODrop": 860, "TcpExt TCPOFOMerge": 870,
				"TcpExt TCPFromZeroWindowAdv": 990, "TcpExt TCPToZeroWindowAdv": 1000, "TcpExt TCPWantZeroWindowAdv": 1010,
			},
		},
		{
			// Fields and protocols we do not know are skipped, without checking their values.
			name: "unknown extra fields", file: "netstat", fixture: "parse/netstat-extra-fields",
			want: map[string]uint64{"TcpExt PruneCalled": 2, "TcpExt RcvPruned": 4},
		},
		{
			name: "huge values", file: "netstat", fixture: "parse/netstat-huge",
			want: map[string]uint64{"TcpExt PruneCalled": 1<<64 - 1, "TcpExt RcvPruned": 1<<53 + 1, "TcpExt OfoPruned": 0},
		},
		{name: "truncated values line", file: "netstat", fixture: "parse/netstat-truncated", wantErr: "truncated"},
		{name: "names line only", file: "netstat", fixture: "parse/netstat-names-only", wantErr: "no values line"},
		{name: "fewer values than names", file: "netstat", fixture: "proc-broken/net/netstat", wantErr: "TcpExt: 135 names but 134 values"},
		{name: "more values than names", file: "netstat", fixture: "parse/netstat-more-values", wantErr: "TcpExt: 2 names but 3 values"},
		{name: "beyond uint64", file: "netstat", fixture: "parse/netstat-overflow", wantErr: "overflows uint64"},
		{name: "negative", file: "netstat", fixture: "parse/netstat-negative", wantErr: `TcpExt PruneCalled: not a number: "-1"`},
		{name: "non-numeric", file: "netstat", fixture: "parse/netstat-nonnumeric", wantErr: `TcpExt RcvPruned: not a number: "abc"`},
		{name: "float", file: "netstat", fixture: "parse/netstat-float", wantErr: `"1e3"`},
		{name: "values of another protocol", file: "netstat", fixture: "parse/netstat-proto-mismatch", wantErr: "TcpExt names line followed by"},
		{name: "duplicate field", file: "netstat", fixture: "parse/netstat-duplicate", wantErr: "PruneCalled appears twice"},
		{name: "no TcpExt", file: "netstat", fixture: "parse/netstat-no-tcpext", wantErr: "no TcpExt lines"},
		{name: "no colon", file: "netstat", fixture: "parse/netstat-no-colon", wantErr: "does not start with"},
		{name: "empty", file: "netstat", fixture: "parse/netstat-empty", wantErr: "no TcpExt lines"},
		{
			// MaxConn is -1: a field we do not export may be negative.
			name: "snmp linux 6.18", file: "snmp", fixture: "proc-host/net/snmp",
			want: map[string]uint64{"Tcp InSegs": 11, "Tcp RetransSegs": 13, "Tcp InErrs": 14, "Tcp InCsumErrors": 16},
		},
		{
			name: "snmp without InCsumErrors", file: "snmp", fixture: "parse/snmp-old",
			want: map[string]uint64{"Tcp InSegs": 4774, "Tcp RetransSegs": 12, "Tcp InErrs": 1},
		},
		{name: "snmp without Tcp", file: "snmp", fixture: "parse/snmp-no-tcp", wantErr: "no Tcp lines"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseNetstatFile(tc.file, readFixture(t, tc.fixture))
			if !checkErr(t, err, tc.wantErr) {
				return
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("parsed fields (-want +got):\n%s", diff)
			}
		})
	}
}

func TestProcFileMissing(t *testing.T) {
	buf := getBuf()
	defer putBuf(buf)
	_, err := newProcFile("testdata/no-such-proc/net/netstat").read(buf)
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v, want an error matching os.ErrNotExist", err)
	}
	if !strings.Contains(err.Error(), "testdata/no-such-proc/net/netstat") {
		t.Errorf("error %q does not name the file", err)
	}
}

func TestProcFileGrowsBuffer(t *testing.T) {
	want := strings.Repeat("0123456789abcdef", 3000) // larger than the pooled buffer
	path := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
		t.Fatal(err)
	}
	small := make([]byte, 0, 16)
	got, err := newProcFile(path).read(&small)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("read %d bytes, want %d", len(got), len(want))
	}
}

// TestProcFileRereads: the kept descriptor sees new content, and a file that appears later is found.
func TestProcFileRereads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "value")
	f := newProcFile(path)
	buf := getBuf()
	defer putBuf(buf)
	if _, err := f.read(buf); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: got %v", err)
	}
	for _, content := range []string{"first value\n", "2\n"} {
		// Rewritten in place, as the kernel regenerates a /proc file on every read.
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := f.read(buf)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != content {
			t.Errorf("read %q, want %q", got, content)
		}
	}
}

// TestRealProcRereads: a kept /proc/net/snmp descriptor shows counters moving with loopback traffic.
func TestRealProcRereads(t *testing.T) {
	f := newProcFile("/proc/net/snmp")
	segs := func() uint64 {
		t.Helper()
		buf := getBuf()
		defer putBuf(buf)
		got, err := parseNetstatFile("snmp", mustRead(t, f, buf))
		if err != nil {
			t.Fatal(err)
		}
		return got["Tcp InSegs"]
	}
	before := segs()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if after := segs(); after <= before {
		t.Errorf("Tcp InSegs %d after a loopback connection, %d before", after, before)
	}
}

func mustRead(t *testing.T, f *procFile, buf *[]byte) []byte {
	t.Helper()
	b, err := f.read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNetstatCollector(t *testing.T) {
	for _, tc := range []struct {
		name, proc string
		want       string
	}{
		{
			name: "linux 6.18", proc: "testdata/proc-host",
			want: `
sockbuf_tcp_prune_called_total 6
sockbuf_tcp_rcv_pruned_total 7
sockbuf_tcp_ofo_pruned_total 8
sockbuf_tcp_rcv_collapsed_total 50
sockbuf_tcp_rcvq_drop_total 122
sockbuf_tcp_zero_window_drop_total 121
sockbuf_tcp_memory_pressure_seconds_total 0.063
sockbuf_tcp_in_segments_total 11
sockbuf_tcp_in_checksum_errors_total 16
`,
		},
		{
			name: "older kernel", proc: "testdata/proc-old",
			want: `
sockbuf_tcp_prune_called_total 50
sockbuf_tcp_retransmitted_segments_total 12
`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := asPromCollector(newNetstatCollector(Config{ProcPath: tc.proc}))
			// Only a few series are compared for readability; absence of the newer fields on the older kernel
			// is checked by the names queried, which CollectAndCompare requires to match exactly.
			want := withHeaders(t, tc.want)
			names := metricNames(want)
			if tc.name == "older kernel" {
				names = append(names, "sockbuf_tcp_rcvq_drop_total", "sockbuf_tcp_zero_window_drop_total",
					"sockbuf_tcp_memory_pressure_seconds_total")
			}
			if err := testutil.CollectAndCompare(c, strings.NewReader(want), names...); err != nil {
				t.Error(err)
			}
			if n := testutil.CollectAndCount(c); n != wantNetstatCount(tc.proc) {
				t.Errorf("got %d series, want %d", n, wantNetstatCount(tc.proc))
			}
		})
	}
}

func wantNetstatCount(proc string) int {
	if strings.HasSuffix(proc, "proc-old") {
		return len(netstatFields) - 3 // no TCPMemoryPressuresChrono, TCPZeroWindowDrop, TCPRcvQDrop
	}
	return len(netstatFields)
}

// withHeaders prepends to samples (exposition lines without comments) the # HELP and # TYPE lines of their
// metrics, taken from the specs, so that the tests compare values and leave wording to docs/metrics.md.
func withHeaders(t *testing.T, samples string) string {
	t.Helper()
	byName := map[string]MetricSpec{}
	for _, m := range Metrics() {
		byName[m.FullName()] = m
	}
	var b strings.Builder
	done := map[string]bool{}
	for _, line := range strings.Split(samples, "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), "{")
		name, _, _ = strings.Cut(name, " ")
		if name == "" || done[name] {
			continue
		}
		m, ok := byName[name]
		if !ok {
			t.Fatalf("no spec for %s", name)
		}
		done[name] = true
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, m.Help, name, m.Type)
	}
	return b.String() + samples
}

// metricNames lists the metric names of an exposition text, in order.
func metricNames(expo string) []string {
	var names []string
	for _, line := range strings.Split(expo, "\n") {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			names = append(names, strings.Fields(rest)[0])
		}
	}
	return names
}

// updater adapts a Collector to prometheus.Collector for testutil; Update errors fail the collection.
type updater struct{ c Collector }

func asPromCollector(c Collector) prometheus.Collector { return updater{c} }

func (u updater) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(u, ch) }

func (u updater) Collect(ch chan<- prometheus.Metric) {
	if err := u.c.Update(ch); err != nil {
		ch <- prometheus.NewInvalidMetric(prometheus.NewDesc("sockbuf_update_error", "Update failed.", nil, nil), err)
	}
}

// Tests across the host collectors.

func newHostExporter(t testing.TB, proc string) *Exporter {
	t.Helper()
	e, err := New(Config{ProcPath: proc}, hostCollectors, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestHostCollectorsLint(t *testing.T) {
	for _, proc := range []string{"testdata/proc-host", "testdata/proc-old", "testdata/proc-netns", "/proc"} {
		t.Run(proc, func(t *testing.T) {
			problems, err := testutil.CollectAndLint(newHostExporter(t, proc))
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range problems {
				t.Errorf("lint: %s: %s", p.Metric, p.Text)
			}
		})
	}
}

// TestHostCollectorsPromtool runs `promtool check metrics` on a scrape of the real /proc, as the issue asks.
func TestHostCollectorsPromtool(t *testing.T) {
	promtool := testenv.RequireBinary(t, "promtool", "prometheus")
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(newHostExporter(t, "/proc"))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	enc := expfmt.NewEncoder(&text, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = &text
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

func TestHostCollectorsFixtures(t *testing.T) {
	for _, proc := range []string{"testdata/proc-host", "testdata/proc-old", "testdata/proc-netns"} {
		t.Run(proc, func(t *testing.T) {
			success, others := successByCollector(t, newHostExporter(t, proc))
			want := map[string]float64{"netstat": 1, "sockstat": 1, "softnet": 1, "sysctl": 1}
			if diff := cmp.Diff(want, success); diff != "" {
				t.Errorf("sockbuf_scrape_collector_success (-want +got):\n%s", diff)
			}
			if others == 0 {
				t.Error("no metrics besides the exporter's own")
			}
		})
	}
}

// TestBrokenCollectorLeavesOthers: a garbled /proc/net/netstat fails only the netstat collector.
func TestBrokenCollectorLeavesOthers(t *testing.T) {
	e := newHostExporter(t, "testdata/proc-broken")
	success, _ := successByCollector(t, e)
	want := map[string]float64{"netstat": 0, "sockstat": 1, "softnet": 1, "sysctl": 1}
	if diff := cmp.Diff(want, success); diff != "" {
		t.Errorf("sockbuf_scrape_collector_success (-want +got):\n%s", diff)
	}
	if n := testutil.CollectAndCount(e, "sockbuf_tcp_prune_called_total", "sockbuf_tcp_in_segments_total"); n != 0 {
		t.Errorf("broken netstat collector still exported %d series", n)
	}
	if n := testutil.CollectAndCount(e, "sockbuf_tcp_memory_bytes", "sockbuf_softnet_dropped_total", "sockbuf_net_core_rmem_max_bytes"); n != 4 {
		t.Errorf("other collectors exported %d of the 4 series checked", n)
	}
}

func TestMissingProcFailsEveryCollector(t *testing.T) {
	success, _ := successByCollector(t, newHostExporter(t, "testdata/no-such-proc"))
	want := map[string]float64{"netstat": 0, "sockstat": 0, "softnet": 0, "sysctl": 0}
	if diff := cmp.Diff(want, success); diff != "" {
		t.Errorf("sockbuf_scrape_collector_success (-want +got):\n%s", diff)
	}
}

// TestHostCollectorsConcurrentScrapes shares one exporter (and its kept /proc descriptors and buffer pool)
// between parallel scrapes; run with -race.
func TestHostCollectorsConcurrentScrapes(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newHostExporter(t, "/proc"))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				mfs, err := reg.Gather()
				if err != nil {
					t.Error(err)
					return
				}
				for _, mf := range mfs {
					if mf.GetName() == "sockbuf_scrape_collector_success" {
						for _, m := range mf.GetMetric() {
							if m.GetGauge().GetValue() != 1 {
								t.Errorf("collector %s failed in a concurrent scrape", m.GetLabel()[0].GetValue())
							}
						}
					}
				}
			}
		})
	}
	wg.Wait()
}

// TestHostCollectorsRealProc is a smoke test against the running kernel.
func TestHostCollectorsRealProc(t *testing.T) {
	for _, name := range hostCollectors {
		t.Run(name, func(t *testing.T) {
			c, err := factories[name].build(Config{ProcPath: "/proc"}, discardLogger())
			if err != nil {
				t.Fatal(err)
			}
			ch := make(chan prometheus.Metric, 1024)
			if err := c.Update(ch); err != nil {
				t.Fatalf("Update on /proc: %v", err)
			}
			close(ch)
			if len(ch) == 0 {
				t.Fatal("no metrics from /proc")
			}
		})
	}
	// Fields every kernel the exporter supports has.
	e := newHostExporter(t, "/proc")
	for _, name := range []string{
		"sockbuf_tcp_prune_called_total", "sockbuf_tcp_rcv_collapsed_total", "sockbuf_tcp_in_segments_total",
		"sockbuf_tcp_memory_bytes", "sockbuf_tcp_sockets_inuse", "sockbuf_softnet_dropped_total", "sockbuf_tcp_rmem_bytes",
	} {
		if testutil.CollectAndCount(e, name) == 0 {
			t.Errorf("%s missing from a scrape of /proc", name)
		}
	}
}

package collector

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
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
	if err := u.c.Update(context.Background(), ch); err != nil {
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
			if err := c.Update(context.Background(), ch); err != nil {
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

package main

// End-to-end tests of issue 2: the built binary, inside a network namespace the test creates, against the
// real kernel and a real Prometheus. They skip when run without root or without the tools (ip, go, nft,
// prometheus, promtool) and fail instead when CI is set.

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockbuf/sockbuf_exporter/collector"
	"github.com/sockbuf/sockbuf_exporter/internal/e2e"
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
	"github.com/sockbuf/sockbuf_exporter/internal/trafficgen"
)

func TestMain(m *testing.M) { os.Exit(e2e.Main(m)) }

// startInNetNS creates a namespace and runs the exporter in it with args.
func startInNetNS(t *testing.T, args ...string) (*testenv.NetNS, *e2e.Exporter) {
	t.Helper()
	e2e.Require(t)
	ns := testenv.NewNetNS(t)
	return ns, e2e.StartExporter(t, ns, args...)
}

// pruneMetrics maps the TcpExt fields the pruning load moves to the metrics that export them.
var pruneMetrics = []struct{ field, metric string }{
	{"PruneCalled", "sockbuf_tcp_prune_called_total"},
	{"RcvPruned", "sockbuf_tcp_rcv_pruned_total"},
	{"TCPRcvCollapsed", "sockbuf_tcp_rcv_collapsed_total"},
	{"OfoPruned", "sockbuf_tcp_ofo_pruned_total"},
}

// kernelTcpExt reads the namespace's TcpExt counters the way a person would, from outside the test
// process: `ip netns exec NS cat /proc/net/netstat`.
func kernelTcpExt(t *testing.T, ns *testenv.NetNS) map[string]uint64 {
	t.Helper()
	n, err := trafficgen.ParseNetstat(strings.NewReader(ns.MustRun(t, "cat", "/proc/net/netstat")))
	if err != nil {
		t.Fatal(err)
	}
	return n["TcpExt"]
}

// waitQuiescent waits until the prune counters stop moving (two reads 200ms apart agree), within 5s.
func waitQuiescent(t *testing.T, ns *testenv.NetNS) {
	t.Helper()
	prev := kernelTcpExt(t, ns)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		cur := kernelTcpExt(t, ns)
		same := true
		for _, p := range pruneMetrics {
			same = same && cur[p.field] == prev[p.field]
		}
		if same {
			return
		}
		prev = cur
	}
	t.Fatal("prune counters still moving 5s after the traffic stopped")
}

// TestPruneCountersMatchKernel drives pruning inside the namespace, stops it, and checks that the exporter's
// counters equal the kernel's at the same quiescent moment and rose by the same amount, more than zero.
func TestPruneCountersMatchKernel(t *testing.T) {
	testenv.RequireBinary(t, "nft", "nftables")
	ns, exp := startInNetNS(t)
	kBefore := kernelTcpExt(t, ns)
	sBefore := exp.Scrape(t)

	var res, dataRes, ofoRes trafficgen.Result
	err := ns.Do(func() error {
		ctx := context.Background()
		base, err := trafficgen.ReadNetstat()
		if err != nil {
			return err
		}
		moved := func(fields ...string) func() bool { return trafficgen.Moved(base, fields...) }
		// The 1-byte load collapses and prunes queues within a second. RcvPruned and OfoPruned need data
		// that does not fit even after collapsing: PruneData and PruneOfo arrange that on every run.
		if res, err = trafficgen.Prune(ctx, trafficgen.Options{Duration: 20 * time.Second,
			Until: moved("PruneCalled", "TCPRcvCollapsed")}); err != nil {
			return err
		}
		if dataRes, err = trafficgen.PruneData(ctx, trafficgen.Options{Conns: 8, Duration: 10 * time.Second,
			Until: moved("RcvPruned")}); err != nil {
			return err
		}
		ofoRes, err = trafficgen.PruneOfo(ctx, trafficgen.Options{Conns: 8, Duration: 10 * time.Second,
			Until: moved("OfoPruned")})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("traffic: 1-byte load %s; over a shrunk buffer %s; behind a hole %s", res, dataRes, ofoRes)
	waitQuiescent(t, ns)

	kAfter := kernelTcpExt(t, ns)
	sAfter := exp.Scrape(t)
	// The scrape itself is loopback traffic in the namespace: it moves InSegs, but must not move these.
	again := kernelTcpExt(t, ns)
	for _, p := range pruneMetrics {
		if again[p.field] != kAfter[p.field] {
			t.Fatalf("%s moved during the scrape: %d then %d", p.field, kAfter[p.field], again[p.field])
		}
	}
	for _, p := range pruneMetrics {
		kernelRise := kAfter[p.field] - kBefore[p.field]
		if !sAfter.Has(p.metric) {
			t.Errorf("%s missing from the scrape", p.metric)
			continue
		}
		got := uint64(sAfter.Sum(p.metric))
		rise := got - uint64(sBefore.Sum(p.metric))
		t.Logf("%-16s kernel %d (rose %d), exporter %d (rose %d)", p.field, kAfter[p.field], kernelRise, got, rise)
		if got != kAfter[p.field] {
			t.Errorf("%s = %d, kernel's %s = %d", p.metric, got, p.field, kAfter[p.field])
		}
		if rise != kernelRise {
			t.Errorf("%s rose by %d, kernel's %s by %d", p.metric, rise, p.field, kernelRise)
		}
		if kernelRise == 0 {
			t.Errorf("%s did not rise: the traffic did not prune (%s)", p.field, res)
		}
	}
}

// TestPrometheusSeesPruneRate has a real Prometheus scrape the binary every second while pruning goes on,
// until rate(sockbuf_tcp_prune_called_total[1m]) > 0 answers with a sample.
func TestPrometheusSeesPruneRate(t *testing.T) {
	ns, exp := startInNetNS(t)
	prom := e2e.StartPrometheus(t, ns, e2e.PrometheusConfig{Targets: []string{exp.Addr}})
	prom.WaitTargetsUp(t, 15*time.Second)

	// Renewing the connections every second keeps the kernel pruning between scrapes; the traffic stops
	// as soon as Prometheus has seen the rate (at the latest after 30s).
	stop := trafficgen.Background(ns.Do, trafficgen.Options{Duration: 30 * time.Second, Renew: time.Second})
	defer func() {
		res, err := stop()
		if err != nil {
			t.Errorf("traffic: %v", err)
		}
		t.Logf("traffic: %s", res)
	}()
	got := prom.WaitQuery(t, `rate(sockbuf_tcp_prune_called_total[1m]) > 0`, 30*time.Second)
	if got[0].Metric["instance"] != exp.Addr {
		t.Errorf("rate for instance %q, want %q", got[0].Metric["instance"], exp.Addr)
	}
	t.Logf("rate(sockbuf_tcp_prune_called_total[1m]) = %g", got[0].Value)
}

// TestPromtoolCheckMetrics lints a real scrape with promtool.
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool := testenv.RequireBinary(t, "promtool", "prometheus")
	_, exp := startInNetNS(t)
	text := exp.ScrapeText(t)
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

func TestLandingPage(t *testing.T) {
	_, exp := startInNetNS(t)
	code, body := exp.Get(t, "/", nil)
	if code != http.StatusOK {
		t.Fatalf("GET /: status %d", code)
	}
	if !bytes.Contains(body, []byte(`href="/metrics"`)) {
		t.Errorf("landing page does not link /metrics:\n%s", body)
	}
}

// TestDisabledCollector checks that --no-collector.netstat removes the netstat metrics and nothing else.
func TestDisabledCollector(t *testing.T) {
	_, exp := startInNetNS(t, "--no-collector.netstat")
	m := exp.Scrape(t)
	for _, name := range m.Names() {
		if strings.HasPrefix(name, "sockbuf_tcp_") && strings.HasSuffix(name, "_total") {
			t.Errorf("netstat metric %s still exported", name)
		}
	}
	if got := m.Select("sockbuf_scrape_collector_success", map[string]string{"collector": "netstat"}); len(got) != 0 {
		t.Errorf("netstat still reported as a collector: %v", got)
	}
	if got := m.Select("sockbuf_scrape_collector_success", map[string]string{"collector": "sockstat"}); len(got) != 1 {
		t.Errorf("sockstat collector missing: %v", m.Select("sockbuf_scrape_collector_success", nil))
	}
}

// enabledCollectors are the collectors on by default, as the binary enables them.
func enabledCollectors() []string {
	var names []string
	for _, c := range collector.Available() {
		if c.DefaultEnabled {
			names = append(names, c.Name)
		}
	}
	return names
}

// TestScrapeTimeoutHeader checks that a scrape announcing a 1ms timeout still answers quickly with a valid
// body in which every collector reports success or failure.
func TestScrapeTimeoutHeader(t *testing.T) {
	_, exp := startInNetNS(t)
	start := time.Now()
	code, body := exp.Get(t, "/metrics", http.Header{"X-Prometheus-Scrape-Timeout-Seconds": {"0.001"}})
	took := time.Since(start)
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	if took > time.Second {
		t.Errorf("scrape with a 1ms timeout took %s", took)
	}
	m, err := e2e.ParseMetrics(body)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range enabledCollectors() {
		got := m.Select("sockbuf_scrape_collector_success", map[string]string{"collector": name})
		if len(got) != 1 {
			t.Errorf("collector %s: no success series in a deadline-bound scrape", name)
		}
	}
	t.Logf("answered in %s; success: %v", took, m.Select("sockbuf_scrape_collector_success", nil))
}

func TestConcurrentScrapes(t *testing.T) {
	_, exp := startInNetNS(t)
	const parallel = 8
	var wg sync.WaitGroup
	errs := make(chan error, parallel)
	for range parallel {
		wg.Go(func() {
			code, body, err := getBody(exp, "/metrics")
			if err == nil && code != http.StatusOK {
				err = fmt.Errorf("status %d", code)
			}
			if err == nil {
				var m e2e.Metrics
				if m, err = e2e.ParseMetrics(body); err == nil && !m.Has("sockbuf_tcp_prune_called_total") {
					err = fmt.Errorf("no sockbuf_tcp_prune_called_total in %v", m.Names())
				}
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// getBody is Exporter.Get for goroutines other than the test's, which must not call t.Fatal.
func getBody(exp *e2e.Exporter, path string) (int, []byte, error) {
	resp, err := exp.Client.Get(exp.URL + path)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, err = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.Bytes(), err
}

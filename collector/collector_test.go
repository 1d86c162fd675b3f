package collector

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/sockbuf/sockbuf_exporter/internal/collectortest"
)

// successByCollector scrapes c and returns sockbuf_scrape_collector_success by collector, plus the number of
// other samples.
func successByCollector(t *testing.T, c prometheus.Collector) (map[string]float64, int) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	success := map[string]float64{}
	others := 0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "sockbuf_scrape_collector_success":
				success[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
			case "sockbuf_scrape_collector_duration_seconds":
			default:
				others++
			}
		}
	}
	return success, others
}

func TestFailingCollectorsDoNotTakeOthersDown(t *testing.T) {
	e := NewExporter(map[string]Collector{
		"good": collectortest.Emits(1),
		"bad": collectortest.Fake{Fn: func(ch chan<- prometheus.Metric) error {
			// Partial output of a failing collector must not reach the scrape.
			ch <- prometheus.MustNewConstMetric(collectortest.Desc, prometheus.GaugeValue, 2)
			return errors.New("reading /proc/net/netstat: unexpected EOF")
		}},
		"panics": collectortest.Fake{Fn: func(ch chan<- prometheus.Metric) error {
			panic("collector bug")
		}},
	}, 0, discardLogger())
	got, others := successByCollector(t, e)
	want := map[string]float64{"good": 1, "bad": 0, "panics": 0}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("success (-want +got):\n%s", diff)
	}
	if others != 1 {
		t.Errorf("got %d samples besides the scrape metrics, want 1 (the good collector's only)", others)
	}
}

func TestDeadlineAbandonsSlowCollector(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	e := NewExporter(map[string]Collector{
		"fast": collectortest.Emits(1),
		"slow": collectortest.Fake{Fn: func(ch chan<- prometheus.Metric) error {
			<-release // blocks until the test ends: only the deadline can end the scrape
			ch <- prometheus.MustNewConstMetric(collectortest.Desc, prometheus.GaugeValue, 2)
			return nil
		}},
	}, 0, discardLogger())
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	got, others := successByCollector(t, e.WithContext(ctx))
	if diff := cmp.Diff(map[string]float64{"fast": 1, "slow": 0}, got); diff != "" {
		t.Errorf("success (-want +got):\n%s", diff)
	}
	if others != 1 {
		t.Errorf("got %d samples besides the scrape metrics, want 1", others)
	}
}

func TestExporterLint(t *testing.T) {
	e := NewExporter(map[string]Collector{"good": collectortest.Emits(1)}, 0, discardLogger())
	problems, err := testutil.CollectAndLint(e)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

func TestNewRejectsUnknownCollector(t *testing.T) {
	_, err := New(Config{}, []string{"no-such-collector"}, nil)
	if err == nil || !strings.Contains(err.Error(), "no-such-collector") {
		t.Fatalf("New with an unknown collector: err = %v, want one naming it", err)
	}
}

func TestMetricSpecsAreUniqueAndDocumented(t *testing.T) {
	seen := map[string]bool{}
	for _, m := range Metrics() {
		if seen[m.Name] {
			t.Errorf("metric %s declared twice", m.Name)
		}
		seen[m.Name] = true
		if m.Help == "" || m.Source == "" {
			t.Errorf("metric %s: empty help or source", m.Name)
		}
		switch m.Type {
		case Counter, Gauge, Histogram:
		default:
			t.Errorf("metric %s: type %q", m.Name, m.Type)
		}
		if m.Type == Counter && !strings.HasSuffix(m.Name, "_total") {
			t.Errorf("counter %s does not end in _total", m.Name)
		}
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestConcurrentScrapesShareOneRun: scrapes that arrive while a collector runs wait for that run and get its
// result, instead of running the collector once each.
func TestConcurrentScrapesShareOneRun(t *testing.T) {
	var runs atomic.Int32
	release := make(chan struct{})
	e := NewExporter(map[string]Collector{
		"slow": collectortest.Fake{Fn: func(ch chan<- prometheus.Metric) error {
			runs.Add(1)
			<-release
			ch <- prometheus.MustNewConstMetric(collectortest.Desc, prometheus.GaugeValue, 1)
			return nil
		}},
	}, 0, discardLogger())
	const scrapes = 20
	var wg sync.WaitGroup
	results := make(chan map[string]float64, scrapes)
	for range scrapes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, _ := successByCollector(t, e)
			results <- got
		}()
	}
	for runs.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // let the other scrapes arrive while the run is blocked
	close(release)
	wg.Wait()
	close(results)
	for got := range results {
		if got["slow"] != 1 {
			t.Errorf("a scrape got success %v, want 1", got["slow"])
		}
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("%d concurrent scrapes ran the collector %d times, want once", scrapes, n)
	}
}

// TestResultReusedWithinMaxAge: a finished result is served again while younger than the maximum age, and
// not with age 0.
func TestResultReusedWithinMaxAge(t *testing.T) {
	for _, tc := range []struct {
		maxAge time.Duration
		want   int32
	}{{0, 3}, {time.Hour, 1}} {
		var runs atomic.Int32
		e := NewExporter(map[string]Collector{"c": collectortest.Fake{Fn: func(ch chan<- prometheus.Metric) error {
			runs.Add(1)
			return nil
		}}}, tc.maxAge, discardLogger())
		for range 3 {
			successByCollector(t, e)
		}
		if got := runs.Load(); got != tc.want {
			t.Errorf("max age %v: 3 scrapes ran the collector %d times, want %d", tc.maxAge, got, tc.want)
		}
	}
}

// TestStuckCollectorHoldsOneGoroutine: a collector blocked for good (a FIFO where a /proc file should be) does
// not cost a goroutine per scrape, every scrape answers at its deadline, and the failure reports how long
// the collector had been running, not 0.
func TestStuckCollectorHoldsOneGoroutine(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	var runs atomic.Int32
	e := NewExporter(map[string]Collector{"stuck": collectortest.Fake{Fn: func(ch chan<- prometheus.Metric) error {
		runs.Add(1)
		<-release
		return nil
	}}}, 0, discardLogger())
	scrape := func() (success, duration float64) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		reg := prometheus.NewRegistry()
		reg.MustRegister(e.WithContext(ctx))
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			switch mf.GetName() {
			case "sockbuf_scrape_collector_success":
				success = mf.GetMetric()[0].GetGauge().GetValue()
			case "sockbuf_scrape_collector_duration_seconds":
				duration = mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		return success, duration
	}
	scrape()
	before := runtime.NumGoroutine()
	var lastDuration float64
	for range 20 {
		success, duration := scrape()
		if success != 0 {
			t.Fatalf("stuck collector reported success %v", success)
		}
		lastDuration = duration
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("the stuck collector was started %d times, want once", n)
	}
	if after := runtime.NumGoroutine(); after > before+2 {
		t.Errorf("goroutines went from %d to %d over 20 scrapes of a stuck collector", before, after)
	}
	if lastDuration < 0.5 {
		t.Errorf("duration of the stuck collector %vs, want the time it has been running (over 0.5 s by now)", lastDuration)
	}
}

// TestScrapeEndedSaysWhy: a deadline and a client that went away are told apart.
func TestScrapeEndedSaysWhy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	<-ctx.Done()
	if err := scrapeEnded(ctx); !strings.Contains(err.Error(), "deadline") {
		t.Errorf("deadline: %v", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if err := scrapeEnded(ctx); !strings.Contains(err.Error(), "client went away") {
		t.Errorf("cancelled: %v", err)
	}
}

// TestGathererSharesFamilies: scrapes that get the same runs get the same families, built once; a scrape
// that gets another run gets new ones.
func TestGathererSharesFamilies(t *testing.T) {
	var runs atomic.Int32
	e := NewExporter(map[string]Collector{"c": collectortest.Fake{Fn: func(ch chan<- prometheus.Metric) error {
		ch <- prometheus.MustNewConstMetric(collectortest.Desc, prometheus.GaugeValue, float64(runs.Add(1)))
		return nil
	}}}, time.Hour, discardLogger())
	gather := func() []*dto.MetricFamily {
		fams, err := e.Gatherer(context.Background()).Gather()
		if err != nil {
			t.Fatal(err)
		}
		return fams
	}
	first, second := gather(), gather()
	if len(first) == 0 || &first[0] != &second[0] {
		t.Errorf("two scrapes of the same run built their families twice")
	}
	e.flights["c"].maxAge = 0
	third := gather()
	if &third[0] == &first[0] {
		t.Errorf("a scrape of a new run got the old run's families")
	}
	if n := runs.Load(); n != 2 {
		t.Errorf("%d runs, want 2", n)
	}
}

package collector

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type fakeCollector struct {
	update func(ch chan<- prometheus.Metric) error
}

func (f fakeCollector) Update(ch chan<- prometheus.Metric) error { return f.update(ch) }

var fakeDesc = prometheus.NewDesc("sockbuf_fake_value", "A value from a fake collector.", nil, nil)

func emits(v float64) fakeCollector {
	return fakeCollector{update: func(ch chan<- prometheus.Metric) error {
		ch <- prometheus.MustNewConstMetric(fakeDesc, prometheus.GaugeValue, v)
		return nil
	}}
}

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
	e := newExporter(map[string]Collector{
		"good": emits(1),
		"bad": fakeCollector{update: func(ch chan<- prometheus.Metric) error {
			// Partial output of a failing collector must not reach the scrape.
			ch <- prometheus.MustNewConstMetric(fakeDesc, prometheus.GaugeValue, 2)
			return errors.New("reading /proc/net/netstat: unexpected EOF")
		}},
		"panics": fakeCollector{update: func(ch chan<- prometheus.Metric) error {
			panic("collector bug")
		}},
	}, nil)
	e.logger = discardLogger()
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
	e := newExporter(map[string]Collector{
		"fast": emits(1),
		"slow": fakeCollector{update: func(ch chan<- prometheus.Metric) error {
			<-release // blocks until the test ends: only the deadline can end the scrape
			ch <- prometheus.MustNewConstMetric(fakeDesc, prometheus.GaugeValue, 2)
			return nil
		}},
	}, discardLogger())
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
	e := newExporter(map[string]Collector{"good": emits(1)}, discardLogger())
	problems, err := testutil.CollectAndLint(e)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

func TestScrapeBudget(t *testing.T) {
	for _, tc := range []struct {
		header string
		offset time.Duration
		want   time.Duration
		ok     bool
	}{
		{"", time.Second, 0, false},
		{"garbage", time.Second, 0, false},
		{"-1", time.Second, 0, false},
		{"0", time.Second, 0, false},
		{"1e9", time.Second, 0, false},
		{"10", 500 * time.Millisecond, 9500 * time.Millisecond, true},
		{"0.5", 500 * time.Millisecond, 250 * time.Millisecond, true},
		{"1.5", 0, 1500 * time.Millisecond, true},
	} {
		got, ok := ScrapeBudget(tc.header, tc.offset)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ScrapeBudget(%q, %v) = %v, %v; want %v, %v", tc.header, tc.offset, got, ok, tc.want, tc.ok)
		}
	}
}

func TestHandlerHonoursTimeoutHeaderAndLimit(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 4)
	e := newExporter(map[string]Collector{
		"slow": fakeCollector{update: func(ch chan<- prometheus.Metric) error {
			started <- struct{}{}
			<-release
			return nil
		}},
	}, discardLogger())
	h := NewHandler(e, prometheus.NewRegistry(), HandlerOpts{MaxRequests: 1, TimeoutOffset: 0}, discardLogger())

	// With a 0.2 s timeout the handler must answer although the collector never finishes.
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", "0.2")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d, want 200", rec.Code)
	}
	if !strings.Contains(rec.Body.String(), `sockbuf_scrape_collector_success{collector="slow"} 0`) {
		t.Errorf("timed-out collector not reported as failed:\n%s", rec.Body.String())
	}
	<-started

	// A scrape without a deadline holds the only slot; a second one is turned away at once.
	done := make(chan int)
	go func() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		done <- rec.Code
	}()
	<-started
	rec2 := httptest.NewRecorder()
	h.ServeHTTP(rec2, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec2.Code != http.StatusServiceUnavailable {
		t.Errorf("second concurrent scrape: status %d, want 503", rec2.Code)
	}
	close(release)
	if code := <-done; code != http.StatusOK {
		t.Errorf("first scrape: status %d, want 200", code)
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

func TestAcceptsGzip(t *testing.T) {
	for header, want := range map[string]bool{
		"":                          false,
		"gzip":                      true,
		"identity":                  false,
		"gzip, deflate":             true,
		"deflate, GZIP":             true,
		"gzip;q=0":                  false,
		"gzip; q=0.000":             false,
		"gzip;q=0.5":                true,
		"*":                         true,
		"zstd, identity;q=1, *;q=0": false,
	} {
		if got := acceptsGzip(header); got != want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", header, got, want)
		}
	}
}

func TestHandlerGzip(t *testing.T) {
	e := newExporter(map[string]Collector{"good": emits(1)}, discardLogger())
	h := NewHandler(e, prometheus.NewRegistry(), HandlerOpts{}, discardLogger())
	for _, enc := range []string{"gzip", ""} {
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		req.Header.Set("Accept-Encoding", enc)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		body := rec.Body.Bytes()
		if enc == "gzip" {
			if got := rec.Header().Get("Content-Encoding"); got != "gzip" {
				t.Fatalf("Content-Encoding = %q, want gzip", got)
			}
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if body, err = io.ReadAll(zr); err != nil {
				t.Fatal(err)
			}
		} else if got := rec.Header().Get("Content-Encoding"); got != "" {
			t.Fatalf("Content-Encoding = %q without Accept-Encoding", got)
		}
		if !strings.Contains(string(body), "sockbuf_fake_value 1") {
			t.Errorf("Accept-Encoding %q: body lacks the metric:\n%s", enc, body)
		}
	}
}

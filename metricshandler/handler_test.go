package metricshandler

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sockbuf/sockbuf_exporter/collector"
	"github.com/sockbuf/sockbuf_exporter/internal/collectortest"
)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

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
		{"10", 500 * time.Millisecond, 9500 * time.Millisecond, true},
		{"0.5", 500 * time.Millisecond, 250 * time.Millisecond, true},
		{"1.5", 0, 1500 * time.Millisecond, true},
		// Not a positive finite number: absent, so the collectors get their default deadline.
		{"NaN", 0, 0, false},
		{"nan", 0, 0, false},
		{"Inf", 0, 0, false},
		{"-Inf", 0, 0, false},
		{"+Inf", 0, 0, false},
		// Clamped into [MinScrapeTimeout, MaxScrapeTimeout].
		{"1e-300", 0, MinScrapeTimeout, true},
		{"1e9", 0, MaxScrapeTimeout, true},
		{"86401", 500 * time.Millisecond, MaxScrapeTimeout - 500*time.Millisecond, true},
		{"600", 0, MaxScrapeTimeout, true},
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
	e := collector.NewExporter(map[string]collector.Collector{
		"slow": collectortest.Fake{Fn: func(ch chan<- prometheus.Metric) error {
			started <- struct{}{}
			<-release
			return nil
		}},
	}, 0, discardLogger())
	h := New(e, prometheus.NewRegistry(), Opts{MaxRequests: 1, TimeoutOffset: 0}, discardLogger())

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

	close(release)
}

// blockingScoper's collection blocks until release is closed; entered gets a value when one starts.
type blockingScoper struct {
	entered chan struct{}
	release chan struct{}
}

func (b blockingScoper) GatherShared(context.Context) ([]*dto.MetricFamily, uint64, error) {
	b.entered <- struct{}{}
	<-b.release
	return nil, 0, nil
}

func TestHandlerLimitsParallelScrapes(t *testing.T) {
	b := blockingScoper{entered: make(chan struct{}, 4), release: make(chan struct{})}
	h := New(b, prometheus.NewRegistry(), Opts{MaxRequests: 1}, discardLogger())
	done := make(chan int, 1)
	go func() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		done <- rec.Code
	}()
	<-b.entered // the first scrape holds the only slot
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("second concurrent scrape: status %d, want 503", rec.Code)
	}
	close(b.release)
	if code := <-done; code != http.StatusOK {
		t.Errorf("first scrape: status %d, want 200", code)
	}
}

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
	e := collector.NewExporter(map[string]collector.Collector{"good": collectortest.Emits(1)}, 0, discardLogger())
	h := New(e, prometheus.NewRegistry(), Opts{}, discardLogger())
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

// countingGatherer counts its Gather calls.
type countingGatherer struct{ n *atomic.Int32 }

func (c countingGatherer) Gather() ([]*dto.MetricFamily, error) {
	c.n.Add(1)
	return nil, nil
}

// TestSharedRunsShareTheAnswer: scrapes that get the same runs of every collector get one answer, encoded
// once per format; a scrape of a new run is encoded anew.
func TestSharedRunsShareTheAnswer(t *testing.T) {
	var base atomic.Int32
	e := collector.NewExporter(map[string]collector.Collector{"good": collectortest.Emits(1)}, time.Hour, discardLogger())
	h := New(e, countingGatherer{&base}, Opts{}, discardLogger())
	get := func(enc string) string {
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		req.Header.Set("Accept-Encoding", enc)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d", rec.Code)
		}
		return rec.Header().Get("Content-Encoding") + "|" + rec.Body.String()
	}
	plain, again := get(""), get("")
	zipped, zippedAgain := get("gzip"), get("gzip")
	if plain != again || zipped != zippedAgain || !strings.HasPrefix(zipped, "gzip|") {
		t.Errorf("answers of one run differ")
	}
	if n := base.Load(); n != 2 {
		t.Errorf("the base registry was gathered %d times for 4 scrapes of one run in 2 encodings, want 2", n)
	}
}

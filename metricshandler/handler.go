// Package metricshandler serves the exporter's metrics over HTTP: one registry per request, so that the
// collectors stop at the deadline Prometheus announces; a bound on parallel scrapes; gzip at the fastest level.
package metricshandler

import (
	"compress/gzip"
	"context"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// Scoper gives the metric families of one scrape that stops when ctx ends (collector.Exporter). gen is the
// same, and not 0, for scrapes that got the very same families (concurrent scrapes sharing every
// collector's run); 0 when the families are this scrape's own.
type Scoper interface {
	GatherShared(ctx context.Context) (fams []*dto.MetricFamily, gen uint64, err error)
}

// Opts configures the handler.
type Opts struct {
	// MaxRequests bounds parallel scrapes; 0 means no bound.
	MaxRequests int
	// TimeoutOffset is kept back from Prometheus' scrape timeout so that the answer arrives in time.
	TimeoutOffset time.Duration
}

// New serves the exporter's metrics plus those of base (build info, Go runtime, process). Each request's
// collectors stop at the deadline Prometheus announces in the X-Prometheus-Scrape-Timeout-Seconds header.
// Requests that get the very same families (a burst of concurrent scrapes sharing every collector's run)
// get the very same answer too, encoded (and compressed) once: its base metrics are those of the first of
// them, milliseconds older than the others'.
func New(e Scoper, base prometheus.Gatherer, opts Opts, logger *slog.Logger) http.Handler {
	var inflight chan struct{}
	if opts.MaxRequests > 0 {
		inflight = make(chan struct{}, opts.MaxRequests)
	}
	errorLog := slog.NewLogLogger(logger.Handler(), slog.LevelError) // safe for concurrent use
	bodies := &bodyCache{}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if inflight != nil {
			select {
			case inflight <- struct{}{}:
				defer func() { <-inflight }()
			default:
				http.Error(w, "too many concurrent scrapes; raise --web.max-requests", http.StatusServiceUnavailable)
				return
			}
		}
		ctx := r.Context()
		if d, ok := ScrapeBudget(r.Header.Get("X-Prometheus-Scrape-Timeout-Seconds"), opts.TimeoutOffset); ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
		fams, gen, err := e.GatherShared(ctx)
		gz := acceptsGzip(r.Header.Get("Accept-Encoding"))
		key := bodyKey{gen: gen, accept: r.Header.Get("Accept"), gzip: gz}
		if gen != 0 {
			if b, ok := bodies.get(key); ok {
				b.writeTo(w)
				return
			}
		}
		h := promhttp.HandlerFor(prometheus.Gatherers{base, fixedGatherer{fams, err}}, promhttp.HandlerOpts{
			ErrorLog:      errorLog,
			ErrorHandling: promhttp.ContinueOnError,
			// Compressed here instead, at gzip's fastest level: promhttp's default level spends more CPU
			// on a scrape's 20 KB than the collectors do, for a body a few percent smaller.
			DisableCompression: true,
		})
		b := &body{header: http.Header{}, status: http.StatusOK}
		if gz {
			zw := gzipWriters.Get().(*gzip.Writer)
			zw.Reset(&b.buf)
			b.header.Set("Content-Encoding", "gzip")
			b.header.Add("Vary", "Accept-Encoding")
			h.ServeHTTP(gzipResponseWriter{ResponseWriter: b, gz: zw}, r)
			if err := zw.Close(); err != nil {
				logger.Debug("finishing gzip response", "err", err)
			}
			gzipWriters.Put(zw)
		} else {
			h.ServeHTTP(b, r)
		}
		b.writeTo(w)
		if gen != 0 && b.status == http.StatusOK {
			bodies.put(key, b)
		}
	})
}

var gzipWriters = sync.Pool{New: func() any {
	gz, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed) // a valid level cannot fail
	return gz
}}

// gzipResponseWriter sends the body through gz; headers and status go straight to the client.
type gzipResponseWriter struct {
	http.ResponseWriter
	gz *gzip.Writer
}

func (w gzipResponseWriter) Write(b []byte) (int, error) { return w.gz.Write(b) }

// acceptsGzip reports whether an Accept-Encoding header allows gzip: listed, or "*", with a q-value above 0.
func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		coding, params, _ := strings.Cut(part, ";")
		coding = strings.ToLower(strings.TrimSpace(coding))
		if coding != "gzip" && coding != "*" {
			continue
		}
		for _, p := range strings.Split(params, ";") {
			if v, ok := strings.CutPrefix(strings.ToLower(strings.TrimSpace(p)), "q="); ok {
				if q, err := strconv.ParseFloat(v, 64); err != nil || q <= 0 {
					return false
				}
			}
		}
		return true
	}
	return false
}

// Bounds of a scrape timeout taken from the header: a value outside them is clamped, since Prometheus' own
// scrape timeouts are seconds to minutes and a budget of a day (or of 1e-300 s) is a mistake, not a wish.
const (
	MinScrapeTimeout = 100 * time.Millisecond
	MaxScrapeTimeout = 2 * time.Minute
)

// ScrapeBudget turns the scrape-timeout header into the time the collectors may take: the timeout less
// offset, but never less than half of it, so that a small timeout still leaves the collectors some time. A
// header that is not a positive finite number of seconds is treated as absent (ok false: the collectors get
// their default deadline); a timeout outside [MinScrapeTimeout, MaxScrapeTimeout] is clamped into it.
func ScrapeBudget(header string, offset time.Duration) (time.Duration, bool) {
	if header == "" {
		return 0, false
	}
	secs, err := strconv.ParseFloat(strings.TrimSpace(header), 64)
	if err != nil || math.IsNaN(secs) || math.IsInf(secs, 0) || secs <= 0 {
		return 0, false
	}
	timeout := MaxScrapeTimeout
	if secs < MaxScrapeTimeout.Seconds() {
		timeout = max(time.Duration(secs*float64(time.Second)), MinScrapeTimeout)
	}
	budget := timeout - offset
	if budget < timeout/2 {
		budget = timeout / 2
	}
	return budget, true
}

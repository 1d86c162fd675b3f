package collector

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// HandlerOpts configures the /metrics handler.
type HandlerOpts struct {
	// MaxRequests bounds parallel scrapes; 0 means no bound.
	MaxRequests int
	// TimeoutOffset is kept back from Prometheus' scrape timeout so that the answer arrives in time.
	TimeoutOffset time.Duration
}

// NewHandler serves the exporter's metrics plus those of base (build info, Go runtime, process). Each request
// gets its own registry so that its collectors stop at the deadline Prometheus announces in the
// X-Prometheus-Scrape-Timeout-Seconds header.
func NewHandler(e *Exporter, base prometheus.Gatherer, opts HandlerOpts, logger *slog.Logger) http.Handler {
	var inflight chan struct{}
	if opts.MaxRequests > 0 {
		inflight = make(chan struct{}, opts.MaxRequests)
	}
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
		reg := prometheus.NewRegistry()
		reg.MustRegister(e.WithContext(ctx))
		promhttp.HandlerFor(prometheus.Gatherers{base, reg}, promhttp.HandlerOpts{
			ErrorLog:      slog.NewLogLogger(logger.Handler(), slog.LevelError),
			ErrorHandling: promhttp.ContinueOnError,
		}).ServeHTTP(w, r)
	})
}

// ScrapeBudget turns the scrape-timeout header into the time the collectors may take: the timeout less
// offset, but never less than half of it, so that a small timeout still leaves the collectors some time.
func ScrapeBudget(header string, offset time.Duration) (time.Duration, bool) {
	if header == "" {
		return 0, false
	}
	secs, err := strconv.ParseFloat(header, 64)
	if err != nil || secs <= 0 || secs > 86400 {
		return 0, false
	}
	timeout := time.Duration(secs * float64(time.Second))
	budget := timeout - offset
	if budget < timeout/2 {
		budget = timeout / 2
	}
	return budget, true
}

// Package collector turns the kernel's receive-buffer state into Prometheus metrics. Each source (netstat,
// sockstat, sysctl, softnet, sockets, netns) lives in its own file and implements Collector; Exporter runs the
// enabled ones on every scrape and reports, per source, whether it succeeded and how long it took.
package collector

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Namespace prefixes every metric the exporter exports.
const Namespace = "sockbuf"

// Collector is one source of metrics. Update reads a fresh kernel snapshot and sends its metrics; it must be
// safe to call from concurrent scrapes.
type Collector interface {
	Update(ch chan<- prometheus.Metric) error
}

// ContextCollector is a Collector that can stop early when the scrape's deadline passes (a netlink dump can
// take long on a host with many sockets). The exporter calls UpdateContext instead of Update when present.
type ContextCollector interface {
	Collector
	UpdateContext(ctx context.Context, ch chan<- prometheus.Metric) error
}

// Config is what every collector is built from; tests point it at fixtures.
type Config struct {
	// ProcPath is the mount point of procfs, /proc by default; /host/proc in a container.
	ProcPath string
	// Sockets configures the per-socket collector.
	Sockets SocketsConfig
	// Netns configures the per-network-namespace collector.
	Netns NetnsConfig
}

// factory builds a collector by name; each source registers one in an init function of its own file.
type factory struct {
	name           string
	help           string
	defaultEnabled bool
	build          func(cfg Config, logger *slog.Logger) (Collector, error)
}

var factories = map[string]factory{}

func registerCollector(name, help string, defaultEnabled bool, build func(Config, *slog.Logger) (Collector, error)) {
	if _, dup := factories[name]; dup {
		panic("collector registered twice: " + name)
	}
	factories[name] = factory{name: name, help: help, defaultEnabled: defaultEnabled, build: build}
}

// Info describes an available collector, for command-line flags and documentation.
type Info struct {
	Name           string
	Help           string
	DefaultEnabled bool
}

// Available lists every collector compiled in, sorted by name.
func Available() []Info {
	out := make([]Info, 0, len(factories))
	for _, f := range factories {
		out = append(out, Info{Name: f.name, Help: f.help, DefaultEnabled: f.defaultEnabled})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

var (
	scrapeSuccessSpec = spec("exporter", MetricSpec{
		Name: "scrape_collector_success", Type: Gauge, Labels: []string{"collector"},
		Help:   "Whether a collector succeeded on this scrape (1) or failed (0): missing file, permission denied, unparsable input or scrape timeout.",
		Source: "the exporter",
	})
	scrapeDurationSpec = spec("exporter", MetricSpec{
		Name: "scrape_collector_duration_seconds", Type: Gauge, Unit: "seconds", Labels: []string{"collector"},
		Help:   "How long a collector took on this scrape.",
		Source: "the exporter",
	})
)

// Exporter runs the enabled collectors concurrently on each scrape.
type Exporter struct {
	collectors map[string]Collector
	names      []string
	logger     *slog.Logger

	successDesc  *prometheus.Desc
	durationDesc *prometheus.Desc
}

// New builds the named collectors. A collector that cannot be built is an error: the operator asked for it.
func New(cfg Config, enabled []string, logger *slog.Logger) (*Exporter, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ProcPath == "" {
		cfg.ProcPath = "/proc"
	}
	built := make(map[string]Collector, len(enabled))
	for _, name := range enabled {
		f, ok := factories[name]
		if !ok {
			return nil, fmt.Errorf("unknown collector %q", name)
		}
		if _, dup := built[name]; dup {
			continue
		}
		c, err := f.build(cfg, logger.With("collector", name))
		if err != nil {
			return nil, fmt.Errorf("building collector %s: %w", name, err)
		}
		built[name] = c
	}
	return newExporter(built, logger), nil
}

func newExporter(collectors map[string]Collector, logger *slog.Logger) *Exporter {
	e := &Exporter{
		collectors:   collectors,
		logger:       logger,
		successDesc:  scrapeSuccessSpec.Desc(),
		durationDesc: scrapeDurationSpec.Desc(),
	}
	for name := range collectors {
		e.names = append(e.names, name)
	}
	sort.Strings(e.names)
	return e
}

// Names returns the enabled collectors, sorted.
func (e *Exporter) Names() []string { return append([]string(nil), e.names...) }

// Describe sends nothing: which metrics a scrape has depends on the running kernel (a field an older kernel
// lacks is absent), so the exporter is an unchecked collector.
func (e *Exporter) Describe(chan<- *prometheus.Desc) {}

// Collect runs every collector without a deadline.
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	e.CollectContext(context.Background(), ch)
}

// WithContext returns a prometheus.Collector whose scrapes stop at ctx's deadline: collectors that have not
// finished by then are reported as failed and their partial output is dropped, so a scrape never returns a
// half-read source.
func (e *Exporter) WithContext(ctx context.Context) prometheus.Collector {
	return scoped{e: e, ctx: ctx}
}

type scoped struct {
	e   *Exporter
	ctx context.Context
}

func (s scoped) Describe(ch chan<- *prometheus.Desc) { s.e.Describe(ch) }
func (s scoped) Collect(ch chan<- prometheus.Metric) { s.e.CollectContext(s.ctx, ch) }

type result struct {
	name     string
	metrics  []prometheus.Metric
	err      error
	duration time.Duration
}

// CollectContext runs every collector concurrently and forwards the output of those that finish before ctx
// ends. A collector without UpdateContext that is still running then is left to finish on its own goroutine
// and its output is dropped: the /proc readers return within milliseconds, and the collectors that can block
// for long on netlink (sockets, and netns with --collector.netns.sockets) stop at the deadline themselves.
func (e *Exporter) CollectContext(ctx context.Context, ch chan<- prometheus.Metric) {
	results := make(chan result, len(e.names))
	for _, name := range e.names {
		go func(name string, c Collector) {
			results <- runCollector(ctx, name, c)
		}(name, e.collectors[name])
	}
	pending := make(map[string]bool, len(e.names))
	for _, n := range e.names {
		pending[n] = true
	}
	for len(pending) > 0 {
		select {
		case r := <-results:
			delete(pending, r.name)
			e.report(ch, r)
		case <-ctx.Done():
			// Sorted, so that logs and output do not depend on map order.
			left := make([]string, 0, len(pending))
			for n := range pending {
				left = append(left, n)
			}
			sort.Strings(left)
			for _, n := range left {
				e.report(ch, result{name: n, err: fmt.Errorf("scrape deadline passed: %w", ctx.Err())})
			}
			return
		}
	}
}

func runCollector(ctx context.Context, name string, c Collector) result {
	start := time.Now()
	mc := make(chan prometheus.Metric, 64)
	var metrics []prometheus.Metric
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for m := range mc {
			metrics = append(metrics, m)
		}
	}()
	var err error
	func() {
		// A panicking collector is a bug, but it must not take the other collectors or the process down.
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("collector panicked: %v", p)
			}
		}()
		if cc, ok := c.(ContextCollector); ok {
			err = cc.UpdateContext(ctx, mc)
		} else {
			err = c.Update(mc)
		}
	}()
	close(mc)
	wg.Wait()
	return result{name: name, metrics: metrics, err: err, duration: time.Since(start)}
}

func (e *Exporter) report(ch chan<- prometheus.Metric, r result) {
	success := 1.0
	if r.err != nil {
		success = 0
		e.logger.Error("collector failed", "collector", r.name, "duration_seconds", r.duration.Seconds(), "err", r.err)
		// A failed collector's partial output would show a wrong picture (some fields, not others), so it is
		// dropped whole.
		r.metrics = nil
	}
	for _, m := range r.metrics {
		ch <- m
	}
	ch <- prometheus.MustNewConstMetric(e.successDesc, prometheus.GaugeValue, success, r.name)
	ch <- prometheus.MustNewConstMetric(e.durationDesc, prometheus.GaugeValue, r.duration.Seconds(), r.name)
}

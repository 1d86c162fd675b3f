// Package collector turns the kernel's receive-buffer state into Prometheus metrics. Each source (netstat,
// sockstat, sysctl, softnet, sockets, netns) lives in its own file and implements Collector; Exporter runs the
// enabled ones on every scrape and reports, per source, whether it succeeded and how long it took.
package collector

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockbuf/sockbuf_exporter/procnet"
)

// Namespace prefixes every metric the exporter exports.
const Namespace = "sockbuf"

// Collector is one source of metrics. Update reads a fresh kernel snapshot and sends its metrics; it should
// stop early when ctx ends (a netlink dump can take long on a host with many sockets). The exporter never
// calls Update of one collector concurrently: concurrent scrapes share one call (see flight).
type Collector interface {
	Update(ctx context.Context, ch chan<- prometheus.Metric) error
}

// Config is what every collector is built from; tests point it at fixtures.
type Config struct {
	// ProcPath is the mount point of procfs, /proc by default; /host/proc in a container.
	ProcPath string
	// Sockets configures the per-socket collector.
	Sockets SocketsConfig
	// Netns configures the per-network-namespace collector.
	Netns NetnsConfig
	// BPF configures the eBPF drop-reason collector.
	BPF BPFConfig
	// Memcg configures the memory cgroup collector.
	Memcg MemcgConfig
	// MaxResultAge is how long a collector's result is served again to later scrapes instead of reading the
	// kernel again; 0 shares only a read in progress (see flight).
	MaxResultAge time.Duration
}

// fs returns a reader of the configured procfs.
func (c Config) fs() *procnet.FS { return procnet.NewFS(c.ProcPath) }

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
	flights map[string]*flight
	names   []string
	logger  *slog.Logger

	successDesc  *prometheus.Desc
	durationDesc *prometheus.Desc

	cache familyCache // see Gatherer
}

// New builds the named collectors. A collector that cannot be built is an error: the operator asked for it.
func New(cfg Config, enabled []string, logger *slog.Logger) (*Exporter, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ProcPath == "" {
		cfg.ProcPath = "/proc"
	}
	if cfg.MaxResultAge < 0 {
		return nil, fmt.Errorf("the result age must not be negative, got %v", cfg.MaxResultAge)
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
	return NewExporter(built, cfg.MaxResultAge, logger), nil
}

// NewExporter runs the given collectors by name; New builds them from a Config. maxAge is
// Config.MaxResultAge.
func NewExporter(collectors map[string]Collector, maxAge time.Duration, logger *slog.Logger) *Exporter {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	e := &Exporter{
		flights:      make(map[string]*flight, len(collectors)),
		logger:       logger,
		successDesc:  scrapeSuccessSpec.Desc(),
		durationDesc: scrapeDurationSpec.Desc(),
	}
	for name, c := range collectors {
		e.names = append(e.names, name)
		e.flights[name] = &flight{c: c, maxAge: maxAge}
	}
	sort.Strings(e.names)
	return e
}

// Close releases what collectors hold in the kernel (the bpf collector's programs), for a clean shutdown.
// Scrapes after Close fail.
func (e *Exporter) Close() error {
	var err error
	for _, name := range e.names {
		if c, ok := e.flights[name].c.(io.Closer); ok {
			if cerr := c.Close(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("closing collector %s: %w", name, cerr))
			}
		}
	}
	return err
}

// Names returns the enabled collectors, sorted.
func (e *Exporter) Names() []string { return append([]string(nil), e.names...) }

// Describe sends nothing: which metrics a scrape has depends on the running kernel (a field an older kernel
// lacks is absent), so the exporter is an unchecked collector.
func (e *Exporter) Describe(chan<- *prometheus.Desc) {}

// Collect runs every collector with the default deadline.
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

// CollectContext runs every collector concurrently (or joins a run in progress) and forwards the output of
// those that finish before ctx ends; the others are reported as failed, with the time they had run.
func (e *Exporter) CollectContext(ctx context.Context, ch chan<- prometheus.Metric) {
	for _, r := range e.results(ctx) {
		e.report(ch, r)
	}
}

// results waits for every collector's result (see flight), sorted by collector name so that logs and
// output do not depend on which finished first.
func (e *Exporter) results(ctx context.Context) []result {
	results := make(chan result, len(e.names))
	for _, name := range e.names {
		go func(name string) {
			r := e.flights[name].result(ctx)
			r.name = name
			results <- r
		}(name)
	}
	got := make([]result, 0, len(e.names))
	for range e.names {
		got = append(got, <-results)
	}
	sort.Slice(got, func(i, j int) bool { return got[i].name < got[j].name })
	return got
}

func (e *Exporter) report(ch chan<- prometheus.Metric, r result) {
	success := 1.0
	metrics := r.metrics
	if r.err != nil {
		success = 0
		// An unavailable collector said why once, when it was built; its scrapes fail quietly.
		if !errors.Is(r.err, errUnavailable) {
			e.logger.Error("collector failed", "collector", r.name, "duration_seconds", r.duration.Seconds(), "err", r.err)
		}
		// A failed collector's partial output would show a wrong picture (some fields, not others), so it is
		// dropped whole.
		metrics = nil
	}
	for _, m := range metrics {
		ch <- m
	}
	ch <- prometheus.MustNewConstMetric(e.successDesc, prometheus.GaugeValue, success, r.name)
	ch <- prometheus.MustNewConstMetric(e.durationDesc, prometheus.GaugeValue, r.duration.Seconds(), r.name)
}

package collector

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockbuf/sockbuf_exporter/attrib"
)

// Process attribution (--collector.sockets.process) for the sockets collector: attrib.ProcessScanner finds the
// owners, incrementally; this file bounds its time and reports its failures. It never fails the collector:
// a scan that fails or runs out of its share of the scrape's time leaves the sockets it did not resolve with
// process="" and is counted.

var processScanIncompleteSpec = spec("sockets", MetricSpec{
	Name: "sockets_process_scans_incomplete_total", Type: Counter,
	Help: "Scans of /proc/<pid>/fd for socket owners that failed or were cut short by their share of the scrape's time.",
	Notes: "The sockets they did not resolve keep the owner found before, or get process=\"\", on that scrape; the " +
		"collector itself succeeds. Rising: a host with very many descriptors that changed; raise scrape_timeout. " +
		"Only with --collector.sockets.process.",
	Source: "the exporter",
})

// processScanShare is the part of the time left to a scrape that the process scan may take before the dump.
const processScanShare = 3

type processAttribution struct {
	scanner *attrib.ProcessScanner
	logger  *slog.Logger
	desc    *prometheus.Desc
	failing bool // the last refresh failed: log the next failures at debug level
}

func newProcessAttribution(procPath string, logger *slog.Logger) *processAttribution {
	return &processAttribution{scanner: attrib.NewProcessScanner(procPath), logger: logger, desc: processScanIncompleteSpec.Desc()}
}

// refresh brings the scanner up to date before a dump, within a third of the time left to ctx (of
// DefaultTimeout without a deadline).
func (p *processAttribution) refresh(ctx context.Context) {
	left := DefaultTimeout
	if d, ok := ctx.Deadline(); ok {
		left = time.Until(d)
	}
	err := p.scanner.Refresh(time.Now().Add(left / processScanShare))
	if err == nil {
		p.failing = false
		return
	}
	level := slog.LevelWarn
	if p.failing {
		level = slog.LevelDebug
	}
	p.failing = true
	p.logger.Log(ctx, level, "process scan for socket owners incomplete; unresolved sockets get process=\"\"", "err", err)
}

// Owner returns the process index of a socket inode.
func (p *processAttribution) Owner(inode uint32) int32 { return p.scanner.Owner(inode) }

// Name returns a process name by index.
func (p *processAttribution) Name(i int32) string { return p.scanner.Name(i) }

func (p *processAttribution) emit(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(p.desc, prometheus.CounterValue, float64(p.scanner.Incomplete()))
}

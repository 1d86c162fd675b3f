package collector

import (
	"context"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Gatherer returns the exporter's metrics for one scrape bounded by ctx, as a prometheus.Gatherer. Scrapes
// that get the same run of every collector (concurrent scrapes share runs, see flight) also share the
// metric families built from them: the conversion and checks a registry does per metric are done once
// per set of runs, not once per scrape. The families returned must not be modified.
func (e *Exporter) Gatherer(ctx context.Context) prometheus.Gatherer {
	return gatherer{e: e, ctx: ctx}
}

type gatherer struct {
	e   *Exporter
	ctx context.Context
}

// familyCache holds the families of the last set of runs; gen counts the sets.
type familyCache struct {
	mu   sync.Mutex
	runs []*run
	fams []*dto.MetricFamily
	gen  uint64
}

func (g gatherer) Gather() ([]*dto.MetricFamily, error) {
	fams, _, err := g.e.GatherShared(g.ctx)
	return fams, err
}

// GatherShared is Gatherer's Gather that also says which families it returned: gen is the same, and not 0,
// for scrapes that got the same runs of every collector and so the same families; 0 for families of this
// scrape alone (a collector it stopped waiting for).
func (e *Exporter) GatherShared(ctx context.Context) (fams []*dto.MetricFamily, gen uint64, err error) {
	results := e.results(ctx)
	runs := make([]*run, len(results))
	cacheable := true
	for i, r := range results {
		runs[i] = r.run
		cacheable = cacheable && r.run != nil
	}
	if cacheable {
		e.cache.mu.Lock()
		hit := slices.Equal(runs, e.cache.runs)
		fams, gen := e.cache.fams, e.cache.gen
		e.cache.mu.Unlock()
		if hit {
			return fams, gen, nil
		}
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(replay{e: e, results: results}); err != nil {
		return nil, 0, err
	}
	fams, err = reg.Gather()
	if err == nil && cacheable {
		e.cache.mu.Lock()
		e.cache.gen++
		e.cache.runs, e.cache.fams, gen = runs, fams, e.cache.gen
		e.cache.mu.Unlock()
	}
	return fams, gen, err
}

// replay sends the metrics of results, and each collector's success and duration, as CollectContext does.
type replay struct {
	e       *Exporter
	results []result
}

func (r replay) Describe(chan<- *prometheus.Desc) {}

func (r replay) Collect(ch chan<- prometheus.Metric) {
	for _, res := range r.results {
		r.e.report(ch, res)
	}
}

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

// familyCache holds the families of the last set of runs.
type familyCache struct {
	mu   sync.Mutex
	runs []*run
	fams []*dto.MetricFamily
}

func (g gatherer) Gather() ([]*dto.MetricFamily, error) {
	e := g.e
	results := e.results(g.ctx)
	runs := make([]*run, len(results))
	cacheable := true
	for i, r := range results {
		runs[i] = r.run
		cacheable = cacheable && r.run != nil
	}
	if cacheable {
		e.cache.mu.Lock()
		hit := slices.Equal(runs, e.cache.runs)
		fams := e.cache.fams
		e.cache.mu.Unlock()
		if hit {
			return fams, nil
		}
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(replay{e: e, results: results}); err != nil {
		return nil, err
	}
	fams, err := reg.Gather()
	if err == nil && cacheable {
		e.cache.mu.Lock()
		e.cache.runs, e.cache.fams = runs, fams
		e.cache.mu.Unlock()
	}
	return fams, err
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

// Package collectortest holds the fake collector that the tests of collector and metricshandler run in
// place of a real source.
package collectortest

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
)

// Fake is a collector (collector.Collector) whose Update calls Fn, ignoring the context.
type Fake struct {
	Fn func(ch chan<- prometheus.Metric) error
}

// Update runs f.Fn.
func (f Fake) Update(_ context.Context, ch chan<- prometheus.Metric) error { return f.Fn(ch) }

// Desc is sockbuf_fake_value, the metric that Emits emits.
var Desc = prometheus.NewDesc("sockbuf_fake_value", "A value from a fake collector.", nil, nil)

// Emits is a Fake that emits sockbuf_fake_value v on every scrape.
func Emits(v float64) Fake {
	return Fake{Fn: func(ch chan<- prometheus.Metric) error {
		ch <- prometheus.MustNewConstMetric(Desc, prometheus.GaugeValue, v)
		return nil
	}}
}

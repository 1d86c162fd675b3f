package collector

import (
	"sort"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric types, as written in docs/metrics.md.
const (
	Counter   = "counter"
	Gauge     = "gauge"
	Histogram = "histogram"
)

// MetricSpec is the one place a metric is defined: collectors build their Desc from it and docs/metrics.md is
// generated from all of them (TestMetricsDoc fails when the two disagree).
type MetricSpec struct {
	Collector string   // the collector that exports it
	Name      string   // without the "sockbuf_" prefix
	Type      string   // Counter, Gauge or Histogram
	Unit      string   // "bytes", "seconds", "ratio", or "" for a count
	Labels    []string // variable labels, in order
	Help      string   // HELP text: one sentence that says what the kernel counts, naming its source
	Notes     string   // longer notes, rendered into docs/metrics.md only
	Source    string   // where the value comes from, e.g. "/proc/net/netstat TcpExt PruneCalled"
}

// FullName is the exported metric name.
func (m MetricSpec) FullName() string { return prometheus.BuildFQName(Namespace, "", m.Name) }

// Desc builds the metric's descriptor.
func (m MetricSpec) Desc() *prometheus.Desc {
	return prometheus.NewDesc(m.FullName(), m.Help, m.Labels, nil)
}

var specs []MetricSpec

// spec records a metric for the documentation and returns it, so that collectors can keep it in a variable.
func spec(collector string, m MetricSpec) MetricSpec {
	m.Collector = collector
	specs = append(specs, m)
	return m
}

// Metrics lists every metric the exporter can export, by collector and name.
func Metrics() []MetricSpec {
	out := append([]MetricSpec(nil), specs...)
	sort.Slice(out, func(i, j int) bool {
		if out[i].Collector != out[j].Collector {
			return out[i].Collector < out[j].Collector
		}
		return out[i].Name < out[j].Name
	})
	return out
}

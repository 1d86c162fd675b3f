package collector

import (
	"context"
	"log/slog"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockbuf/sockbuf_exporter/procnet"
)

func init() {
	registerCollector("softnet", "per-CPU input queue drops and budget squeezes from /proc/net/softnet_stat", true,
		func(cfg Config, _ *slog.Logger) (Collector, error) { return newSoftnetCollector(cfg), nil })
}

// Both counters are 32 bits in the kernel; a wrap at 2^32 looks like a counter reset, which rate() handles.
var (
	softnetDroppedSpec = spec("softnet", MetricSpec{
		Name: "softnet_dropped_total", Type: Counter, Labels: []string{"cpu"},
		Help: "Packets dropped, host-wide, because this CPU's input queue (netdev_max_backlog) was full (/proc/net/softnet_stat column 2).",
		Notes: "The counter is the whole host's, whatever network namespace the exporter runs in: an exporter in a pod sees " +
			"every pod's drops. It is 32 bits in the kernel; a wrap looks like a counter reset.",
		Source: "/proc/net/softnet_stat column 2 (dropped)",
	})
	softnetSqueezedSpec = spec("softnet", MetricSpec{
		Name: "softnet_times_squeezed_total", Type: Counter, Labels: []string{"cpu"},
		Help:   "Times, host-wide, this CPU's receive softirq ran out of budget with packets left (/proc/net/softnet_stat column 3).",
		Notes:  "Host-wide like sockbuf_softnet_dropped_total; 32 bits in the kernel.",
		Source: "/proc/net/softnet_stat column 3 (time_squeeze)",
	})
)

// softnetCollector exports per-CPU backlog drops and squeezes.
type softnetCollector struct {
	fs                        *procnet.FS
	droppedDesc, squeezedDesc *prometheus.Desc
}

func newSoftnetCollector(cfg Config) *softnetCollector {
	return &softnetCollector{fs: cfg.fs(), droppedDesc: softnetDroppedSpec.Desc(), squeezedDesc: softnetSqueezedSpec.Desc()}
}

// Update sends metrics while parsing; on an error the exporter discards what was sent.
func (c *softnetCollector) Update(_ context.Context, ch chan<- prometheus.Metric) error {
	return c.fs.Softnet(func(r procnet.SoftnetRow) {
		cpu := strconv.Itoa(r.CPU)
		ch <- prometheus.MustNewConstMetric(c.droppedDesc, prometheus.CounterValue, float64(r.Dropped), cpu)
		ch <- prometheus.MustNewConstMetric(c.squeezedDesc, prometheus.CounterValue, float64(r.Squeezed), cpu)
	})
}

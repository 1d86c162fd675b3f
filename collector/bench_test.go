package collector

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkHostScrape is one full scrape of the host collectors against the real /proc, gathered the way the
// /metrics handler gathers it (without HTTP and encoding). collector/bench/host.sh compares the whole
// /metrics request with node_exporter's.
func BenchmarkHostScrape(b *testing.B) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newHostExporter(b, "/proc"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHostCollectors measures each collector's Update alone.
func BenchmarkHostCollectors(b *testing.B) {
	for _, name := range hostCollectors {
		b.Run(name, func(b *testing.B) {
			c, err := factories[name].build(Config{ProcPath: "/proc"}, discardLogger())
			if err != nil {
				b.Fatal(err)
			}
			ch := make(chan prometheus.Metric, 4096)
			b.ReportAllocs()
			for b.Loop() {
				if err := c.Update(context.Background(), ch); err != nil {
					b.Fatal(err)
				}
				for len(ch) > 0 {
					<-ch
				}
			}
		})
	}
}

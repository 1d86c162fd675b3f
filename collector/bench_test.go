package collector

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/procfs"
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
				if err := c.Update(ch); err != nil {
					b.Fatal(err)
				}
				for len(ch) > 0 {
					<-ch
				}
			}
		})
	}
}

// BenchmarkNetstatReadParse compares our read of /proc/net/netstat and /proc/net/snmp with procfs', the
// alternative the comment at the top of netstat.go rejects (which also opens both files on every read).
func BenchmarkNetstatReadParse(b *testing.B) {
	b.Run("ours", func(b *testing.B) {
		c := newNetstatCollector(Config{ProcPath: "/proc"})
		b.ReportAllocs()
		for b.Loop() {
			var (
				vals [maxNetstatFields]uint64
				have [maxNetstatFields]bool
			)
			buf := getBuf()
			for i, f := range netstatFiles {
				data, err := c.files[i].read(buf)
				if err != nil {
					b.Fatal(err)
				}
				if err := parseProtoStats(data, f.protos, vals[:], have[:]); err != nil {
					b.Fatal(err)
				}
			}
			putBuf(buf)
		}
	})
	b.Run("procfs", func(b *testing.B) {
		fs, err := procfs.NewFS("/proc")
		if err != nil {
			b.Fatal(err)
		}
		p, err := fs.Self()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.Netstat(); err != nil {
				b.Fatal(err)
			}
			if _, err := p.Snmp(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

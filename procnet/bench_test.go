package procnet

import (
	"testing"

	"github.com/prometheus/procfs"
)

// BenchmarkNetstatReadParse compares our read of /proc/net/netstat and /proc/net/snmp with procfs', the
// alternative the package comment rejects (which also opens both files on every read).
func BenchmarkNetstatReadParse(b *testing.B) {
	b.Run("ours", func(b *testing.B) {
		fs := NewFS("/proc")
		var n Netstat
		b.ReportAllocs()
		for b.Loop() {
			if err := fs.Netstat(&n); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("procfs", func(b *testing.B) {
		pfs, err := procfs.NewFS("/proc")
		if err != nil {
			b.Fatal(err)
		}
		p, err := pfs.Self()
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

package collector

import (
	"strconv"
	"strings"
	"testing"

	"github.com/sockbuf/sockbuf_exporter/internal/socktest"
)

// TestSocketsProcessInvalidUTF8 checks that with process attribution alone (no cgroup label) a comm that is
// not valid UTF-8 gets an escaped label and does not fail the sockets collector.
func TestSocketsProcessInvalidUTF8(t *testing.T) {
	b := startBadNames(t)
	c := newBadNamesSockets(t, b, SocketsConfig{ProcessAttribution: true})
	m := gather(t, c)
	k := `sockbuf_sockets{cgroup="",port="` + strconv.Itoa(b.port) + `",process="` + b.comm + `",role="server"}`
	if m[k] != 1 {
		t.Errorf("%s = %g, want 1; series: %v", k, m[k], gatherPrefix(m, "sockbuf_sockets{"))
	}
	for name := range m {
		if strings.Contains(name, badComm) {
			t.Errorf("unescaped comm in %q", name)
		}
	}
}

// TestSocketsProcessScanFails checks that a process scan that cannot run (no /proc there) leaves process
// empty and is counted, and that the sockets collector succeeds.
func TestSocketsProcessScanFails(t *testing.T) {
	d := &fakeDumper{socks: []socktest.Sock{
		socktest.Listen(80, 0, 10),
		{Local: 80, Remote: 1},
	}}
	c := newTestSockets(t, SocketsConfig{ProcessAttribution: true}, d) // ProcPath testdata/none
	for scrape := 1; scrape <= 2; scrape++ {
		m := gather(t, c)
		if got := m[`sockbuf_sockets{cgroup="",port="80",process="",role="server"}`]; got != 1 {
			t.Errorf("scrape %d: server sockets = %g, want 1", scrape, got)
		}
		if got := m[`sockbuf_sockets_process_scans_incomplete_total`]; got != float64(scrape) {
			t.Errorf("scrape %d: incomplete scans = %g, want %d", scrape, got, scrape)
		}
	}
}

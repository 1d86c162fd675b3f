package collector

import (
	"strconv"
	"strings"
	"testing"
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

//go:build linux

package drops

import (
	"net"
	"testing"

	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

// sendToClosedPort sends n UDP datagrams to a port nobody listens on, in ns: the kernel drops each with
// no_socket and no receiving socket (rx_sk NULL), so only the device's namespace tells where it happened.
func sendToClosedPort(t *testing.T, ns *testenv.NetNS, n int) {
	t.Helper()
	err := ns.Do(func() error {
		// Unconnected, so that the ICMP errors coming back do not fail the next send.
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return err
		}
		defer c.Close()
		for range n {
			if _, err := c.WriteToUDP([]byte("x"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func unattributed(s Snapshot, reason string) uint64 {
	for _, u := range s.Unattributed {
		if u.Reason == reason {
			return u.Packets
		}
	}
	return 0
}

// TestNetNSFilter: a tracer restricted to one namespace counts that namespace's drops and none of
// another's, for drops without a socket too; a tracer for all namespaces counts both.
func TestNetNSFilter(t *testing.T) {
	a, b := testenv.NewNetNS(t), testenv.NewNetNS(t)
	onlyA := openTracer(t, a)
	all := openTracer(t, nil)
	before := unattributed(read(t, all), "no_socket")
	sendToClosedPort(t, a, 5)
	sendToClosedPort(t, b, 7)
	if got := unattributed(read(t, onlyA), "no_socket"); got != 5 {
		t.Errorf("tracer of namespace a counted %d no_socket drops, want a's 5 (b sent 7)", got)
	}
	if got := unattributed(read(t, all), "no_socket") - before; got < 12 {
		t.Errorf("tracer of all namespaces counted %d no_socket drops, want at least 12", got)
	}
}

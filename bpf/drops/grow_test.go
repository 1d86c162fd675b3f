//go:build linux

package drops

import (
	"context"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
	"github.com/sockbuf/sockbuf_exporter/internal/trafficgen"
)

// TestRcvbufGrow: a reader that keeps up with a bulk transfer makes autotuning grow its receive buffer; the
// growth lands on the server's group. On a receiver pinned with SO_RCVBUF the tracepoint fires too (it comes
// before the lock check), always with RcvbufLocked.
func TestRcvbufGrow(t *testing.T) {
	ns := testenv.NewNetNS(t)
	tr := openTracer(t, ns)
	if slices.Contains(tr.Missing(), "tcp_rcvbuf_grow") {
		testenv.Missing(t, "kernel has no tcp:tcp_rcvbuf_grow tracepoint (Linux 6.17+)")
	}
	ino, _ := NetNSInode(ns.Path)
	ports := map[bool]uint16{}
	transfer := func(pinned bool) {
		t.Helper()
		err := ns.Do(func() error {
			cfg := trafficgen.ListenConfig{}
			if pinned {
				cfg.RcvBuf = 64 << 10
			}
			srv, err := trafficgen.Listen(cfg)
			if err != nil {
				return err
			}
			defer srv.Close()
			ports[pinned] = uint16(srv.Port())
			if err := tr.SetListening(ino, []uint16{ports[false], ports[true]}); err != nil {
				return err
			}
			cl, err := trafficgen.Dial(context.Background(), srv.Addr(), 1, trafficgen.DialConfig{})
			if err != nil {
				return err
			}
			defer cl.Close()
			if err := srv.WaitAccepted(1, 5*time.Second); err != nil {
				return err
			}
			const total = 16 << 20
			done := make(chan error, 1)
			go func() {
				sc := srv.Conns()[0]
				sc.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, err := io.CopyN(io.Discard, sc, total)
				done <- err
			}()
			c := cl.Conns[0]
			c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(make([]byte, total)); err != nil {
				return err
			}
			return <-done
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	transfer(true)
	// Autotuning grows a buffer from tcp_rcv_space_adjust, at most once per measured round trip: on loopback
	// a transfer can end before it measures one, so the autotuned reader gets a few bounded tries.
	var s Snapshot
	for try := 1; ; try++ {
		transfer(false)
		s = read(t, tr)
		if try == 5 || slices.ContainsFunc(s.RcvbufGrow, func(g RcvbufGrow) bool { return g.Port == ports[false] }) {
			break
		}
	}
	grew := map[bool]uint64{}
	for _, g := range s.RcvbufGrow {
		for pinned, p := range ports {
			if g.Role == RoleServer && g.Port == p {
				grew[pinned] += g.Count
				if g.RcvbufLocked != pinned {
					t.Errorf("growth on the %s reader's port with RcvbufLocked %v", map[bool]string{true: "pinned", false: "autotuned"}[pinned], g.RcvbufLocked)
				}
			}
		}
	}
	t.Logf("receive buffer growth: %+v", s.RcvbufGrow)
	if grew[false] == 0 {
		t.Errorf("the autotuned reader's buffer never grew")
	}
}

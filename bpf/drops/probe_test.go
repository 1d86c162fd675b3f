//go:build linux

package drops

import (
	"context"
	"testing"
	"time"

	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
	"github.com/sockbuf/sockbuf_exporter/internal/trafficgen"
)

// waitDrops polls the tracer until the drops matching keep reach min packets, or 6s pass.
func waitDrops(t *testing.T, tr *Tracer, min uint64, keep func(Drop) bool) Snapshot {
	t.Helper()
	deadline := time.Now().Add(6 * time.Second)
	for {
		s := read(t, tr)
		var n uint64
		for _, v := range byReason(s, keep) {
			n += v
		}
		if n >= min || time.Now().After(deadline) {
			return s
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestWindowProbesAreNotOverflow: a receiver that never reads, with an autotuned buffer, lets its window
// close; the sender then only probes the zero window. Those probes are dropped (and counted in the socket's
// sk_drops, which sock_diag shows), but under their own reason, with no overflow counter moving.
func TestWindowProbesAreNotOverflow(t *testing.T) {
	ns := testenv.NewNetNS(t)
	tr := openTracer(t, ns)
	ino, _ := NetNSInode(ns.Path)
	var srv *trafficgen.Server
	var clients *trafficgen.Clients
	var before trafficgen.Netstat
	err := ns.Do(func() (err error) {
		if srv, err = trafficgen.Listen(trafficgen.ListenConfig{}); err != nil {
			return err
		}
		if clients, err = trafficgen.Dial(context.Background(), srv.Addr(), 2, trafficgen.DialConfig{}); err != nil {
			return err
		}
		if err := srv.WaitAccepted(2, 5*time.Second); err != nil {
			return err
		}
		if err := tr.SetListening(ino, []uint16{uint16(srv.Port())}); err != nil {
			return err
		}
		if before, err = trafficgen.ReadNetstat(); err != nil {
			return err
		}
		return trafficgen.CloseWindows(clients.Conns)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	defer clients.Close()
	onServer := func(d Drop) bool { return d.Role == RoleServer && d.Port == uint16(srv.Port()) }
	// The first probe leaves after one RTO (200ms minimum), the next ones back off: 2 per connection come
	// within about 1s.
	waitDrops(t, tr, 4, onServer)
	var after trafficgen.Netstat
	if err := ns.Do(func() (err error) { after, err = trafficgen.ReadNetstat(); return err }); err != nil {
		t.Fatal(err)
	}
	// sk_drops before and after the snapshot brackets it, however probes arrive meanwhile.
	skDropsBefore := serverDrops(t, srv)
	s := read(t, tr)
	skDrops := serverDrops(t, srv)
	got := byReason(s, onServer)
	d := after.Sub(before)["TcpExt"]
	t.Logf("server drops by reason: %v; sk_drops of the server sockets: %d; TcpExt TCPWinProbe=%d TCPRcvQDrop=%d TCPOFODrop=%d PruneCalled=%d TCPZeroWindowDrop=%d",
		got, skDrops, d["TCPWinProbe"], d["TCPRcvQDrop"], d["TCPOFODrop"], d["PruneCalled"], d["TCPZeroWindowDrop"])
	var total uint64
	for _, n := range got {
		total += n
	}
	if total < 4 {
		t.Fatalf("%d drops on the server sockets, want the window probes (at least 4)", total)
	}
	for _, overflow := range []string{"proto_mem", "tcp_ofo_queue_prune", "socket_backlog", "socket_rcvbuff"} {
		if got[overflow] != 0 {
			t.Errorf("%d window probes counted as %s", got[overflow], overflow)
		}
	}
	if d["TCPRcvQDrop"]+d["TCPOFODrop"]+d["RcvPruned"]+d["OfoPruned"] != 0 {
		t.Errorf("overflow counters moved in a probe-only run: %v", d)
	}
	// sk_drops counts the probes too: it cannot tell them from data loss, the reason can.
	if total < skDropsBefore || total > skDrops {
		t.Errorf("tracer saw %d drops on the server sockets, sk_drops rose from %d to %d around the read", total, skDropsBefore, skDrops)
	}
	for _, dr := range s.Drops {
		if onServer(dr) && dr.RcvbufLocked {
			t.Errorf("autotuned receiver counted as rcvbuf locked: %+v", dr)
		}
	}
}

// serverDrops sums sk_drops (skmeminfo) over a server's accepted sockets.
func serverDrops(t *testing.T, srv *trafficgen.Server) uint64 {
	t.Helper()
	var n uint64
	for _, c := range srv.Conns() {
		mi, err := trafficgen.SocketMemInfo(c)
		if err != nil {
			t.Fatal(err)
		}
		n += uint64(mi.Drops)
	}
	return n
}

//go:build linux

package drops

import (
	"context"
	"testing"
	"time"

	"github.com/sockbuf/sockbuf_exporter/internal/dropcheck"
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
	"github.com/sockbuf/sockbuf_exporter/internal/trafficgen"
)

// TestReasonsMatchTcpExt drives the traffic generator's destructive recipes in a fresh namespace, with the
// tracer restricted to it, and checks the per-reason sums against the namespace's TcpExt counters: the
// equalities of the package documentation.
func TestReasonsMatchTcpExt(t *testing.T) {
	ns := testenv.NewNetNS(t)
	tr := openTracer(t, ns)
	var before, after trafficgen.Netstat
	recipes := []struct {
		name   string
		recipe func(context.Context, trafficgen.Options) (trafficgen.Result, error)
		want   []string
	}{
		{"PruneData", trafficgen.PruneData, []string{"RcvPruned", "TCPRcvQDrop"}},
		{"PruneOfo", trafficgen.PruneOfo, []string{"OfoPruned"}},
	}
	testenv.RequireBinary(t, "nft", "nftables")
	err := ns.Do(func() error {
		var err error
		if before, err = trafficgen.ReadNetstat(); err != nil {
			return err
		}
		for _, r := range recipes {
			base, err := trafficgen.ReadNetstat()
			if err != nil {
				return err
			}
			res, err := r.recipe(context.Background(), trafficgen.Options{
				Conns: 8, Duration: 10 * time.Second, Until: trafficgen.Moved(base, r.want...),
			})
			if err != nil {
				return err
			}
			t.Logf("%s: %s", r.name, res)
			if res.Stopped != trafficgen.StoppedUntil {
				t.Errorf("%s: %v did not all rise: %s", r.name, r.want, res)
			}
		}
		// Closed connections send and receive their last segments right away; let them settle.
		time.Sleep(200 * time.Millisecond)
		after, err = trafficgen.ReadNetstat()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	s := read(t, tr)
	got := byReason(s, nil)
	d := after.Sub(before)["TcpExt"]
	t.Logf("drops by reason: %v", got)
	t.Logf("%s", dropcheck.TcpExtSummary(d))
	broken, short := dropcheck.TcpExtCompare(got, d, s.Missed)
	for _, m := range broken {
		t.Error(m)
	}
	for _, m := range short {
		t.Log(m)
	}
	// RcvPruned counts tcp_prune_queue giving up; the segment that asked for room is then dropped as
	// proto_mem, unless the receive queue was empty (then it is queued anyway).
	if p, n := got["proto_mem"], d["RcvPruned"]; n == 0 || p < n {
		t.Errorf("proto_mem drops = %d, RcvPruned = %d: want RcvPruned > 0 and at most the drops", p, n)
	}
	if s.Missed != 0 {
		t.Errorf("%d program runs skipped by the kernel", s.Missed)
	}
	// Every one of these drops happened on an accepted (server) socket with the buffer shrunk by
	// SO_RCVBUF; SetListening was never called, so the role is unknown and the port 0.
	for _, dr := range s.Drops {
		if dr.Reason == "proto_mem" && (dr.Role != RoleUnknown || dr.Port != 0 || !dr.RcvbufLocked) {
			t.Errorf("proto_mem drop in an undescribed namespace: %+v, want role unknown, port 0, rcvbuf locked", dr)
		}
	}
}

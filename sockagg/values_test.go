package sockagg

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sockbuf/sockbuf_exporter/internal/socktest"
	"github.com/sockbuf/sockbuf_exporter/sockdiag"
)

// foldByHand sums sockets per (role, port, cgroup) as an engine that folds in the kernel would, with the
// drops of each socket as this scrape's delta, and feeds the sums through the value API.
func scrapeValues(a *Aggregator, name func(uint64) string, socks ...socktest.Sock) {
	a.Begin()
	type key struct {
		role   Role
		port   uint16
		cgroup uint64
	}
	listening := map[uint16]bool{}
	var states [16]uint64
	for _, f := range socks {
		s := f.Socket()
		states[s.State]++
		if s.State == sockdiag.StateListen {
			listening[f.Local] = true
			a.AddListenerValues(f.Local, uint64(f.RQ), uint64(f.WQ))
		}
	}
	sums := map[key]*Stats{}
	var order []key
	for _, f := range socks {
		if f.State == sockdiag.StateListen {
			continue
		}
		k := key{Client, f.Remote, f.Cgroup}
		if listening[f.Local] {
			k = key{Server, f.Local, f.Cgroup}
		}
		if sums[k] == nil {
			sums[k] = &Stats{}
			order = append(order, k)
		}
		s := f.Socket()
		sums[k].Add(s, a.fullRatio)
		sums[k].Drops += uint64(f.Drops)
	}
	for _, k := range order {
		a.AddGroup(k.role, k.port, k.cgroup, 0, sums[k])
	}
	a.AddStates(&states, ^uint32(0))
	a.Finish(name, nil)
}

// TestValuesEqualSockets checks that groups fed as values come out of Finish as the same groups fed socket by
// socket: names merged, capped, folded, with the same listeners and states.
func TestValuesEqualSockets(t *testing.T) {
	name := func(id uint64) string { return fmt.Sprint("cg", id%3) } // two ids can share a name
	var socks []socktest.Sock
	socks = append(socks, socktest.Listen(80, 3, 128), socktest.Listen(80, 1, 2), socktest.Listen(81, 0, 128))
	for i := range 40 {
		socks = append(socks,
			socktest.Sock{Local: 80, Remote: uint16(40000 + i), RQ: uint32(i), Cgroup: uint64(i % 5), Rmem: uint32(1000 * i), Rcvbuf: 20000},
			socktest.Sock{Local: uint16(50000 + i), Remote: uint16(9000 + i%7), WQ: 10, Cgroup: 1},
		)
	}
	for _, maxGroups := range []int{2, 3, 5, 200} {
		bySock, byVal := New(maxGroups, 0.9, true), New(maxGroups, 0.9, true)
		scrape(bySock, name, socks...)
		scrapeValues(byVal, name, socks...)
		if diff := cmp.Diff(rows(bySock.Groups()), rows(byVal.Groups())); diff != "" {
			t.Errorf("max %d: groups (-sockets +values):\n%s", maxGroups, diff)
		}
		if bySock.Folded() != byVal.Folded() {
			t.Errorf("max %d: folded %d by sockets, %d by values", maxGroups, bySock.Folded(), byVal.Folded())
		}
		if diff := cmp.Diff(bySock.Listeners(), byVal.Listeners()); diff != "" {
			t.Errorf("max %d: listeners (-sockets +values):\n%s", maxGroups, diff)
		}
		if *bySock.States() != *byVal.States() {
			t.Errorf("max %d: states %v by sockets, %v by values", maxGroups, *bySock.States(), *byVal.States())
		}
	}
}

func TestValuesOverflow(t *testing.T) {
	a := New(3, 0.9, false)
	a.Begin()
	a.AddGroup(Client, 443, 0, 0, &Stats{Sockets: 2, RecvQueue: 10, RecvQueueMax: 8, Drops: 1})
	a.AddGroup(Server, 80, 0, 0, &Stats{Sockets: 1})
	a.AddOverflow(Client, &Stats{Sockets: 5, RecvQueue: 1, RecvQueueMax: 1, Drops: 2, RcvbufLocked: 1, RcvbufLockedBytes: 4096})
	a.Finish(nil, nil)
	want := []row{
		{Role: "client", Port: "443", Sockets: 2, RecvQ: 10, RecvQMax: 8, Drops: 1},
		{Role: "server", Port: "80", Sockets: 1},
		{Role: "client", Port: "other", Sockets: 5, RecvQ: 1, RecvQMax: 1, Drops: 2},
	}
	if diff := cmp.Diff(want, rows(a.Groups())); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}
	if g := a.Groups()[2]; g.Stats.RcvbufLocked != 1 || g.Stats.RcvbufLockedBytes != 4096 {
		t.Errorf("other: locked %d (%d bytes), want 1 (4096)", g.Stats.RcvbufLocked, g.Stats.RcvbufLockedBytes)
	}
	if a.Folded() != 1 {
		t.Errorf("folded %d, want 1 (the overflow)", a.Folded())
	}

	// Overflow of the other role at the cap: its "other" group takes the last place.
	a.Begin()
	a.AddGroup(Client, 443, 0, 0, &Stats{Sockets: 2, RecvQueue: 10})
	a.AddGroup(Client, 444, 0, 0, &Stats{Sockets: 1, RecvQueue: 5})
	a.AddOverflow(Server, &Stats{Sockets: 1})
	a.Finish(nil, nil)
	if diff := cmp.Diff([]string{"443", "444", "other"}, ports(a.Groups())); diff != "" {
		t.Errorf("ports (-want +got):\n%s", diff)
	}
	a.Begin()
	a.AddGroup(Client, 443, 0, 0, &Stats{Sockets: 2, RecvQueue: 10})
	a.AddGroup(Client, 444, 0, 0, &Stats{Sockets: 1, RecvQueue: 5})
	a.AddGroup(Client, 445, 0, 0, &Stats{Sockets: 1, RecvQueue: 1})
	a.AddOverflow(Server, &Stats{Sockets: 1})
	a.Finish(nil, nil)
	if diff := cmp.Diff([]string{"443", "other", "other"}, ports(a.Groups())); diff != "" {
		t.Errorf("ports (-want +got):\n%s", diff)
	}
	if a.Folded() != 3 {
		t.Errorf("folded %d, want 3 (two groups and the overflow)", a.Folded())
	}

	// Overflow drops without sockets (a group gone between a failed walk and this one): the "other"
	// counter keeps them although no "other" group is live.
	a.Begin()
	a.AddGroup(Client, 443, 0, 0, &Stats{Sockets: 2})
	a.AddOverflow(Client, &Stats{Drops: 4})
	a.Finish(nil, nil)
	got := map[string]uint64{}
	for _, r := range rows(append(append([]Group(nil), a.Groups()...), a.OldGroups()...)) {
		got[r.Role+"/"+r.Port] = r.Drops
	}
	if diff := cmp.Diff(map[string]uint64{"client/443": 1, "client/other": 6}, got); diff != "" {
		t.Errorf("drops counters (-want +got):\n%s", diff)
	}
}

// TestValuesDropsAcrossFolding: per-group deltas from an engine keep every counter monotonic while groups
// fold and come back, as the per-socket path does.
func TestValuesDropsAcrossFolding(t *testing.T) {
	a := New(3, 0.9, false)
	steps := []struct {
		groups map[uint16]Stats
		want   map[string]uint64
	}{
		{map[uint16]Stats{443: {Sockets: 1, Drops: 5}, 80: {Sockets: 1}}, map[string]uint64{"443": 5, "80": 0}},
		{map[uint16]Stats{443: {Sockets: 1, Drops: 1}, 80: {Sockets: 1}, 1001: {Sockets: 1, RecvQueue: 30}, 1002: {Sockets: 1, RecvQueue: 20}},
			map[string]uint64{"1001": 0, "1002": 0, "other": 1}},
		{map[uint16]Stats{443: {Sockets: 1, Drops: 2}}, map[string]uint64{"443": 8, "other": 1}},
	}
	for i, st := range steps {
		a.Begin()
		for port, s := range st.groups {
			a.AddGroup(Client, port, 0, 0, &s)
		}
		a.Finish(nil, nil)
		got := map[string]uint64{}
		for _, r := range rows(append(append([]Group(nil), a.Groups()...), a.OldGroups()...)) {
			got[r.Port] = r.Drops
		}
		if diff := cmp.Diff(st.want, got); diff != "" {
			t.Errorf("step %d: drops (-want +got):\n%s", i, diff)
		}
	}
}

func TestHistogramAddCounts(t *testing.T) {
	a := New(200, 0.9, false)
	a.Begin()
	h := a.Locked()
	counts := make([]uint64, len(a.SizeBounds())+4) // an engine's fixed-size array: the tail is above every bound
	counts[0], counts[1], counts[len(counts)-1] = 2, 1, 3
	if err := h.AddCounts(counts, 6, 1000); err != nil {
		t.Fatal(err)
	}
	cum := h.Cumulative()
	if cum[65536] != 2 || cum[131072] != 3 || cum[33554432] != 3 || h.Count() != 6 || h.Sum() != 1000 {
		t.Errorf("cumulative %v count %d sum %g", cum, h.Count(), h.Sum())
	}
	if err := h.AddCounts(counts[:3], 1, 1); err == nil {
		t.Error("AddCounts with too few buckets: no error")
	}
	a.Begin()
	if h.Count() != 0 {
		t.Error("Begin does not reset the locked histogram")
	}
}

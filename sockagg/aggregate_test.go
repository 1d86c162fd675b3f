package sockagg

import (
	"github.com/sockbuf/sockbuf_exporter/internal/socktest"

	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sockbuf/sockbuf_exporter/sockdiag"
)

// scrape runs one scrape of the Aggregator over listeners and sockets.
func scrape(a *Aggregator, name func(uint64) string, socks ...socktest.Sock) {
	a.Begin()
	for _, f := range socks {
		if f.State == sockdiag.StateListen {
			a.AddListener(f.Socket())
		}
	}
	for _, f := range socks {
		if f.State != sockdiag.StateListen {
			a.Add(f.Socket(), int32(f.Inode))
		}
	}
	a.Finish(name, func(i int32) string { return fmt.Sprint("proc", i) })
}

// row is a group as a test wants to read it.
type row struct {
	Role, Port, Cgroup        string
	Process                   string
	Sockets, RecvQ, RecvQMax  uint64
	SendQ, Rmem, Rcvbuf, Full uint64
	Drops                     uint64
}

func rows(gs []Group) []row {
	var out []row
	for _, g := range gs {
		port := fmt.Sprint(g.Labels.Port)
		if g.Labels.Other {
			port = FoldedPort
		}
		out = append(out, row{
			Role: RoleNames[g.Labels.Role], Port: port, Cgroup: g.Labels.Cgroup, Process: g.Labels.Process,
			Sockets: g.Stats.Sockets, RecvQ: g.Stats.RecvQueue, RecvQMax: g.Stats.RecvQueueMax,
			SendQ: g.Stats.SendQueue, Rmem: g.Stats.RmemAlloc, Rcvbuf: g.Stats.Rcvbuf, Full: g.Stats.Full,
			Drops: g.Drops,
		})
	}
	return out
}

func TestAggregatorGroupsByRoleAndPort(t *testing.T) {
	a := New(200, 0.9, true)
	names := map[uint64]string{7: "nginx.service", 8: "app.scope", 9: "nginx.service"}
	scrape(a, func(id uint64) string { return names[id] },
		socktest.Listen(80, 0, 511), socktest.Listen(80, 2, 511), socktest.Listen(443, 0, 4096),
		// Server sockets of port 80: their peers' ephemeral ports must not matter.
		socktest.Sock{Local: 80, Remote: 50001, RQ: 100, Rmem: 1000, Rcvbuf: 1000, Cgroup: 7},
		socktest.Sock{Local: 80, Remote: 50002, RQ: 300, WQ: 5, Rmem: 2000, Rcvbuf: 4000, Cgroup: 7},
		// Another cgroup id with the same name: summed into the same group.
		socktest.Sock{Local: 80, Remote: 50003, RQ: 50, Rcvbuf: 4000, Cgroup: 9},
		socktest.Sock{Local: 443, Remote: 50004, State: sockdiag.StateCloseWait, Cgroup: 7},
		// Client sockets: grouped by the remote port, whatever their local port.
		socktest.Sock{Local: 40001, Remote: 5432, WQ: 10, Cgroup: 8},
		socktest.Sock{Local: 40002, Remote: 5432, RQ: 7, Cgroup: 8},
		// A TIME_WAIT socket has no memory and no cgroup.
		socktest.Sock{Local: 40003, Remote: 5432, State: sockdiag.StateTimeWait, NoMem: true},
	)
	want := []row{
		{Role: "server", Port: "80", Cgroup: "nginx.service", Sockets: 3, RecvQ: 450, RecvQMax: 300, SendQ: 5,
			Rmem: 3000, Rcvbuf: 9000, Full: 1},
		{Role: "client", Port: "5432", Cgroup: "app.scope", Sockets: 2, RecvQ: 7, RecvQMax: 7, SendQ: 10,
			Rcvbuf: 2 * 131072},
		// Ties in size and queues: servers first, then by port.
		{Role: "server", Port: "443", Cgroup: "nginx.service", Sockets: 1, Rcvbuf: 131072},
		{Role: "client", Port: "5432", Sockets: 1},
	}
	if diff := cmp.Diff(want, rows(a.out)); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}
	if a.folded != 0 || len(a.outOld) != 0 {
		t.Errorf("folded %d, old counters %d; want none", a.folded, len(a.outOld))
	}
	wantListen := []Listener{{Port: 80, Length: 2, Limit: 511}, {Port: 443, Limit: 4096}}
	if diff := cmp.Diff(wantListen, a.outListn, cmp.AllowUnexported(Listener{})); diff != "" {
		t.Errorf("listeners (-want +got):\n%s", diff)
	}
	wantStates := map[uint8]uint64{sockdiag.StateEstablished: 5, sockdiag.StateCloseWait: 1, sockdiag.StateTimeWait: 1, sockdiag.StateListen: 3}
	gotStates := map[uint8]uint64{}
	for st, n := range a.states {
		if n != 0 {
			gotStates[uint8(st)] = n
		}
	}
	if diff := cmp.Diff(wantStates, gotStates); diff != "" {
		t.Errorf("states (-want +got):\n%s", diff)
	}
}

// TestAggregatorListenQueueFullest checks that a port with several LISTEN sockets (IPv4 and IPv6,
// SO_REUSEPORT) shows its fullest one: the kernel drops connections on a full accept queue even when the
// port's other listeners have room, so a sum would hide it.
func TestAggregatorListenQueueFullest(t *testing.T) {
	a := New(3, 0.9, false)
	scrape(a, nil,
		// One full, one empty: 128/128, not 128/256.
		socktest.Listen(80, 0, 128), socktest.Listen(80, 128, 128), socktest.Listen(80, 3, 128),
		// The fullest by ratio, not by Length: 5/10 beats 50/4096.
		socktest.Listen(443, 50, 4096), socktest.Listen(443, 5, 10),
		// Equal ratios: the longer queue; an empty listener with backlog 0 is not full.
		socktest.Listen(8080, 1, 2), socktest.Listen(8080, 2, 4), socktest.Listen(8080, 0, 0),
		// Beyond the cap (3 ports, fullest first): "other" is the fullest of the folded ports too.
		socktest.Listen(9000, 1, 100), socktest.Listen(9001, 10, 1000), socktest.Listen(9002, 0, 5),
	)
	want := []Listener{
		{Port: 80, Length: 128, Limit: 128},
		{Port: 443, Length: 5, Limit: 10},
		{Other: true, Length: 2, Limit: 4},
	}
	if diff := cmp.Diff(want, a.outListn, cmp.AllowUnexported(Listener{})); diff != "" {
		t.Errorf("listeners (-want +got):\n%s", diff)
	}
	// The order in which the dump brings the listeners does not matter.
	scrape(a, nil, socktest.Listen(80, 128, 128), socktest.Listen(80, 0, 128), socktest.Listen(80, 3, 128))
	if got := a.outListn[0]; got.Length != 128 || got.Limit != 128 {
		t.Errorf("port 80 in the other order: length %d, limit %d; want 128, 128", got.Length, got.Limit)
	}
}

func TestAggregatorWithoutCgroups(t *testing.T) {
	a := New(200, 0.9, false)
	scrape(a, func(uint64) string { t.Error("cgroup name asked although cgroups are off"); return "x" },
		socktest.Sock{Local: 40001, Remote: 443, Cgroup: 7},
		socktest.Sock{Local: 40002, Remote: 443, Cgroup: 8},
		// The process index (here the inode) names a group of its own.
		socktest.Sock{Local: 40003, Remote: 443, Inode: 3},
	)
	want := []row{
		{Role: "client", Port: "443", Sockets: 2, Rcvbuf: 2 * 131072},
		{Role: "client", Port: "443", Process: "proc3", Sockets: 1, Rcvbuf: 131072},
	}
	if diff := cmp.Diff(want, rows(a.out)); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}
}

func TestAggregatorFoldsBeyondCap(t *testing.T) {
	const maxGroups = 5
	a := New(maxGroups, 0.9, false)
	socks := []socktest.Sock{socktest.Listen(80, 0, 128), socktest.Listen(81, 0, 128)}
	// 2 server groups and 30 client groups. Client port 9000 has full sockets, 9001 the most queued bytes:
	// they must be kept ahead of the bigger but idle groups.
	socks = append(socks,
		socktest.Sock{Local: 80, Remote: 1},
		socktest.Sock{Local: 81, Remote: 1},
		socktest.Sock{Local: 81, Remote: 2},
		socktest.Sock{Local: 30000, Remote: 9000, Rmem: 130000, Rcvbuf: 131072},
		socktest.Sock{Local: 30001, Remote: 9001, RQ: 5000},
	)
	for p := range 28 {
		for range 3 {
			socks = append(socks, socktest.Sock{Local: uint16(31000 + len(socks)), Remote: uint16(10000 + p), RQ: 1})
		}
	}
	scrape(a, nil, socks...)
	if len(a.out) > maxGroups {
		t.Fatalf("%d groups exported, cap is %d", len(a.out), maxGroups)
	}
	got := rows(a.out)
	want := []row{
		{Role: "client", Port: "9000", Sockets: 1, Rmem: 130000, Rcvbuf: 131072, Full: 1},
		{Role: "client", Port: "9001", Sockets: 1, RecvQ: 5000, RecvQMax: 5000, Rcvbuf: 131072},
		{Role: "client", Port: "10000", Sockets: 3, RecvQ: 3, RecvQMax: 1, Rcvbuf: 3 * 131072},
		// The rest: 27 client groups of 3 sockets and both server groups (3 sockets).
		{Role: "client", Port: "other", Sockets: 81, RecvQ: 81, RecvQMax: 1, Rcvbuf: 81 * 131072},
		{Role: "server", Port: "other", Sockets: 3, Rcvbuf: 3 * 131072},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}
	if a.folded != 29 {
		t.Errorf("folded = %d, want 29", a.folded)
	}
	var total uint64
	for _, g := range a.out {
		total += g.Stats.Sockets
	}
	if total != 89 {
		t.Errorf("sockets over all groups = %d, want 89: folding must not lose sockets", total)
	}

	// Only one role beyond the cap: one "other" group, so one more real group fits.
	a = New(3, 0.9, false)
	scrape(a, nil, socktest.Sock{Remote: 1, RQ: 3}, socktest.Sock{Remote: 2, RQ: 2}, socktest.Sock{Remote: 3, RQ: 1}, socktest.Sock{Remote: 4})
	if diff := cmp.Diff([]string{"1", "2", "other"}, ports(a.out)); diff != "" {
		t.Errorf("ports (-want +got):\n%s", diff)
	}
}

func ports(gs []Group) []string {
	var out []string
	for _, r := range rows(gs) {
		out = append(out, r.Port)
	}
	return out
}

func TestAggregatorZeroWindow(t *testing.T) {
	a := New(200, 0.9, false)
	scrape(a, nil,
		socktest.Sock{Remote: 1, RcvWnd: 1},                                 // zero window
		socktest.Sock{Remote: 1, RcvWnd: 65536},                             // open
		socktest.Sock{Remote: 1},                                            // no tcp_info
		socktest.Sock{Remote: 1, RcvWnd: 1, State: sockdiag.StateCloseWait}, // not ESTABLISHED
		socktest.Sock{Remote: 2, RcvWnd: 1},
	)
	got := map[uint16]uint64{}
	for _, g := range a.out {
		got[g.Labels.Port] = g.Stats.ZeroWindow
	}
	if diff := cmp.Diff(map[uint16]uint64{1: 1, 2: 1}, got); diff != "" {
		t.Errorf("zero-window sockets (-want +got):\n%s", diff)
	}
}

func TestAggregatorFillRatio(t *testing.T) {
	a := New(200, 0.8, false) // 0.8 is not a default bucket: it is added
	scrape(a, nil,
		socktest.Listen(80, 0, 10),
		socktest.Sock{Remote: 1, Rmem: 0, Rcvbuf: 1000},    // 0
		socktest.Sock{Remote: 1, Rmem: 50, Rcvbuf: 1000},   // 0.05
		socktest.Sock{Remote: 1, Rmem: 500, Rcvbuf: 1000},  // 0.5
		socktest.Sock{Remote: 1, Rmem: 799, Rcvbuf: 1000},  // 0.799: not full
		socktest.Sock{Remote: 1, Rmem: 800, Rcvbuf: 1000},  // 0.8: full, exactly at the ratio
		socktest.Sock{Remote: 1, Rmem: 1000, Rcvbuf: 1000}, // 1
		socktest.Sock{Remote: 1, Rmem: 1800, Rcvbuf: 1000}, // 1.8: over rcvbuf, before pruning
		socktest.Sock{Remote: 1, State: sockdiag.StateTimeWait, NoMem: true},
	)
	if got := a.out[0].Stats.Full; got != 3 {
		t.Errorf("full sockets = %d, want 3", got)
	}
	want := map[float64]uint64{0: 1, 0.1: 2, 0.25: 2, 0.5: 3, 0.75: 3, 0.8: 5, 0.9: 5, 1: 6, 1.5: 6}
	if diff := cmp.Diff(want, a.fill.Cumulative()); diff != "" {
		t.Errorf("fill buckets (-want +got):\n%s", diff)
	}
	if a.fill.count != 7 {
		t.Errorf("fill count = %d, want 7 (listener and TIME_WAIT excluded)", a.fill.count)
	}
	if want := 0.05 + 0.5 + 0.799 + 0.8 + 1 + 1.8; a.fill.sum < want-1e-9 || a.fill.sum > want+1e-9 {
		t.Errorf("fill sum = %g, want %g", a.fill.sum, want)
	}
}

func TestAggregatorRcvbufBuckets(t *testing.T) {
	a := New(200, 0.9, false)
	scrape(a, nil,
		socktest.Sock{Remote: 1, Rcvbuf: 131072},   // tcp_rmem default
		socktest.Sock{Remote: 1, Rcvbuf: 131072},   //
		socktest.Sock{Remote: 1, Rcvbuf: 425984},   // SO_RCVBUF capped by the default rmem_max
		socktest.Sock{Remote: 1, Rcvbuf: 1500000},  // autotuned
		socktest.Sock{Remote: 1, Rcvbuf: 2097152},  // SO_RCVBUF 1 MiB
		socktest.Sock{Remote: 1, Rcvbuf: 4194304},  // SO_RCVBUF 2 MiB
		socktest.Sock{Remote: 1, Rcvbuf: 6291456},  // tcp_rmem default max
		socktest.Sock{Remote: 1, Rcvbuf: 20000000}, // raised max
		socktest.Sock{Remote: 1, Rcvbuf: 99999999}, // above every bucket
		// Not ESTABLISHED: not in this Histogram.
		socktest.Sock{Remote: 1, Rcvbuf: 65536, State: sockdiag.StateCloseWait},
	)
	want := map[float64]uint64{
		65536: 0, 131072: 2, 262144: 2, 425984: 3, 1048576: 3,
		2097151: 4, 2097152: 5, 4194303: 5, 4194304: 6,
		6291456: 7, 8388608: 7, 16777216: 7, 33554432: 8,
	}
	if diff := cmp.Diff(want, a.size.Cumulative()); diff != "" {
		t.Errorf("rcvbuf buckets (-want +got):\n%s", diff)
	}
	if a.size.count != 9 {
		t.Errorf("rcvbuf count = %d, want 9", a.size.count)
	}
}

func TestAggregatorDropsCounter(t *testing.T) {
	a := New(200, 0.9, false)
	drops := func() map[string]uint64 {
		out := map[string]uint64{}
		for _, g := range append(append([]Group(nil), a.out...), a.outOld...) {
			out[fmt.Sprintf("%s/%d", RoleNames[g.Labels.Role], g.Labels.Port)] = g.Drops
		}
		return out
	}
	steps := []struct {
		name  string
		socks []socktest.Sock
		want  map[string]uint64
	}{
		{"first sight counts everything", []socktest.Sock{
			{Remote: 443, Cookie: 1, Drops: 5},
			{Remote: 443, Cookie: 2, Drops: 3},
			{Remote: 443, Cookie: 3},
		}, map[string]uint64{"client/443": 8}},
		{"deltas add; a closed socket keeps its drops", []socktest.Sock{
			{Remote: 443, Cookie: 1, Drops: 7},
			{Remote: 443, Cookie: 3},
		}, map[string]uint64{"client/443": 10}},
		{"cookie reused by a new socket with fewer drops", []socktest.Sock{
			{Remote: 443, Cookie: 1, Drops: 2},
			{Remote: 443, Cookie: 3, Drops: 1},
		}, map[string]uint64{"client/443": 13}},
		{"unchanged", []socktest.Sock{
			{Remote: 443, Cookie: 1, Drops: 2},
			{Remote: 443, Cookie: 3, Drops: 1},
		}, map[string]uint64{"client/443": 13}},
		{"all sockets of the group closed: the counter stays", []socktest.Sock{
			{Remote: 80, Cookie: 9},
		}, map[string]uint64{"client/443": 13, "client/80": 0}},
		{"the group comes back: the counter goes on", []socktest.Sock{
			{Remote: 443, Cookie: 10, Drops: 4},
		}, map[string]uint64{"client/443": 17}},
	}
	var last uint64
	for _, st := range steps {
		scrape(a, nil, st.socks...)
		got := drops()
		if diff := cmp.Diff(st.want, got); diff != "" {
			t.Errorf("%s: drops (-want +got):\n%s", st.name, diff)
		}
		if got["client/443"] < last {
			t.Errorf("%s: counter went down from %d to %d", st.name, last, got["client/443"])
		}
		last = got["client/443"]
	}
	if n := len(a.tracker.byCookie); n != 1 {
		t.Errorf("%d cookies tracked, want 1 (only the live socket that dropped)", n)
	}
}

// TestAggregatorDropsFoldUnfold checks that no drops counter goes down when a group folds into port="other"
// and comes back, and that the "other" counter itself only grows while its members change.
func TestAggregatorDropsFoldUnfold(t *testing.T) {
	a := New(3, 0.9, false) // one role: two real groups and "other"
	// busy are three groups with more queued bytes than port 443: they push it into "other".
	busy := []socktest.Sock{{Remote: 1001, RQ: 30}, {Remote: 1002, RQ: 20}, {Remote: 1003, RQ: 10}}
	steps := []struct {
		name  string
		socks []socktest.Sock
		want  map[string]uint64
	}{
		{"443 exported", []socktest.Sock{
			{Remote: 443, Cookie: 1, Drops: 5}, {Remote: 80, Cookie: 2},
		}, map[string]uint64{"443": 5, "80": 0}},
		{"443 folded: its new drop goes to other", append([]socktest.Sock{
			{Remote: 443, Cookie: 1, Drops: 6}, {Remote: 80, Cookie: 2},
		}, busy...), map[string]uint64{"1001": 0, "1002": 0, "other": 1}},
		{"443 back: it kept its drops, the folded one included", []socktest.Sock{
			{Remote: 443, Cookie: 1, Drops: 7}, {Remote: 80, Cookie: 2},
		}, map[string]uint64{"443": 7, "80": 0, "other": 1}},
		{"443 folded again: other grows from where it was", append([]socktest.Sock{
			{Remote: 443, Cookie: 1, Drops: 9}, {Remote: 80, Cookie: 2},
		}, busy...), map[string]uint64{"1001": 0, "1002": 0, "other": 3}},
		{"other now holds a member that never dropped: it must not go down", append([]socktest.Sock{
			{Remote: 80, Cookie: 2},
		}, busy...), map[string]uint64{"1001": 0, "1002": 0, "other": 3}},
		{"443's socket closed while folded; a new one drops", []socktest.Sock{
			{Remote: 443, Cookie: 3, Drops: 1},
		}, map[string]uint64{"443": 10, "other": 3}},
		{"at the cap without folding: other is not exported", []socktest.Sock{
			{Remote: 443, Cookie: 3, Drops: 1}, {Remote: 1001, RQ: 30}, {Remote: 1002, RQ: 20},
		}, map[string]uint64{"443": 10, "1001": 0, "1002": 0}},
		{"folding again: other goes on from 3", append([]socktest.Sock{
			{Remote: 443, Cookie: 3, Drops: 2},
		}, busy...), map[string]uint64{"1001": 0, "1002": 0, "other": 4}},
	}
	last := map[string]uint64{}
	for _, st := range steps {
		scrape(a, nil, st.socks...)
		got := map[string]uint64{}
		for _, r := range rows(append(append([]Group(nil), a.out...), a.outOld...)) {
			got[r.Port] = r.Drops
		}
		if diff := cmp.Diff(st.want, got); diff != "" {
			t.Errorf("%s: drops (-want +got):\n%s", st.name, diff)
		}
		for k, v := range got {
			if v < last[k] {
				t.Errorf("%s: counter of port %s went down from %d to %d", st.name, k, last[k], v)
			}
			last[k] = v
		}
		if n := len(a.out) + len(a.outOld); n > 3 {
			t.Errorf("%s: %d drops series, cap is 3", st.name, n)
		}
	}
}

func TestAggregatorDropsRestartedDump(t *testing.T) {
	a := New(200, 0.9, false)
	scrape(a, nil, socktest.Sock{Remote: 443, Cookie: 1, Drops: 5})
	// The kernel interrupts the dump: the collector resets and the socket comes again.
	a.Begin()
	a.Add(socktest.Sock{Remote: 443, Cookie: 1, Drops: 9}.Socket(), 0)
	a.ResetSockets()
	a.Add(socktest.Sock{Remote: 443, Cookie: 1, Drops: 9}.Socket(), 0)
	a.Finish(nil, nil)
	if got := a.out[0].Drops; got != 9 {
		t.Errorf("drops after a restarted dump = %d, want 9", got)
	}
	// A scrape that failed half-way (finish never called) must not lose or double the delta either.
	a.Begin()
	a.Add(socktest.Sock{Remote: 443, Cookie: 1, Drops: 12}.Socket(), 0)
	scrape(a, nil, socktest.Sock{Remote: 443, Cookie: 1, Drops: 12})
	if got := a.out[0].Drops; got != 12 {
		t.Errorf("drops after a failed scrape = %d, want 12", got)
	}
}

func TestAggregatorDropCountersBounded(t *testing.T) {
	a := New(4, 0.9, false)
	// Groups that dropped and then closed leave counters behind; at most the cap's worth stay.
	for p := range 10 {
		scrape(a, nil, socktest.Sock{Remote: uint16(1000 + p), Cookie: uint64(p + 1), Drops: 1})
	}
	scrape(a, nil, socktest.Sock{Remote: 1, Cookie: 100})
	if n := len(a.out) + len(a.outOld); n > 4 {
		t.Errorf("%d drops series, cap is 4", n)
	}
	if diff := cmp.Diff([]string{"1007", "1008", "1009"}, ports(a.outOld)); diff != "" {
		t.Errorf("exported old counters (-want +got):\n%s", diff)
	}
	// The counters without room for a series are remembered, up to their own bound.
	if len(a.dropTotals) != 10 {
		t.Errorf("%d counters remembered, want 10", len(a.dropTotals))
	}
	a.dropLimit = 6
	scrape(a, nil, socktest.Sock{Remote: 1, Cookie: 100, Drops: 1})
	var kept []uint16
	for l := range a.dropTotals {
		kept = append(kept, l.Port)
	}
	slices.Sort(kept)
	// The live group's counter and the five of the groups live last; the oldest are forgotten first.
	if diff := cmp.Diff([]uint16{1, 1005, 1006, 1007, 1008, 1009}, kept); diff != "" {
		t.Errorf("remembered counters beyond the bound (-want +got):\n%s", diff)
	}
	for _, g := range a.outOld {
		if _, ok := a.dropTotals[g.Labels]; !ok {
			t.Errorf("forgotten counter of port %d still exported", g.Labels.Port)
		}
	}

	d := dropTracker{byCookie: map[uint64]dropEntry{}, limit: 2}
	d.gen = 1
	for c := range uint64(5) {
		d.observe(c, 1)
	}
	// Two with a slot, two more remembered without one.
	if len(d.byCookie) != 4 || d.slots != 2 {
		t.Errorf("tracker holds %d cookies, %d with a slot; want 4, 2 (limit 2)", len(d.byCookie), d.slots)
	}
}

// TestAggregatorDropsLateSlot checks that a socket first seen while the tracker was full contributes only
// the drops after it was first seen once a slot frees, not its whole lifetime's sk_drops at once.
func TestAggregatorDropsLateSlot(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit int
		steps [][]socktest.Sock
		want  []uint64 // client/443 after each step
	}{
		{
			// Cookie 3 comes when both slots are taken and is remembered without one; cookie 1 closes, and
			// the next scrape gives cookie 3 the slot: its 10 drops since then count, not its 1,012.
			name: "remembered without a slot", limit: 2,
			steps: [][]socktest.Sock{
				{{Remote: 443, Cookie: 1, Drops: 1}, {Remote: 443, Cookie: 2, Drops: 1}, {Remote: 443, Cookie: 3, Drops: 1000}},
				{{Remote: 443, Cookie: 2, Drops: 1}, {Remote: 443, Cookie: 3, Drops: 1002}},
				{{Remote: 443, Cookie: 2, Drops: 1}, {Remote: 443, Cookie: 3, Drops: 1012}},
				{{Remote: 443, Cookie: 2, Drops: 1}, {Remote: 443, Cookie: 3, Drops: 1014}},
			},
			want: []uint64{2, 2, 12, 14},
		},
		{
			// Beyond what the tracker can even remember, a socket is lost; one seen for the first time on the
			// next scrape may be that one, so its first observation only sets its baseline.
			name: "lost", limit: 1,
			steps: [][]socktest.Sock{
				{{Remote: 443, Cookie: 1, Drops: 1}, {Remote: 443, Cookie: 2, Drops: 5}, {Remote: 443, Cookie: 3, Drops: 1000}},
				{{Remote: 443, Cookie: 3, Drops: 1002}},
				{{Remote: 443, Cookie: 3, Drops: 1005}},
				{{Remote: 443, Cookie: 3, Drops: 1007}},
				{{Remote: 443, Cookie: 3, Drops: 1007}, {Remote: 443, Cookie: 4, Drops: 3}}, // no slot for 4
				{{Remote: 443, Cookie: 4, Drops: 4}},                                        // 3's slot frees at the end of this scrape
				{{Remote: 443, Cookie: 4, Drops: 9}},
			},
			want: []uint64{1, 1, 1, 3, 3, 3, 8},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := New(200, 0.9, false)
			a.tracker.limit = tc.limit
			for i, socks := range tc.steps {
				scrape(a, nil, socks...)
				var got uint64
				for _, g := range append(append([]Group(nil), a.out...), a.outOld...) {
					got += g.Drops
				}
				if got != tc.want[i] {
					t.Errorf("step %d: drops %d, want %d", i+1, got, tc.want[i])
				}
			}
		})
	}
}

// TestAggregatorDropsWrap checks that sk_drops wrapping at 2^32 (it is a 32-bit atomic_t) counts the drops
// across the wrap, while a value that falls from the lower half is a socket that is not the one seen before.
func TestAggregatorDropsWrap(t *testing.T) {
	a := New(200, 0.9, false)
	var got []uint64
	for _, drops := range []uint32{1<<32 - 6, 1<<32 - 1, 5, 20} {
		scrape(a, nil, socktest.Sock{Remote: 443, Cookie: 1, Drops: drops})
		got = append(got, a.out[0].Drops)
	}
	if diff := cmp.Diff([]uint64{1<<32 - 6, 1<<32 - 1, 1<<32 + 5, 1<<32 + 20}, got); diff != "" {
		t.Errorf("drops across a wrap (-want +got):\n%s", diff)
	}
}

// BenchmarkAggregate measures the per-socket cost of the aggregation alone: it must not allocate.
func BenchmarkAggregate(b *testing.B) {
	const n = 200_000
	socks := make([]*sockdiag.Socket, n)
	for i := range socks {
		f := socktest.Sock{Local: uint16(32768 + i%20000), Remote: uint16(443 + i%50), RQ: uint32(i % 7), Rcvbuf: 131072,
			Rmem: uint32(i % 131072), Cookie: uint64(i), Cgroup: uint64(i % 20)}
		if i%2 == 0 {
			f.Local, f.Remote = uint16(8000+i%10), uint16(32768+i%20000)
		}
		if i%100 == 0 {
			f.Drops = uint32(i % 9)
		}
		socks[i] = f.Socket()
	}
	listeners := make([]*sockdiag.Socket, 10)
	for i := range listeners {
		listeners[i] = socktest.Listen(uint16(8000+i), 0, 128).Socket()
	}
	name := func(id uint64) string { return fmt.Sprint("cg", id%5) }
	a := New(200, 0.9, true)
	run := func() {
		a.Begin()
		for _, l := range listeners {
			a.AddListener(l)
		}
		for _, s := range socks {
			a.Add(s, 0)
		}
		a.Finish(name, nil)
	}
	run() // grow the maps to this host's size
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		run()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/socket")
}

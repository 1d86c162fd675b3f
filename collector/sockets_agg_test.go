package collector

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sockbuf/sockbuf_exporter/sockdiag"
)

// fakeSock describes a synthetic socket; zero fields take harmless defaults.
type fakeSock struct {
	state         uint8 // StateEstablished when 0
	local, remote uint16
	rq, wq        uint32
	rmem, rcvbuf  uint32
	drops         uint32
	cookie        uint64
	cgroup        uint64
	inode         uint32
	noMem         bool // a TIME_WAIT or SYN_RECV mini-socket
	rcvWnd        int  // tcpi_rcv_wnd + 1 when tcp_info is present; 0: no tcp_info
}

func (f fakeSock) socket() *sockdiag.Socket {
	s := &sockdiag.Socket{
		Family: sockdiag.FamilyInet,
		State:  f.state,
		Src:    netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), f.local),
		Dst:    netip.AddrPortFrom(netip.MustParseAddr("10.0.0.2"), f.remote),
		RQueue: f.rq, WQueue: f.wq,
		Cookie: f.cookie, Inode: f.inode,
		CgroupID: f.cgroup, HasCgroupID: f.cgroup != 0,
	}
	if s.State == 0 {
		s.State = sockdiag.StateEstablished
	}
	if s.State == sockdiag.StateListen {
		s.Dst = netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
	}
	if f.rcvWnd > 0 {
		s.TCPInfoLen = sockdiag.TCPInfoLenRcvWnd
		s.TCPInfo.RcvWnd = uint32(f.rcvWnd - 1)
	}
	if !f.noMem {
		s.HasSKMemInfo, s.SKMemInfoLen = true, 36
		s.SKMemInfo = sockdiag.SKMemInfo{RmemAlloc: f.rmem, Rcvbuf: f.rcvbuf, Drops: f.drops}
		if s.SKMemInfo.Rcvbuf == 0 {
			s.SKMemInfo.Rcvbuf = 131072
		}
	}
	return s
}

func listenSock(port uint16, length, limit uint32) fakeSock {
	return fakeSock{state: sockdiag.StateListen, local: port, rq: length, wq: limit}
}

// scrape runs one scrape of the aggregator over listeners and sockets.
func scrape(a *aggregator, name func(uint64) string, socks ...fakeSock) {
	a.begin()
	for _, f := range socks {
		if f.state == sockdiag.StateListen {
			a.addListener(f.socket())
		}
	}
	for _, f := range socks {
		if f.state != sockdiag.StateListen {
			a.add(f.socket(), int32(f.inode))
		}
	}
	a.finish(name, func(i int32) string { return fmt.Sprint("proc", i) })
}

// row is a group as a test wants to read it.
type row struct {
	Role, Port, Cgroup        string
	Process                   string
	Sockets, RecvQ, RecvQMax  uint64
	SendQ, Rmem, Rcvbuf, Full uint64
	Drops                     uint64
}

func rows(gs []group) []row {
	var out []row
	for _, g := range gs {
		port := fmt.Sprint(g.labels.port)
		if g.labels.other {
			port = foldedPort
		}
		out = append(out, row{
			Role: roleNames[g.labels.role], Port: port, Cgroup: g.labels.cgroup, Process: g.labels.process,
			Sockets: g.stats.sockets, RecvQ: g.stats.recvQueue, RecvQMax: g.stats.recvQueueMax,
			SendQ: g.stats.sendQueue, Rmem: g.stats.rmemAlloc, Rcvbuf: g.stats.rcvbuf, Full: g.stats.full,
			Drops: g.drops,
		})
	}
	return out
}

func TestAggregatorGroupsByRoleAndPort(t *testing.T) {
	a := newAggregator(200, 0.9, true)
	names := map[uint64]string{7: "nginx.service", 8: "app.scope", 9: "nginx.service"}
	scrape(a, func(id uint64) string { return names[id] },
		listenSock(80, 0, 511), listenSock(80, 2, 511), listenSock(443, 0, 4096),
		// Server sockets of port 80: their peers' ephemeral ports must not matter.
		fakeSock{local: 80, remote: 50001, rq: 100, rmem: 1000, rcvbuf: 1000, cgroup: 7},
		fakeSock{local: 80, remote: 50002, rq: 300, wq: 5, rmem: 2000, rcvbuf: 4000, cgroup: 7},
		// Another cgroup id with the same name: summed into the same group.
		fakeSock{local: 80, remote: 50003, rq: 50, rcvbuf: 4000, cgroup: 9},
		fakeSock{local: 443, remote: 50004, state: sockdiag.StateCloseWait, cgroup: 7},
		// Client sockets: grouped by the remote port, whatever their local port.
		fakeSock{local: 40001, remote: 5432, wq: 10, cgroup: 8},
		fakeSock{local: 40002, remote: 5432, rq: 7, cgroup: 8},
		// A TIME_WAIT socket has no memory and no cgroup.
		fakeSock{local: 40003, remote: 5432, state: sockdiag.StateTimeWait, noMem: true},
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
	wantListen := []listenStats{{port: 80, length: 2, limit: 511}, {port: 443, limit: 4096}}
	if diff := cmp.Diff(wantListen, a.outListn, cmp.AllowUnexported(listenStats{})); diff != "" {
		t.Errorf("listeners (-want +got):\n%s", diff)
	}
	wantStates := map[string]uint64{"established": 5, "close_wait": 1, "time_wait": 1, "listen": 3}
	gotStates := map[string]uint64{}
	for st, n := range a.states {
		if n != 0 {
			gotStates[tcpStateLabels[st]] = n
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
	a := newAggregator(3, 0.9, false)
	scrape(a, nil,
		// One full, one empty: 128/128, not 128/256.
		listenSock(80, 0, 128), listenSock(80, 128, 128), listenSock(80, 3, 128),
		// The fullest by ratio, not by length: 5/10 beats 50/4096.
		listenSock(443, 50, 4096), listenSock(443, 5, 10),
		// Equal ratios: the longer queue; an empty listener with backlog 0 is not full.
		listenSock(8080, 1, 2), listenSock(8080, 2, 4), listenSock(8080, 0, 0),
		// Beyond the cap (3 ports, fullest first): "other" is the fullest of the folded ports too.
		listenSock(9000, 1, 100), listenSock(9001, 10, 1000), listenSock(9002, 0, 5),
	)
	want := []listenStats{
		{port: 80, length: 128, limit: 128},
		{port: 443, length: 5, limit: 10},
		{other: true, length: 2, limit: 4},
	}
	if diff := cmp.Diff(want, a.outListn, cmp.AllowUnexported(listenStats{})); diff != "" {
		t.Errorf("listeners (-want +got):\n%s", diff)
	}
	// The order in which the dump brings the listeners does not matter.
	scrape(a, nil, listenSock(80, 128, 128), listenSock(80, 0, 128), listenSock(80, 3, 128))
	if got := a.outListn[0]; got.length != 128 || got.limit != 128 {
		t.Errorf("port 80 in the other order: length %d, limit %d; want 128, 128", got.length, got.limit)
	}
}

func TestAggregatorWithoutCgroups(t *testing.T) {
	a := newAggregator(200, 0.9, false)
	scrape(a, func(uint64) string { t.Error("cgroup name asked although cgroups are off"); return "x" },
		fakeSock{local: 40001, remote: 443, cgroup: 7},
		fakeSock{local: 40002, remote: 443, cgroup: 8},
		// The process index (here the inode) names a group of its own.
		fakeSock{local: 40003, remote: 443, inode: 3},
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
	a := newAggregator(maxGroups, 0.9, false)
	socks := []fakeSock{listenSock(80, 0, 128), listenSock(81, 0, 128)}
	// 2 server groups and 30 client groups. Client port 9000 has full sockets, 9001 the most queued bytes:
	// they must be kept ahead of the bigger but idle groups.
	socks = append(socks,
		fakeSock{local: 80, remote: 1},
		fakeSock{local: 81, remote: 1},
		fakeSock{local: 81, remote: 2},
		fakeSock{local: 30000, remote: 9000, rmem: 130000, rcvbuf: 131072},
		fakeSock{local: 30001, remote: 9001, rq: 5000},
	)
	for p := range 28 {
		for range 3 {
			socks = append(socks, fakeSock{local: uint16(31000 + len(socks)), remote: uint16(10000 + p), rq: 1})
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
		total += g.stats.sockets
	}
	if total != 89 {
		t.Errorf("sockets over all groups = %d, want 89: folding must not lose sockets", total)
	}

	// Only one role beyond the cap: one "other" group, so one more real group fits.
	a = newAggregator(3, 0.9, false)
	scrape(a, nil, fakeSock{remote: 1, rq: 3}, fakeSock{remote: 2, rq: 2}, fakeSock{remote: 3, rq: 1}, fakeSock{remote: 4})
	if diff := cmp.Diff([]string{"1", "2", "other"}, ports(a.out)); diff != "" {
		t.Errorf("ports (-want +got):\n%s", diff)
	}
}

func ports(gs []group) []string {
	var out []string
	for _, r := range rows(gs) {
		out = append(out, r.Port)
	}
	return out
}

func TestAggregatorZeroWindow(t *testing.T) {
	a := newAggregator(200, 0.9, false)
	scrape(a, nil,
		fakeSock{remote: 1, rcvWnd: 1},                                 // zero window
		fakeSock{remote: 1, rcvWnd: 65536},                             // open
		fakeSock{remote: 1},                                            // no tcp_info
		fakeSock{remote: 1, rcvWnd: 1, state: sockdiag.StateCloseWait}, // not ESTABLISHED
		fakeSock{remote: 2, rcvWnd: 1},
	)
	got := map[uint16]uint64{}
	for _, g := range a.out {
		got[g.labels.port] = g.stats.zeroWindow
	}
	if diff := cmp.Diff(map[uint16]uint64{1: 1, 2: 1}, got); diff != "" {
		t.Errorf("zero-window sockets (-want +got):\n%s", diff)
	}
}

func TestAggregatorFillRatio(t *testing.T) {
	a := newAggregator(200, 0.8, false) // 0.8 is not a default bucket: it is added
	scrape(a, nil,
		listenSock(80, 0, 10),
		fakeSock{remote: 1, rmem: 0, rcvbuf: 1000},    // 0
		fakeSock{remote: 1, rmem: 50, rcvbuf: 1000},   // 0.05
		fakeSock{remote: 1, rmem: 500, rcvbuf: 1000},  // 0.5
		fakeSock{remote: 1, rmem: 799, rcvbuf: 1000},  // 0.799: not full
		fakeSock{remote: 1, rmem: 800, rcvbuf: 1000},  // 0.8: full, exactly at the ratio
		fakeSock{remote: 1, rmem: 1000, rcvbuf: 1000}, // 1
		fakeSock{remote: 1, rmem: 1800, rcvbuf: 1000}, // 1.8: over rcvbuf, before pruning
		fakeSock{remote: 1, state: sockdiag.StateTimeWait, noMem: true},
	)
	if got := a.out[0].stats.full; got != 3 {
		t.Errorf("full sockets = %d, want 3", got)
	}
	want := map[float64]uint64{0: 1, 0.1: 2, 0.25: 2, 0.5: 3, 0.75: 3, 0.8: 5, 0.9: 5, 1: 6, 1.5: 6}
	if diff := cmp.Diff(want, a.fill.cumulative()); diff != "" {
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
	a := newAggregator(200, 0.9, false)
	scrape(a, nil,
		fakeSock{remote: 1, rcvbuf: 131072},   // tcp_rmem default
		fakeSock{remote: 1, rcvbuf: 131072},   //
		fakeSock{remote: 1, rcvbuf: 425984},   // SO_RCVBUF capped by the default rmem_max
		fakeSock{remote: 1, rcvbuf: 1500000},  // autotuned
		fakeSock{remote: 1, rcvbuf: 2097152},  // SO_RCVBUF 1 MiB
		fakeSock{remote: 1, rcvbuf: 4194304},  // SO_RCVBUF 2 MiB
		fakeSock{remote: 1, rcvbuf: 6291456},  // tcp_rmem default max
		fakeSock{remote: 1, rcvbuf: 20000000}, // raised max
		fakeSock{remote: 1, rcvbuf: 99999999}, // above every bucket
		// Not ESTABLISHED: not in this histogram.
		fakeSock{remote: 1, rcvbuf: 65536, state: sockdiag.StateCloseWait},
	)
	want := map[float64]uint64{
		65536: 0, 131072: 2, 262144: 2, 425984: 3, 1048576: 3,
		2097151: 4, 2097152: 5, 4194303: 5, 4194304: 6,
		6291456: 7, 8388608: 7, 16777216: 7, 33554432: 8,
	}
	if diff := cmp.Diff(want, a.size.cumulative()); diff != "" {
		t.Errorf("rcvbuf buckets (-want +got):\n%s", diff)
	}
	if a.size.count != 9 {
		t.Errorf("rcvbuf count = %d, want 9", a.size.count)
	}
}

func TestAggregatorDropsCounter(t *testing.T) {
	a := newAggregator(200, 0.9, false)
	drops := func() map[string]uint64 {
		out := map[string]uint64{}
		for _, g := range append(append([]group(nil), a.out...), a.outOld...) {
			out[fmt.Sprintf("%s/%d", roleNames[g.labels.role], g.labels.port)] = g.drops
		}
		return out
	}
	steps := []struct {
		name  string
		socks []fakeSock
		want  map[string]uint64
	}{
		{"first sight counts everything", []fakeSock{
			{remote: 443, cookie: 1, drops: 5},
			{remote: 443, cookie: 2, drops: 3},
			{remote: 443, cookie: 3},
		}, map[string]uint64{"client/443": 8}},
		{"deltas add; a closed socket keeps its drops", []fakeSock{
			{remote: 443, cookie: 1, drops: 7},
			{remote: 443, cookie: 3},
		}, map[string]uint64{"client/443": 10}},
		{"cookie reused by a new socket with fewer drops", []fakeSock{
			{remote: 443, cookie: 1, drops: 2},
			{remote: 443, cookie: 3, drops: 1},
		}, map[string]uint64{"client/443": 13}},
		{"unchanged", []fakeSock{
			{remote: 443, cookie: 1, drops: 2},
			{remote: 443, cookie: 3, drops: 1},
		}, map[string]uint64{"client/443": 13}},
		{"all sockets of the group closed: the counter stays", []fakeSock{
			{remote: 80, cookie: 9},
		}, map[string]uint64{"client/443": 13, "client/80": 0}},
		{"the group comes back: the counter goes on", []fakeSock{
			{remote: 443, cookie: 10, drops: 4},
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
	if n := len(a.drops.byCookie); n != 1 {
		t.Errorf("%d cookies tracked, want 1 (only the live socket that dropped)", n)
	}
}

// TestAggregatorDropsFoldUnfold checks that no drops counter goes down when a group folds into port="other"
// and comes back, and that the "other" counter itself only grows while its members change.
func TestAggregatorDropsFoldUnfold(t *testing.T) {
	a := newAggregator(3, 0.9, false) // one role: two real groups and "other"
	// busy are three groups with more queued bytes than port 443: they push it into "other".
	busy := []fakeSock{{remote: 1001, rq: 30}, {remote: 1002, rq: 20}, {remote: 1003, rq: 10}}
	steps := []struct {
		name  string
		socks []fakeSock
		want  map[string]uint64
	}{
		{"443 exported", []fakeSock{
			{remote: 443, cookie: 1, drops: 5}, {remote: 80, cookie: 2},
		}, map[string]uint64{"443": 5, "80": 0}},
		{"443 folded: its new drop goes to other", append([]fakeSock{
			{remote: 443, cookie: 1, drops: 6}, {remote: 80, cookie: 2},
		}, busy...), map[string]uint64{"1001": 0, "1002": 0, "other": 1}},
		{"443 back: it kept its drops, the folded one included", []fakeSock{
			{remote: 443, cookie: 1, drops: 7}, {remote: 80, cookie: 2},
		}, map[string]uint64{"443": 7, "80": 0, "other": 1}},
		{"443 folded again: other grows from where it was", append([]fakeSock{
			{remote: 443, cookie: 1, drops: 9}, {remote: 80, cookie: 2},
		}, busy...), map[string]uint64{"1001": 0, "1002": 0, "other": 3}},
		{"other now holds a member that never dropped: it must not go down", append([]fakeSock{
			{remote: 80, cookie: 2},
		}, busy...), map[string]uint64{"1001": 0, "1002": 0, "other": 3}},
		{"443's socket closed while folded; a new one drops", []fakeSock{
			{remote: 443, cookie: 3, drops: 1},
		}, map[string]uint64{"443": 10, "other": 3}},
		{"at the cap without folding: other is not exported", []fakeSock{
			{remote: 443, cookie: 3, drops: 1}, {remote: 1001, rq: 30}, {remote: 1002, rq: 20},
		}, map[string]uint64{"443": 10, "1001": 0, "1002": 0}},
		{"folding again: other goes on from 3", append([]fakeSock{
			{remote: 443, cookie: 3, drops: 2},
		}, busy...), map[string]uint64{"1001": 0, "1002": 0, "other": 4}},
	}
	last := map[string]uint64{}
	for _, st := range steps {
		scrape(a, nil, st.socks...)
		got := map[string]uint64{}
		for _, r := range rows(append(append([]group(nil), a.out...), a.outOld...)) {
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
	a := newAggregator(200, 0.9, false)
	scrape(a, nil, fakeSock{remote: 443, cookie: 1, drops: 5})
	// The kernel interrupts the dump: the collector resets and the socket comes again.
	a.begin()
	a.add(fakeSock{remote: 443, cookie: 1, drops: 9}.socket(), 0)
	a.resetSockets()
	a.add(fakeSock{remote: 443, cookie: 1, drops: 9}.socket(), 0)
	a.finish(nil, nil)
	if got := a.out[0].drops; got != 9 {
		t.Errorf("drops after a restarted dump = %d, want 9", got)
	}
	// A scrape that failed half-way (finish never called) must not lose or double the delta either.
	a.begin()
	a.add(fakeSock{remote: 443, cookie: 1, drops: 12}.socket(), 0)
	scrape(a, nil, fakeSock{remote: 443, cookie: 1, drops: 12})
	if got := a.out[0].drops; got != 12 {
		t.Errorf("drops after a failed scrape = %d, want 12", got)
	}
}

func TestAggregatorDropCountersBounded(t *testing.T) {
	a := newAggregator(4, 0.9, false)
	// Groups that dropped and then closed leave counters behind; at most the cap's worth stay.
	for p := range 10 {
		scrape(a, nil, fakeSock{remote: uint16(1000 + p), cookie: uint64(p + 1), drops: 1})
	}
	scrape(a, nil, fakeSock{remote: 1, cookie: 100})
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
	scrape(a, nil, fakeSock{remote: 1, cookie: 100, drops: 1})
	var kept []uint16
	for l := range a.dropTotals {
		kept = append(kept, l.port)
	}
	slices.Sort(kept)
	// The live group's counter and the five of the groups live last; the oldest are forgotten first.
	if diff := cmp.Diff([]uint16{1, 1005, 1006, 1007, 1008, 1009}, kept); diff != "" {
		t.Errorf("remembered counters beyond the bound (-want +got):\n%s", diff)
	}
	for _, g := range a.outOld {
		if _, ok := a.dropTotals[g.labels]; !ok {
			t.Errorf("forgotten counter of port %d still exported", g.labels.port)
		}
	}

	d := dropTracker{byCookie: map[uint64]dropEntry{}, limit: 2}
	d.gen = 1
	for c := range uint64(5) {
		d.observe(c, 1)
	}
	if len(d.byCookie) != 2 {
		t.Errorf("tracker holds %d cookies, limit 2", len(d.byCookie))
	}
}

func TestParseStates(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint32
		err  bool
	}{
		{"", sockdiag.DefaultStates, false},
		{"established", 1 << sockdiag.StateEstablished, false},
		{"ESTAB, close-wait", 1<<sockdiag.StateEstablished | 1<<sockdiag.StateCloseWait, false},
		{"time_wait,fin-wait-1,fin_wait2", 1<<sockdiag.StateTimeWait | 1<<sockdiag.StateFinWait1 | 1<<sockdiag.StateFinWait2, false},
		{"syn-recv", 1<<sockdiag.StateSynRecv | 1<<sockdiag.StateNewSynRecv, false},
		{"closed,listening", 1<<sockdiag.StateClose | 1<<sockdiag.StateListen, false},
		{"unconn,LISTEN", 1<<sockdiag.StateClose | 1<<sockdiag.StateListen, false},
		{"new-syn-recv", 0, true},
		{"all", 0xffe | 1<<sockdiag.StateNewSynRecv, false},
		{"established,bogus", 0, true},
	} {
		got, err := parseStates(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("parseStates(%q) = %#x, %v; want %#x, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// BenchmarkAggregate measures the per-socket cost of the aggregation alone: it must not allocate.
func BenchmarkAggregate(b *testing.B) {
	const n = 200_000
	socks := make([]*sockdiag.Socket, n)
	for i := range socks {
		f := fakeSock{local: uint16(32768 + i%20000), remote: uint16(443 + i%50), rq: uint32(i % 7), rcvbuf: 131072,
			rmem: uint32(i % 131072), cookie: uint64(i), cgroup: uint64(i % 20)}
		if i%2 == 0 {
			f.local, f.remote = uint16(8000+i%10), uint16(32768+i%20000)
		}
		if i%100 == 0 {
			f.drops = uint32(i % 9)
		}
		socks[i] = f.socket()
	}
	listeners := make([]*sockdiag.Socket, 10)
	for i := range listeners {
		listeners[i] = listenSock(uint16(8000+i), 0, 128).socket()
	}
	name := func(id uint64) string { return fmt.Sprint("cg", id%5) }
	a := newAggregator(200, 0.9, true)
	run := func() {
		a.begin()
		for _, l := range listeners {
			a.addListener(l)
		}
		for _, s := range socks {
			a.add(s, 0)
		}
		a.finish(name, nil)
	}
	run() // grow the maps to this host's size
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		run()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/socket")
}

package evidence

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sockbuf/sockbuf_exporter/diagnose"
	"github.com/sockbuf/sockbuf_exporter/procnet"
)

var t0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

func netstatReading(vals map[procnet.Counter]uint64) procnet.Netstat {
	var n procnet.Netstat
	for c, v := range vals {
		n.Set(c, v)
	}
	return n
}

func group(role, port string, sockets, full, rcvbuf uint64, drops uint64) GroupReading {
	return GroupReading{
		Key:    diagnose.GroupKey{Role: role, Port: port},
		Sample: diagnose.GroupSample{Sockets: sockets, Full: full, Rcvbuf: sockets * rcvbuf, RcvbufMin: rcvbuf, RcvbufMax: rcvbuf},
		Drops:  drops,
	}
}

// TestBuild checks how readings become evidence: counters as the increase between the first and the last
// reading that has them, softnet per CPU through its 32-bit wrap, sockstat's highest TCP memory, the last
// sysctls, one sample per dump, drops without the first dump's baseline.
func TestBuild(t *testing.T) {
	var sys procnet.Sysctls
	sys[procnet.TCPRmem] = procnet.SysctlValue{Values: [3]int64{4096, 131072, 6291456}, OK: true}
	sys[procnet.RmemMax] = procnet.SysctlValue{Values: [3]int64{212992}, OK: true}
	var sock1, sock2 procnet.Sockstat
	sock1.Set(procnet.TCPMemPages, 900)
	sock2.Set(procnet.TCPMemPages, 400)

	readings := []Reading{
		{
			Time:      t0,
			Netstat:   netstatReading(map[procnet.Counter]uint64{procnet.PruneCalled: 10, procnet.TCPRcvCollapsed: 100, procnet.InSegs: 1000}),
			NetstatOK: true, Sockstat: sock1, SockstatOK: true,
			Softnet:   []procnet.SoftnetRow{{CPU: 0, Dropped: 0xfffffff0, Squeezed: 1}, {CPU: 1, Dropped: 5}},
			SoftnetOK: true, Sockets: true, TCPInfo: true, DropsKnown: true,
			Groups:    []GroupReading{group("server", "80", 2, 2, 16384, 7)},
			Listeners: []ListenerReading{{Port: "80", Sample: diagnose.ListenSample{Length: 1, Limit: 8}}},
		},
		{ // a reading whose /proc reads failed: it adds a sample but no counter
			Time: t0.Add(time.Second), Sockets: true, TCPInfo: true, DropsKnown: true,
			Groups: []GroupReading{group("server", "80", 2, 1, 16384, 3), group("client", "443", 1, 0, 131072, 0)},
		},
		{
			Time:      t0.Add(2 * time.Second),
			Netstat:   netstatReading(map[procnet.Counter]uint64{procnet.PruneCalled: 15, procnet.TCPRcvCollapsed: 90, procnet.InSegs: 3000}),
			NetstatOK: true, Sockstat: sock2, SockstatOK: true, Sysctls: sys, SysctlOK: true,
			Softnet:   []procnet.SoftnetRow{{CPU: 0, Dropped: 0x10, Squeezed: 4}, {CPU: 1, Dropped: 5}, {CPU: 2, Dropped: 99}},
			SoftnetOK: true, Sockets: true, TCPInfo: true, DropsKnown: true,
			Groups:    []GroupReading{group("server", "80", 2, 2, 16384, 1)},
			Listeners: []ListenerReading{{Port: "80", Sample: diagnose.ListenSample{Length: 9, Limit: 8}}},
		},
	}
	got := Build(readings, false)

	want := diagnose.NetstatDelta(
		map[string]uint64{"PruneCalled": 10, "TCPRcvCollapsed": 100, "InSegs": 1000},
		map[string]uint64{"PruneCalled": 15, "TCPRcvCollapsed": 90, "InSegs": 3000})
	if diff := cmp.Diff(want, got.Netstat); diff != "" {
		t.Errorf("Netstat (-want +got):\n%s", diff)
	}
	if !got.Netstat.PruneCalled.Known || got.Netstat.PruneCalled.V != 5 || got.Netstat.RcvCollapsed.Known {
		t.Errorf("PruneCalled %+v (want 5), TCPRcvCollapsed %+v (went down: want unknown)", got.Netstat.PruneCalled, got.Netstat.RcvCollapsed)
	}
	// CPU 0 wrapped: 0xfffffff0 → 0x10 is 0x20; CPU 2 was not in the first reading.
	if diff := cmp.Diff(diagnose.Softnet{Dropped: diagnose.Val(0x20), TimesSqueezed: diagnose.Val(3)}, got.Softnet); diff != "" {
		t.Errorf("Softnet (-want +got):\n%s", diff)
	}
	if got.Window != 2*time.Second || got.Samples != 3 {
		t.Errorf("Window %s Samples %d; want 2s and 3", got.Window, got.Samples)
	}
	if got.Memory.TCPPagesMax != diagnose.Val(900) {
		t.Errorf("TCPPagesMax %+v; want 900", got.Memory.TCPPagesMax)
	}
	if got.Sysctl.TCPRmem[2] != diagnose.Val(6291456) || got.Sysctl.RmemMax != diagnose.Val(212992) || got.Sysctl.Somaxconn.Known {
		t.Errorf("Sysctl %+v", got.Sysctl)
	}
	wantSources := diagnose.Sources{Netstat: true, Sockstat: true, Sysctl: true, Softnet: true, Sockets: true, TCPInfo: true}
	if diff := cmp.Diff(wantSources, got.Sources); diff != "" {
		t.Errorf("Sources (-want +got):\n%s", diff)
	}
	if len(got.Groups) != 2 {
		t.Fatalf("groups %+v", got.Groups)
	}
	srv := got.Groups[1]
	if srv.Key.Role != "server" || len(srv.Samples) != 3 || srv.SocketDrops != diagnose.Val(4) {
		t.Errorf("server group: %d samples, drops %+v; want 3 samples and 3+1 drops (the first dump's 7 are a baseline)", len(srv.Samples), srv.SocketDrops)
	}
	if cl := got.Groups[0]; cl.Key.Role != "client" || len(cl.Samples) != 1 {
		t.Errorf("client group %+v", cl)
	}
	if len(got.Listeners) != 1 || len(got.Listeners[0].Samples) != 2 || got.Listeners[0].Samples[1].Length != 9 {
		t.Errorf("listeners %+v", got.Listeners)
	}
}

// TestBuildShort: no reading, or one, gives evidence without a window and no increase of any counter (the
// command and the endpoint never diagnose fewer than two readings).
func TestBuildShort(t *testing.T) {
	for _, rs := range [][]Reading{nil, {{Time: t0, NetstatOK: true, Sockets: true, SoftnetOK: true,
		Softnet: []procnet.SoftnetRow{{CPU: 0, Dropped: 1}}, Groups: []GroupReading{group("server", "80", 1, 1, 4096, 9)}}}} {
		ev := Build(rs, false)
		if ev.Window != 0 || ev.Sources.Netstat || ev.Sources.Softnet || ev.Groups == nil {
			t.Errorf("%d readings: %+v", len(rs), ev)
		}
		for _, g := range ev.Groups {
			if g.SocketDrops.Known {
				t.Errorf("one dump gave known drops %+v", g.SocketDrops)
			}
		}
	}
}

// TestFoldGroups: beyond the cap the groups with the fewest full sockets fold into port "other" per role,
// with their sums.
func TestFoldGroups(t *testing.T) {
	groups := map[groupKey]*groupAcc{}
	for i := range 6 {
		var s diagnose.GroupSample
		s.Add(diagnose.SocketReading{RmemAlloc: uint64(i) * 1000, Rcvbuf: 4096, RecvQ: 10}, &diagnose.SampleOptions{})
		groups[groupKey{server: i%2 == 0, port: uint16(1000 + i)}] = &groupAcc{sample: s, drops: 1}
	}
	got := foldGroups(groups, 4, nil, nil)
	if len(got) != 4 {
		t.Fatalf("%d groups, want 4: %+v", len(got), got)
	}
	// Fill: 1000+i holds i*1000 of 4096, full (>= 0.9) for i >= 4: 1004 (server), 1005 (client) are kept.
	if got[0].Key.Port != "1005" && got[0].Key.Port != "1004" || got[1].Key.Port != "1005" && got[1].Key.Port != "1004" {
		t.Errorf("kept %+v, want the full ones first", got[:2])
	}
	other := map[string]GroupReading{}
	for _, g := range got[2:] {
		if g.Key.Port != portOther {
			t.Errorf("group %+v not folded", g.Key)
		}
		other[g.Key.Role] = g
	}
	if other["server"].Sample.Sockets != 2 || other["client"].Sample.Sockets != 2 || other["server"].Drops != 2 {
		t.Errorf("folded sums %+v", other)
	}
	if other["client"].Sample.RcvbufMin != 4096 || other["client"].Sample.RecvQ != 20 {
		t.Errorf("folded client %+v", other["client"].Sample)
	}
}

func TestFoldListeners(t *testing.T) {
	ls := map[uint16]diagnose.ListenSample{
		80: {Length: 0, Limit: 128}, 81: {Length: 9, Limit: 8}, 82: {Length: 4, Limit: 8}, 83: {Length: 1, Limit: 0},
	}
	got := foldListeners(ls, 3)
	want := []ListenerReading{
		{Port: "83", Sample: diagnose.ListenSample{Length: 1, Limit: 0}}, // backlog 0 with one waiting: the fullest
		{Port: "81", Sample: diagnose.ListenSample{Length: 9, Limit: 8}},
		{Port: portOther, Sample: diagnose.ListenSample{Length: 4, Limit: 8}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestDropTracker(t *testing.T) {
	var d dropTracker
	d.init()
	d.begin()
	if n := d.observe(1, 5); n != 5 {
		t.Errorf("new socket: %d, want all 5", n)
	}
	d.observe(2, 0)
	d.commit()
	d.begin()
	if n := d.observe(1, 8); n != 3 {
		t.Errorf("known socket: %d, want 3", n)
	}
	if n := d.observe(2, 2); n != 2 {
		t.Errorf("socket that had 0: %d, want 2", n)
	}
	d.commit()
	d.begin()
	d.commit() // socket 1 closed
	d.begin()
	if n := d.observe(1, 8); n != 8 {
		t.Errorf("forgotten socket: %d, want 8", n)
	}
}

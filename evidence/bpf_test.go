package evidence

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sockbuf/sockbuf_exporter/bpf/drops"
	"github.com/sockbuf/sockbuf_exporter/diagnose"
)

// TestBuildBPF: the tracer's counters since Open become increases between the first and the last reading
// that has them, summed over cgroups (the evidence's groups are not split by cgroup); a key new in the last
// reading counts whole, unknown roles get no port.
func TestBuildBPF(t *testing.T) {
	first := &drops.Snapshot{
		Drops: []drops.Drop{
			{Reason: "proto_mem", Role: drops.RoleServer, Port: 80, CgroupID: 1, RcvbufLocked: true, Packets: 10},
			{Reason: "tcp_old_sequence", Role: drops.RoleClient, Port: 443, Packets: 4},
		},
		Unattributed: []drops.UnattributedDrop{{Reason: "cpu_backlog", Packets: 100}},
		RcvbufGrow:   []drops.RcvbufGrow{{Role: drops.RoleClient, Port: 443, Count: 7}},
	}
	last := &drops.Snapshot{
		Drops: []drops.Drop{
			{Reason: "proto_mem", Role: drops.RoleServer, Port: 80, CgroupID: 1, RcvbufLocked: true, Packets: 15},
			{Reason: "proto_mem", Role: drops.RoleServer, Port: 80, CgroupID: 2, RcvbufLocked: true, Packets: 2},
			{Reason: "tcp_old_sequence", Role: drops.RoleClient, Port: 443, Packets: 4},
			{Reason: "socket_backlog", Role: drops.RoleUnknown, Port: 0, Packets: 3},
		},
		Unattributed: []drops.UnattributedDrop{{Reason: "cpu_backlog", Packets: 130}},
		RcvbufGrow:   []drops.RcvbufGrow{{Role: drops.RoleClient, Port: 443, Count: 9}},
		MemoryLimit:  []drops.MemoryLimitHit{{Kind: drops.MemoryRecv, CgroupID: 1, Count: 1}},
	}
	readings := []Reading{{Time: t0, BPF: first}, {Time: t0.Add(time.Second)}, {Time: t0.Add(2 * time.Second), BPF: last}}
	ev := Build(readings, false)
	buildBPF(ev, readings, true, true, false, nil)
	want := &diagnose.BPF{
		Drops: []diagnose.ReceiveDrops{
			{Role: "server", Port: "80", Reason: "proto_mem", RcvbufLocked: true, Count: 7},
			{Role: "unknown", Port: "", Reason: "socket_backlog", Count: 3},
		},
		Unattributed: map[string]uint64{"cpu_backlog": 30},
		Growth:       []diagnose.RcvbufGrowth{{Role: "client", Port: "443", Count: 2}},
	}
	if diff := cmp.Diff(want, ev.BPF); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if !ev.Sources.BPFDrops || !ev.Sources.BPFGrowth || ev.Sources.BPFLimits {
		t.Errorf("sources %+v", ev.Sources)
	}

	ev = Build(readings[:2], false)
	buildBPF(ev, readings[:2], true, true, true, nil)
	if ev.BPF != nil || ev.Sources.BPFDrops {
		t.Errorf("one reading with counters gave %+v", ev.BPF)
	}
}

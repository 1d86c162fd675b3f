package evidence

import (
	"testing"
	"time"

	"github.com/sockbuf/sockbuf_exporter/diagnose"
	"github.com/sockbuf/sockbuf_exporter/memcg"
)

// The memory cgroups' readings become their state over the window: the last limit, the highest usage
// sampled, the high-water mark's and the counters' increases between each cgroup's first and last reading.
func TestBuildMemcgs(t *testing.T) {
	v := func(n uint64) memcg.Value { return memcg.Value{V: n, OK: true} }
	v1 := func(usage, maxUsage, failcnt uint64) memcg.Stats {
		return memcg.Stats{Version: memcg.V1, TCPAccounted: true, TCPUsage: v(usage), TCPLimit: v(299008), TCPMaxUsage: v(maxUsage), TCPFailcnt: v(failcnt)}
	}
	v2 := func(current, sock, max uint64) memcg.Stats {
		return memcg.Stats{Version: memcg.V2, Current: v(current), Sock: v(sock), EventsMax: v(max), EventsHigh: v(0)}
	}
	t0 := time.Unix(1000, 0)
	readings := []Reading{
		{Time: t0, MemcgOK: true, Memcgs: map[string]memcg.Stats{"/a": v1(100, 400000, 0), "/pod": v2(5000, 100, 3)}},
		{Time: t0.Add(time.Second), MemcgOK: true, Memcgs: map[string]memcg.Stats{"/a": v1(300000, 500000, 0)}},
		{Time: t0.Add(2 * time.Second), MemcgOK: true, Memcgs: map[string]memcg.Stats{"/a": v1(2000, 557056, 2), "/pod": v2(4000, 900, 10)}},
	}
	ev := Build(readings, false)
	if !ev.Sources.Cgroups || len(ev.Cgroups) != 2 {
		t.Fatalf("sources %+v, cgroups %+v", ev.Sources, ev.Cgroups)
	}
	a, pod := ev.Cgroups[0], ev.Cgroups[1]
	want := diagnose.CgroupMemory{Cgroup: "/a", V1: true, TCPLimit: diagnose.Val(299008), TCPUsageMax: diagnose.Val(300000),
		TCPMaxUsage: diagnose.Val(557056), TCPMaxUsageRise: diagnose.Val(157056), TCPFailcnt: diagnose.Val(2)}
	if a != want {
		t.Errorf("v1 cgroup:\n got %+v\nwant %+v", a, want)
	}
	want = diagnose.CgroupMemory{Cgroup: "/pod", CurrentMax: diagnose.Val(5000), SockMax: diagnose.Val(900),
		EventsMax: diagnose.Val(7), EventsHigh: diagnose.Val(0)}
	if pod != want {
		t.Errorf("v2 cgroup:\n got %+v\nwant %+v", pod, want)
	}
	// A counter that went back (the cgroup was made again under the same name) rises by 0, not by a wrap.
	readings[2].Memcgs["/pod"] = v2(4000, 900, 1)
	if ev := Build(readings, false); ev.Cgroups[1].EventsMax != diagnose.Val(0) {
		t.Errorf("a reset counter: %+v", ev.Cgroups[1].EventsMax)
	}
	// Without the memory cgroups looked for, the source is absent.
	if ev := Build([]Reading{{Time: t0}, {Time: t0.Add(time.Second)}}, false); ev.Sources.Cgroups || len(ev.Cgroups) != 0 {
		t.Errorf("no memcg reader: sources %+v, cgroups %+v", ev.Sources, ev.Cgroups)
	}
}

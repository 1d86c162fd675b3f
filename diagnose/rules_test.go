package diagnose

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

type ruleCase struct {
	name string
	ev   func() *Evidence
	want []got
}

func runRule(t *testing.T, rule func(*analysis) []Finding, cases []ruleCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fs := rule(newAnalysis(tc.ev()))
			if diff := cmp.Diff(tc.want, summarize(fs)); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
			for _, f := range fs {
				if len(f.Evidence) == 0 || len(f.Fix) == 0 || f.Verify == "" {
					t.Errorf("%s: evidence %q, fix %q, verify %q: none may be empty", f.Cause, f.Evidence, f.Fix, f.Verify)
				}
			}
		})
	}
}

func scope(k GroupKey) Scope { return scopeOf(k) }

// pinnedClient is issue 10's first scenario: a Node.js server writing a 450 KB body in ~230-byte writes to a
// Python requests client with SO_RCVBUF=65536 (rcvbuf 131072): PruneCalled 697, TCPRcvCollapsed 20540,
// RcvPruned 318, TCPRcvQDrop 271. The client socket is full in most dumps and advertises zero windows.
func pinnedClient() *Evidence {
	ev := base()
	ev.Netstat.PruneCalled, ev.Netstat.RcvCollapsed, ev.Netstat.RcvPruned, ev.Netstat.RcvQDrop = Val(697), Val(20540), Val(318), Val(271)
	ev.Netstat.ToZeroWindowAdv = Val(120)
	ev.Groups = []Group{{Key: clientPy, Samples: append(repeat(4, sample(1, 1, rmemDefault, 1)), sample(1, 0, rmemDefault, 0))}}
	return ev
}

// afterFix is the same client without SO_RCVBUF: PruneCalled 2745 and nothing collapsed or dropped; the
// buffer grows.
func afterFix() *Evidence {
	ev := base()
	ev.Netstat.PruneCalled = Val(2745)
	ev.Groups = []Group{{Key: clientPy, Samples: growing(1, 1_500_000, 1)}}
	return ev
}

// healthyHeavy is a busy, healthy host: millions of segments, buffers growing, an odd socket full for one
// dump, no prune, no drop.
func healthyHeavy() *Evidence {
	ev := base()
	ev.Netstat.InSegs = Val(50_000_000)
	ev.Netstat.ToZeroWindowAdv = Val(0)
	ev.Groups = []Group{
		{Key: serverNgx, Samples: growing(800, 4<<20, 3)},
		{Key: clientPy, Samples: growing(20, 2<<20)},
	}
	ev.Listeners = []Listener{{Port: "80", Samples: []ListenSample{{0, 511}, {3, 511}, {0, 511}, {1, 511}, {0, 511}}}}
	return ev
}

// slowServer is issue 10's fourth scenario: a Node.js server pausing reads with 40 curl uploads: 40/40
// sockets full, no prune, buffers staying at 131072 although tcp_rmem max is 32 MiB.
func slowServer() *Evidence {
	ev := base()
	ev.Netstat.ToZeroWindowAdv, ev.Netstat.WantZeroWindowAdv = Val(3100), Val(2900)
	ev.Groups = []Group{{Key: serverNode, Samples: repeat(5, sample(40, 40, rmemDefault, 40))}}
	return ev
}

func TestRulePinned(t *testing.T) {
	runRule(t, rulePinned, []ruleCase{
		{"issue 10 pinned client, no bpf: inferred from rcvbuf", pinnedClient,
			[]got{{CauseRcvbufPinned, Medium, scope(clientPy)}}},
		{"with bpf: locked drops", func() *Evidence {
			return withBPF(pinnedClient(), ReceiveDrops{Role: "client", Port: "8080", Cgroup: clientPy.Cgroup, Reason: "proto_mem", RcvbufLocked: true, Count: 271})
		}, []got{{CauseRcvbufPinned, High, scope(clientPy)}}},
		{"lock bit read: locked, no bpf drops source", func() *Evidence {
			ev := pinnedClient()
			for i := range ev.Groups[0].Samples {
				ev.Groups[0].Samples[i].Locked = Val(1)
			}
			return ev
		}, []got{{CauseRcvbufPinned, Medium, scope(clientPy)}}},
		{"tcp_mem not readable: pinning less sure", func() *Evidence {
			ev := pinnedClient()
			ev.Memory = Memory{}
			ev.Netstat.MemoryPressures, ev.Netstat.MemoryPressuresChronoMs = Value{}, Value{}
			return ev
		}, []got{{CauseRcvbufPinned, Low, scope(clientPy)}}},
		{"two full groups: counters cannot be split", func() *Evidence {
			ev := pinnedClient()
			ev.Groups = append(ev.Groups, Group{Key: serverNgx, Samples: repeat(5, sample(3, 1, 65536, 1))})
			return ev
		}, []got{{CauseRcvbufPinned, Low, scope(clientPy)}, {CauseRcvbufPinned, Low, scope(serverNgx)}}},
		{"after the fix: nothing", afterFix, nil},
		{"healthy heavy traffic: nothing", healthyHeavy, nil},
		{"same buffers, no collapse or drop: not pinned", func() *Evidence {
			ev := pinnedClient()
			ev.Netstat.RcvCollapsed, ev.Netstat.RcvPruned, ev.Netstat.RcvQDrop = Val(0), Val(0), Val(0)
			return ev
		}, nil},
		{"rcvbuf grew: autotuned", func() *Evidence {
			ev := pinnedClient()
			ev.Groups[0].Samples = growing(1, 1_000_000, 0, 1, 2, 3, 4)
			return ev
		}, nil},
		{"bpf: two processes share the labels, only the full one is named", func() *Evidence {
			ev := withBPF(pinnedClient(), ReceiveDrops{Role: "client", Port: "8080", Cgroup: clientPy.Cgroup, Reason: "proto_mem", RcvbufLocked: true, Count: 271})
			idle := clientPy
			idle.Process = "curl"
			ev.Groups = append(ev.Groups, Group{Key: idle, Samples: repeat(5, sample(2, 0, rmemDefault, 0))})
			return ev
		}, []got{{CauseRcvbufPinned, High, scope(clientPy)}}},
		{"bpf: drops on unlocked sockets", func() *Evidence {
			return withBPF(pinnedClient(), ReceiveDrops{Role: "client", Port: "8080", Cgroup: clientPy.Cgroup, Reason: "proto_mem", Count: 271})
		}, nil},
		{"bpf: drops elsewhere, none for this group", func() *Evidence {
			return withBPF(pinnedClient(), ReceiveDrops{Role: "server", Port: "9000", Reason: "proto_mem", RcvbufLocked: true, Count: 271})
		}, nil},
		{"capped at 2 x rmem_max is the capped cause", func() *Evidence {
			ev := pinnedClient()
			ev.Groups[0].Samples = repeat(5, sample(1, 1, 2*coreRmemMax, 1))
			return ev
		}, nil},
	})
}

func TestRuleCapped(t *testing.T) {
	capped := func() *Evidence {
		ev := pinnedClient()
		ev.Groups[0].Samples = repeat(5, sample(1, 1, 2*coreRmemMax, 1))
		return ev
	}
	runRule(t, ruleCapped, []ruleCase{
		{"rcvbuf 2 x rmem_max, overflowing", capped, []got{{CauseRcvbufCappedByRmemMax, Medium, scope(clientPy)}}},
		{"with bpf: locked drops", func() *Evidence {
			return withBPF(capped(), ReceiveDrops{Role: "client", Port: "8080", Cgroup: clientPy.Cgroup, Reason: "tcp_ofo_queue_prune", RcvbufLocked: true, Count: 9})
		}, []got{{CauseRcvbufCappedByRmemMax, High, scope(clientPy)}}},
		{"no overflow: nothing", func() *Evidence {
			ev := capped()
			ev.Netstat.RcvCollapsed, ev.Netstat.RcvPruned, ev.Netstat.RcvQDrop = Val(0), Val(0), Val(0)
			ev.Groups[0].Samples = repeat(5, sample(1, 0, 2*coreRmemMax, 0))
			return ev
		}, nil},
		{"pinned below the cap: not capped", pinnedClient, nil},
		{"healthy heavy traffic", healthyHeavy, nil},
	})
}

func TestRuleTCPRmemMaxLow(t *testing.T) {
	atMax := func() *Evidence {
		ev := base()
		ev.Netstat.PruneCalled, ev.Netstat.RcvCollapsed, ev.Netstat.OfoPruned, ev.Netstat.OFODrop = Val(900), Val(4000), Val(12), Val(40)
		ev.Groups = []Group{{Key: clientPy, Samples: append(repeat(3, sample(4, 2, rmemMax2, 0)), repeat(2, sample(4, 0, rmemMax2, 0))...)}}
		return ev
	}
	runRule(t, ruleTCPRmemMaxLow, []ruleCase{
		{"at tcp_rmem max, no bpf: medium", atMax, []got{{CauseTCPRmemMaxLow, Medium, scope(clientPy)}}},
		{"bpf: unlocked drops", func() *Evidence {
			return withBPF(atMax(), ReceiveDrops{Role: "client", Port: "8080", Cgroup: clientPy.Cgroup, Reason: "proto_mem", Count: 40})
		}, []got{{CauseTCPRmemMaxLow, High, scope(clientPy)}}},
		{"bpf: no tcp_info, reader unknown", func() *Evidence {
			ev := withBPF(atMax(), ReceiveDrops{Role: "client", Port: "8080", Cgroup: clientPy.Cgroup, Reason: "proto_mem", Count: 40})
			for i := range ev.Groups[0].Samples {
				ev.Groups[0].Samples[i].ZeroWindow = Value{}
			}
			return ev
		}, []got{{CauseTCPRmemMaxLow, Medium, scope(clientPy)}}},
		{"zero windows: a slow reader, not this", func() *Evidence {
			ev := atMax()
			for i := range ev.Groups[0].Samples {
				ev.Groups[0].Samples[i].ZeroWindow = Val(2)
			}
			return ev
		}, nil},
		{"tcp_mem pressure explains it", func() *Evidence {
			ev := atMax()
			ev.Memory.TCPPagesMax = Val(400000)
			return ev
		}, nil},
		{"below the max: nothing", func() *Evidence {
			ev := atMax()
			ev.Groups[0].Samples = growing(4, 8<<20, 0, 1, 2)
			return ev
		}, nil},
		{"after the fix", afterFix, nil},
		{"healthy heavy traffic", healthyHeavy, nil},
	})
}

func TestRuleSlowReader(t *testing.T) {
	runRule(t, ruleSlowReader, []ruleCase{
		{"issue 10 paused Node.js server, tcp_info", slowServer, []got{{CauseSlowReader, High, scope(serverNode)}}},
		{"no tcp_info, namespace zero windows", func() *Evidence {
			ev := slowServer()
			ev.Sources.TCPInfo = false
			ev.Groups[0].Samples = repeat(5, sample(40, 40, rmemDefault, -1))
			return ev
		}, []got{{CauseSlowReader, Medium, scope(serverNode)}}},
		{"no zero-window evidence at all", func() *Evidence {
			ev := slowServer()
			ev.Netstat.ToZeroWindowAdv, ev.Netstat.WantZeroWindowAdv = Value{}, Value{}
			ev.Groups[0].Samples = repeat(5, sample(40, 40, rmemDefault, -1))
			return ev
		}, []got{{CauseSlowReader, Low, scope(serverNode)}}},
		{"zero windows in 1 of 5 samples", func() *Evidence {
			ev := slowServer()
			for i := 1; i < 5; i++ {
				ev.Groups[0].Samples[i].ZeroWindow = Val(0)
			}
			return ev
		}, []got{{CauseSlowReader, Medium, scope(serverNode)}}},
		{"nginx to a slow requests client (issue 10 #2): client side", func() *Evidence {
			ev := base()
			ev.Netstat.ToZeroWindowAdv = Val(4000)
			ev.Groups = []Group{{Key: clientPy, Samples: repeat(5, sample(1, 1, rmemDefault, 1)), SocketDrops: Val(35)}}
			return ev
		}, []got{{CauseSlowReader, High, scope(clientPy)}}},
		{"full but window open (tcp_info): not stalled", func() *Evidence {
			ev := slowServer()
			ev.Groups[0].Samples = repeat(5, sample(40, 40, rmemDefault, 0))
			return ev
		}, nil},
		{"no tcp_info, namespace never closed a window", func() *Evidence {
			ev := slowServer()
			ev.Netstat.ToZeroWindowAdv = Val(0)
			ev.Groups[0].Samples = repeat(5, sample(40, 40, rmemDefault, -1))
			return ev
		}, nil},
		{"full in 2 of 5 samples only", func() *Evidence {
			ev := slowServer()
			ev.Groups[0].Samples = append(repeat(2, sample(40, 40, rmemDefault, 40)), repeat(3, sample(40, 0, rmemDefault, 0))...)
			return ev
		}, nil},
		{"buffers growing: the reader reads", func() *Evidence {
			ev := slowServer()
			ev.Groups[0].Samples = growing(40, 2<<20, 0, 1, 2, 3, 4)
			for i := range ev.Groups[0].Samples {
				ev.Groups[0].Samples[i].ZeroWindow = Val(3)
			}
			return ev
		}, nil},
		{"pinned and overflowing is pinned, not slow", pinnedClient, nil},
		{"after the fix", afterFix, nil},
		{"healthy heavy traffic", healthyHeavy, nil},
	})
}

func TestRuleTCPMemPressure(t *testing.T) {
	runRule(t, ruleTCPMemPressure, []ruleCase{
		{"over pressure", func() *Evidence {
			ev := base()
			ev.Memory.TCPPagesMax = Val(400000)
			return ev
		}, []got{{CauseTCPMemPressure, High, Scope{}}}},
		{"pressure counted", func() *Evidence {
			ev := base()
			ev.Netstat.MemoryPressures, ev.Netstat.MemoryPressuresChronoMs = Val(3), Val(2500)
			return ev
		}, []got{{CauseTCPMemPressure, High, Scope{}}}},
		{"aborts on memory", func() *Evidence {
			ev := base()
			ev.Netstat.AbortOnMemory = Val(5)
			return ev
		}, []got{{CauseTCPMemPressure, High, Scope{}}}},
		{"below pressure", base, nil},
		{"nothing readable", func() *Evidence {
			ev := base()
			ev.Memory = Memory{}
			ev.Netstat = Netstat{}
			return ev
		}, nil},
		{"healthy heavy traffic", healthyHeavy, nil},
	})
	// At max the harm is data lost, under pressure only a stall.
	ev := base()
	ev.Memory.TCPPagesMax = Val(600000)
	if f := ruleTCPMemPressure(newAnalysis(ev)); len(f) != 1 || f[0].Harm != HarmDataLost {
		t.Errorf("at tcp_mem max: %+v, want one finding of harm data lost", f)
	}
	ev.Memory.TCPPagesMax = Val(400000)
	if f := ruleTCPMemPressure(newAnalysis(ev)); len(f) != 1 || f[0].Harm != HarmStall {
		t.Errorf("at tcp_mem pressure: %+v, want one finding of harm stall", f)
	}
}

func TestRuleCgroupMemoryPressure(t *testing.T) {
	cg := func() *Evidence {
		ev := base()
		ev.Sources.Cgroups = true
		ev.Cgroups = []CgroupMemory{{Cgroup: clientPy.Cgroup, Max: Val(512 << 20), CurrentMax: Val(511 << 20), SockMax: Val(200 << 20),
			EventsMax: Val(12), EventsHigh: Val(0), EventsOOM: Val(0)}}
		return ev
	}
	cgScope := Scope{Cgroup: clientPy.Cgroup}
	runRule(t, ruleCgroupMemoryPressure, []ruleCase{
		{"bpf limit hits, tcp_mem fine", func() *Evidence {
			ev := withBPF(cg())
			ev.BPF.LimitHits = []MemoryLimitHits{{Kind: "recv", Cgroup: clientPy.Cgroup, Count: 40}}
			return ev
		}, []got{{CauseCgroupMemoryPressure, High, cgScope}}},
		{"limit hit and bpf drops of its sockets", func() *Evidence {
			return withBPF(cg(), ReceiveDrops{Role: "client", Port: "8080", Cgroup: clientPy.Cgroup, Reason: "proto_mem", Count: 7})
		}, []got{{CauseCgroupMemoryPressure, High, cgScope}}},
		{"no bpf: limit hit, its sockets full, namespace drops", func() *Evidence {
			ev := cg()
			ev.Netstat.RcvQDrop = Val(30)
			ev.Groups = []Group{{Key: clientPy, Samples: repeat(5, sample(2, 2, rmemDefault, 0))}}
			return ev
		}, []got{{CauseCgroupMemoryPressure, Medium, scopeOf(clientPy)}}},
		{"limit hit but no receive harm: nothing", cg, nil},
		{"limit hits of kind send only", func() *Evidence {
			ev := withBPF(cg())
			ev.BPF.LimitHits = []MemoryLimitHits{{Kind: "send", Cgroup: clientPy.Cgroup, Count: 40}}
			return ev
		}, nil},
		{"no limit hit", func() *Evidence {
			ev := cg()
			ev.Cgroups[0].EventsMax = Val(0)
			ev.Netstat.RcvQDrop = Val(30)
			ev.Groups = []Group{{Key: clientPy, Samples: repeat(5, sample(2, 2, rmemDefault, 0))}}
			return ev
		}, nil},
	})
}

// Cgroup v1: the groups' memory cgroup comes from their process; the TCP memory limit is what they hit.
func TestRuleCgroupMemoryPressureV1(t *testing.T) {
	const memcgPath = "/process_api/7/receiver"
	v1 := func(mutate func(c *CgroupMemory)) func() *Evidence {
		return func() *Evidence {
			ev := base()
			ev.Sources.Cgroups = true
			c := CgroupMemory{Cgroup: memcgPath, V1: true, TCPLimit: Val(299008), TCPUsageMax: Val(299008),
				TCPMaxUsage: Val(557056), TCPMaxUsageRise: Val(0), TCPFailcnt: Val(0)}
			if mutate != nil {
				mutate(&c)
			}
			ev.Cgroups = []CgroupMemory{c}
			ev.Netstat.RcvQDrop = Val(24)
			// The receiver's sockets are not full: the charge fails before rcvbuf is reached.
			ev.Groups = []Group{
				{Key: clientPy, Samples: repeat(5, sample(4, 0, rmemDefault, 0)), MemoryCgroup: "/other"},
				{Key: serverNgx, Samples: repeat(5, sample(8, 0, rmemDefault, 0)), MemoryCgroup: memcgPath},
			}
			ev.Groups[1].Samples[2].RecvQ = 200 << 10
			return ev
		}
	}
	receiver := scopeOf(serverNgx)
	receiver.Cgroup = memcgPath
	runRule(t, ruleCgroupMemoryPressure, []ruleCase{
		{"usage sampled at the limit, namespace drops", v1(nil), []got{{CauseCgroupMemoryPressure, Medium, receiver}}},
		{"only the high-water mark rose to the limit", v1(func(c *CgroupMemory) {
			c.TCPUsageMax, c.TCPMaxUsageRise = Val(100000), Val(258048)
		}), []got{{CauseCgroupMemoryPressure, Medium, receiver}}},
		{"bpf drops of its group", func() *Evidence {
			return withBPF(v1(nil)(), ReceiveDrops{Role: serverNgx.Role, Port: serverNgx.Port, Cgroup: serverNgx.Cgroup, Reason: "proto_mem", Count: 24})
		}, []got{{CauseCgroupMemoryPressure, High, receiver}}},
		{"bpf drops only of another group", func() *Evidence {
			ev := withBPF(v1(nil)(), ReceiveDrops{Role: clientPy.Role, Port: clientPy.Port, Cgroup: clientPy.Cgroup, Reason: "proto_mem", Count: 24})
			return ev
		}, []got{{CauseCgroupMemoryPressure, Medium, receiver}}},
		{"below the limit, high-water mark unchanged", v1(func(c *CgroupMemory) {
			c.TCPUsageMax, c.TCPMaxUsage = Val(100000), Val(557056)
		}), nil},
		{"an old high-water mark over the limit does not count", v1(func(c *CgroupMemory) { c.TCPUsageMax = Val(1000) }), nil},
		{"no TCP limit set (not accounted)", v1(func(c *CgroupMemory) { c.TCPLimit = Value{} }), nil},
		{"no group charged to it", func() *Evidence {
			ev := v1(nil)()
			ev.Groups[1].MemoryCgroup = "/elsewhere"
			return ev
		}, nil},
		{"no namespace drops", func() *Evidence {
			ev := v1(nil)()
			ev.Netstat.RcvQDrop = Val(0)
			return ev
		}, nil},
	})
}

func TestRuleAcceptQueueOverflow(t *testing.T) {
	overflow := func() *Evidence {
		ev := base()
		ev.Netstat.ListenOverflows, ev.Netstat.ListenDrops = Val(50), Val(50)
		ev.Listeners = []Listener{
			{Port: "8080", Samples: []ListenSample{{129, 128}, {129, 128}, {40, 128}, {129, 128}, {0, 128}}},
			{Port: "80", Samples: repeat5(ListenSample{2, 511})},
		}
		return ev
	}
	runRule(t, ruleAcceptQueueOverflow, []ruleCase{
		{"port 8080 full, overflows counted", overflow, []got{{CauseAcceptQueueOverflow, High, Scope{Role: "server", Port: "8080"}}}},
		{"overflows, no listener seen full", func() *Evidence {
			ev := overflow()
			ev.Listeners = ev.Listeners[1:]
			return ev
		}, []got{{CauseAcceptQueueOverflow, Low, Scope{}}}},
		{"full listener, counter absent", func() *Evidence {
			ev := overflow()
			ev.Netstat.ListenOverflows = Value{}
			return ev
		}, []got{{CauseAcceptQueueOverflow, Medium, Scope{Role: "server", Port: "8080"}}}},
		{"full listener, no overflow counted", func() *Evidence {
			ev := overflow()
			ev.Netstat.ListenOverflows = Val(0)
			return ev
		}, nil},
		{"healthy heavy traffic", healthyHeavy, nil},
	})
}

func repeat5(s ListenSample) []ListenSample { return []ListenSample{s, s, s, s, s} }

func TestRuleBacklogDrops(t *testing.T) {
	runRule(t, ruleBacklogDrops, []ruleCase{
		{"counter only", func() *Evidence {
			ev := base()
			ev.Netstat.BacklogDrop = Val(17)
			return ev
		}, []got{{CauseBacklogDrops, Medium, Scope{}}}},
		{"bpf per group", func() *Evidence {
			ev := withBPF(base(), ReceiveDrops{Role: "server", Port: "80", Cgroup: serverNgx.Cgroup, Reason: "socket_backlog", Count: 17})
			ev.Netstat.BacklogDrop = Val(17)
			return ev
		}, []got{{CauseBacklogDrops, High, Scope{Role: "server", Port: "80", Cgroup: serverNgx.Cgroup}}}},
		{"none", base, nil},
		{"healthy heavy traffic", healthyHeavy, nil},
	})
}

func TestRuleSoftnetBacklog(t *testing.T) {
	runRule(t, ruleSoftnetBacklog, []ruleCase{
		{"drops", func() *Evidence {
			ev := base()
			ev.Softnet = Softnet{Dropped: Val(100), TimesSqueezed: Val(3)}
			return ev
		}, []got{{CauseSoftnetBacklog, High, Scope{}}}},
		{"squeezes only: nothing lost", func() *Evidence {
			ev := base()
			ev.Softnet.TimesSqueezed = Val(300)
			return ev
		}, nil},
		{"not readable", func() *Evidence {
			ev := base()
			ev.Softnet = Softnet{}
			return ev
		}, nil},
	})
}

func TestRuleGrowthOnly(t *testing.T) {
	runRule(t, ruleGrowthOnly, []ruleCase{
		{"after the fix", afterFix, []got{{CauseGrowthOnly, Low, Scope{}}}},
		{"pinned: collapse, not growth", pinnedClient, nil},
		{"no prune", healthyHeavy, nil},
		{"RcvPruned without collapse: a prune failed, not growth", func() *Evidence {
			ev := afterFix()
			ev.Netstat.RcvPruned = Val(2)
			return ev
		}, nil},
		{"collapse counter absent: cannot tell", func() *Evidence {
			ev := afterFix()
			ev.Netstat.RcvCollapsed = Value{}
			return ev
		}, nil},
	})
}

func TestRuleUnattributedOverflow(t *testing.T) {
	collapseOnly := func() *Evidence {
		ev := base()
		ev.Netstat.PruneCalled, ev.Netstat.RcvCollapsed = Val(40), Val(300)
		ev.Groups = []Group{{Key: clientPy, Samples: growing(3, 1<<20)}}
		return ev
	}
	rule := func(a *analysis) []Finding {
		var found []Finding
		for _, r := range rules {
			found = append(found, r(a)...)
		}
		return ruleUnattributedOverflow(a, found)
	}
	runRule(t, rule, []ruleCase{
		{"collapse, no group seen full", collapseOnly, []got{{CauseUnattributedOverflow, Low, Scope{}}}},
		{"explained by a pinned group", pinnedClient, nil},
		{"after the fix", afterFix, nil},
		{"healthy heavy traffic", healthyHeavy, nil},
	})
	if f := rule(newAnalysis(collapseOnly())); len(f) != 1 || f[0].Harm != HarmCPU {
		t.Errorf("collapse only: %+v, want harm CPU", f)
	}
}

// TestDiagnoseScenarios runs every rule together: the healthy cases must give nothing or only growth_only.
func TestDiagnoseScenarios(t *testing.T) {
	for _, tc := range []struct {
		name string
		ev   *Evidence
		want []string
	}{
		{"healthy heavy traffic", healthyHeavy(), nil},
		{"healthy heavy traffic with buffer growth", func() *Evidence {
			ev := healthyHeavy()
			ev.Netstat.PruneCalled = Val(12000)
			return ev
		}(), []string{CauseGrowthOnly}},
		{"after the correct fix", afterFix(), []string{CauseGrowthOnly}},
		{"pinned client", pinnedClient(), []string{CauseRcvbufPinned}},
		{"paused server", slowServer(), []string{CauseSlowReader}},
		{"empty evidence", &Evidence{}, nil},
		{"nil evidence", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var causes []string
			for _, f := range Diagnose(tc.ev).Findings {
				causes = append(causes, f.Cause)
			}
			if diff := cmp.Diff(tc.want, causes); diff != "" {
				t.Errorf("causes (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDiagnoseOrder: data lost first (surer and bigger first), then stalls, then information.
func TestDiagnoseOrder(t *testing.T) {
	ev := withBPF(pinnedClient(), ReceiveDrops{Role: "client", Port: "8080", Cgroup: clientPy.Cgroup, Reason: "proto_mem", RcvbufLocked: true, Count: 271})
	ev.Groups = append(ev.Groups, slowServer().Groups...)
	ev.Softnet.Dropped = Val(1000)
	ev.Netstat.ListenOverflows = Val(50)
	ev.Listeners = []Listener{{Port: "8080", Samples: repeat5(ListenSample{129, 128})}}
	want := []got{
		{CauseSoftnetBacklog, High, Scope{}},
		{CauseRcvbufPinned, High, scope(clientPy)},
		{CauseAcceptQueueOverflow, High, Scope{Role: "server", Port: "8080"}},
		{CauseSlowReader, High, scope(serverNode)},
	}
	r := Diagnose(ev)
	if diff := cmp.Diff(want, summarize(r.Findings)); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
	// The order does not depend on the order of the evidence.
	ev.Groups[0], ev.Groups[1] = ev.Groups[1], ev.Groups[0]
	if diff := cmp.Diff(r.Findings, Diagnose(ev).Findings); diff != "" {
		t.Errorf("groups swapped (-before +after):\n%s", diff)
	}
}

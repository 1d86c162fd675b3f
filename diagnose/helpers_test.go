package diagnose

import (
	"time"
)

// Evidence builders for the tests. The sysctls are this machine's (kernel 6.18): tcp_rmem 4096 131072
// 33554432, rmem_max 4194304, tcp_mem 288459 384612 576918.

const (
	rmemDefault = 131072
	rmemMax2    = 33554432 // tcp_rmem[2]
	coreRmemMax = 4194304
)

// base is a quiet namespace over 10 s with 5 socket dumps, every source but bpf available, every counter 0.
func base() *Evidence {
	z := Val(0)
	return &Evidence{
		Window:  10 * time.Second,
		Samples: 5,
		Sources: Sources{Netstat: true, Sockstat: true, Sysctl: true, Softnet: true, Sockets: true, TCPInfo: true, HostNetns: true},
		Netstat: Netstat{
			PruneCalled: z, RcvPruned: z, OfoPruned: z, RcvCollapsed: z, RcvQDrop: z, OFODrop: z, ZeroWindowDrop: z,
			BacklogDrop: z, WantZeroWindowAdv: z, ToZeroWindowAdv: z, FromZeroWindowAdv: z, WinProbe: z,
			ListenOverflows: z, ListenDrops: z, AbortOnMemory: z, MemoryPressures: z, MemoryPressuresChronoMs: z,
			InSegs: Val(1_000_000),
		},
		Memory: Memory{TCPPagesMax: Val(271), TCPMem: [3]Value{Val(288459), Val(384612), Val(576918)}, PageSize: 4096},
		Sysctl: Sysctl{
			RmemMax: Val(coreRmemMax), RmemDefault: Val(212992),
			TCPRmem:        [3]Value{Val(4096), Val(rmemDefault), Val(rmemMax2)},
			ModerateRcvbuf: Val(1), NetdevMaxBacklog: Val(1000), Somaxconn: Val(4096),
		},
		Softnet: Softnet{Dropped: z, TimesSqueezed: z},
	}
}

// withBPF marks the bpf collector available with the given drops.
func withBPF(ev *Evidence, drops ...ReceiveDrops) *Evidence {
	ev.Sources.BPFDrops, ev.Sources.BPFGrowth, ev.Sources.BPFLimits, ev.Sources.RcvbufLock = true, true, true, true
	ev.BPF = &BPF{Drops: drops, Unattributed: map[string]uint64{}}
	return ev
}

// sample is one dump of n sockets, full of them full, every one with rcvbuf rb; zero window sockets as given
// (-1: tcp_info not read).
func sample(n, full, rb uint64, zero int64) GroupSample {
	s := GroupSample{
		Sockets: n, Full: full, Rcvbuf: n * rb, RcvbufMin: rb, RcvbufMax: rb,
		RmemAlloc: full * rb, RecvQ: full * rb / 2,
		AtTCPRmemMax: Val(0), AtRmemMaxCap: Val(0),
	}
	if n > 0 && rb == 0 {
		s.RcvbufMin, s.RcvbufMax = 0, 0
	}
	if rb >= rmemMax2 {
		s.AtTCPRmemMax = Val(n)
	}
	if rb == 2*coreRmemMax {
		s.AtRmemMaxCap = Val(n)
	}
	if zero >= 0 {
		s.ZeroWindow = Val(uint64(zero))
	}
	return s
}

func repeat(k int, s GroupSample) []GroupSample {
	out := make([]GroupSample, k)
	for i := range out {
		out[i] = s
	}
	return out
}

// growing is a group whose rcvbuf grows from rmemDefault to to over 5 samples, full in the samples listed.
func growing(n, to uint64, fullIn ...int) []GroupSample {
	out := make([]GroupSample, 5)
	for i := range out {
		rb := rmemDefault + (to-rmemDefault)*uint64(i)/4
		var full uint64
		for _, f := range fullIn {
			if f == i {
				full = 1
			}
		}
		out[i] = sample(n, full, rb, 0)
		out[i].RcvbufMin = rmemDefault
	}
	return out
}

var (
	clientPy   = GroupKey{Role: "client", Port: "8080", Cgroup: "/user.slice/app.scope", Process: "python3"}
	serverNode = GroupKey{Role: "server", Port: "8080", Cgroup: "/system.slice/web.service", Process: "node"}
	serverNgx  = GroupKey{Role: "server", Port: "80", Cgroup: "/system.slice/nginx.service", Process: "nginx"}
)

// got is what the rule tables compare: the cause, its confidence and scope.
type got struct {
	Cause      string
	Confidence Confidence
	Scope      Scope
}

func summarize(fs []Finding) []got {
	var out []got
	for _, f := range fs {
		out = append(out, got{f.Cause, f.Confidence, f.Scope})
	}
	return out
}

package realsw

import "testing"

// kernelChecks say what the kernel must have done in each scenario, read with nstat and ss (not with the
// exporter): the figures docs/harm.md is written from. TestAlertsOnRealSoftware runs them on its own runs
// of the scenarios (they are logged; run with -v to see them): d is the nstat rise over the run, mid the
// sockets of midSockets' filter half-way through.
var kernelChecks = map[string]func(t *testing.T, d Counters, mid []Socket){
	PinnedSmallWrites.Name: func(t *testing.T, d Counters, _ []Socket) {
		if d["TcpExtPruneCalled"] == 0 || d["TcpExtTCPRcvCollapsed"] == 0 {
			t.Errorf("want PruneCalled and TCPRcvCollapsed to rise")
		}
		if lost(d) == 0 {
			t.Errorf("want data lost (TCPRcvQDrop + TCPOFODrop + OfoPruned) > 0")
		}
	},
	UnpinnedSmallWrites.Name: func(t *testing.T, d Counters, _ []Socket) {
		if lost(d) != 0 || d["TcpExtRcvPruned"] != 0 {
			t.Errorf("after the fix nothing must be lost: RcvPruned %d, lost %d", d["TcpExtRcvPruned"], lost(d))
		}
		if d["TcpExtTCPRcvCollapsed"]*1000 > d["TcpInSegs"] {
			t.Errorf("after the fix collapsing must be negligible: %d of %d segments", d["TcpExtTCPRcvCollapsed"], d["TcpInSegs"])
		}
	},
	SlowReaderNginx.Name: func(t *testing.T, d Counters, mid []Socket) {
		if d["TcpExtPruneCalled"] != 0 || lost(d) != 0 {
			t.Errorf("a slow reader of full-sized segments must not be pruned: PruneCalled %d, lost %d", d["TcpExtPruneCalled"], lost(d))
		}
		if d["TcpExtTCPToZeroWindowAdv"] < 100 {
			t.Errorf("want at least 100 zero-window advertisements, got %d", d["TcpExtTCPToZeroWindowAdv"])
		}
	},
	PausedReaderUploads.Name: func(t *testing.T, d Counters, mid []Socket) {
		if d["TcpExtPruneCalled"] != 0 || lost(d) != 0 {
			t.Errorf("a paused reader must not be pruned: PruneCalled %d, lost %d", d["TcpExtPruneCalled"], lost(d))
		}
		full := 0
		for _, s := range mid {
			if s.Rcvbuf != 131072 {
				t.Errorf("%s: rcvbuf %d, want tcp_rmem's default 131072 (a buffer grows only as fast as it is read)", s.Peer, s.Rcvbuf)
			}
			if s.Rmem*10 >= s.Rcvbuf*9 {
				full++
			}
		}
		if len(mid) != 40 || full != 40 {
			t.Errorf("want 40 of 40 sockets full, got %d of %d", full, len(mid))
		}
		// The sender probes the closed windows (TCPWinProbe) and the full sockets discard the probes by
		// design: sk_drops rises although nothing is lost.
		var drops uint64
		for _, s := range mid {
			drops += s.Drops
		}
		if d["TcpExtTCPWinProbe"] == 0 || drops == 0 {
			t.Errorf("want window probes discarded into sk_drops: TCPWinProbe %d, sk_drops %d", d["TcpExtTCPWinProbe"], drops)
		}
	},
	Healthy.Name: func(t *testing.T, d Counters, _ []Socket) {
		if lost(d) != 0 || d["TcpExtTCPRcvCollapsed"] != 0 || d["TcpExtRcvPruned"] != 0 {
			t.Errorf("healthy traffic must lose and collapse nothing: lost %d, collapsed %d", lost(d), d["TcpExtTCPRcvCollapsed"])
		}
	},
}

// midSockets says which sockets to look at half-way: the side whose reader the scenario is about.
var midSockets = map[string]string{
	PinnedSmallWrites.Name:   "dport = :8080",
	UnpinnedSmallWrites.Name: "dport = :8080",
	SlowReaderNginx.Name:     "dport = :8081",
	PausedReaderUploads.Name: "sport = :8082",
	Healthy.Name:             "dport = :8081",
}

// TestKernelChecksCoverEveryScenario: every scenario of All() has its kernel check and its half-way sockets.
func TestKernelChecksCoverEveryScenario(t *testing.T) {
	for _, sc := range All() {
		if kernelChecks[sc.Name] == nil || midSockets[sc.Name] == "" {
			t.Errorf("scenario %s has no kernel check", sc.Name)
		}
	}
}

// lost is the data the kernel received and threw away for lack of room.
func lost(d Counters) uint64 {
	return d["TcpExtTCPRcvQDrop"] + d["TcpExtTCPOFODrop"] + d["TcpExtOfoPruned"] + d["TcpExtTCPBacklogDrop"]
}

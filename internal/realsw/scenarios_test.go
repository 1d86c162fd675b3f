package realsw

import (
	"context"
	"testing"
	"time"

	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

// scenarioSeconds is how long each scenario runs here; alerts_e2e_test.go runs them longer.
const scenarioSeconds = 5

// TestScenarios runs every scenario in a fresh namespace and checks what the kernel did with nstat and ss:
// the figures docs/harm.md is written from (they are logged; run with -v to see them).
func TestScenarios(t *testing.T) {
	checks := map[string]func(t *testing.T, d Counters, mid []Socket){
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
	// Which sockets to look at half-way: the side whose reader the scenario is about.
	filters := map[string]string{
		PinnedSmallWrites.Name:   "dport = :8080",
		UnpinnedSmallWrites.Name: "dport = :8080",
		SlowReaderNginx.Name:     "dport = :8081",
		PausedReaderUploads.Name: "sport = :8082",
		Healthy.Name:             "dport = :8081",
	}
	for _, sc := range All() {
		t.Run(sc.Name, func(t *testing.T) {
			ns := testenv.NewNetNS(t)
			e := New(t, ns)
			// tcp_rmem is per namespace: a max of 32 MiB shows it is not what limits a reader that does not read.
			ns.MustRun(t, "sysctl", "-qw", "net.ipv4.tcp_rmem=4096 131072 33554432")
			before := e.Nstat()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- sc.Run(ctx, e, scenarioSeconds*time.Second) }()
			time.Sleep(scenarioSeconds * time.Second / 2)
			mid := e.Sockets(filters[sc.Name])
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			d := e.Nstat().Sub(before)
			var drops uint64
			for _, s := range mid {
				drops += s.Drops
			}
			t.Logf("%s (%s), %ds:\n%shalf-way: %d sockets (%s), sk_drops summed %d", sc.Name, sc.Doc, scenarioSeconds, d, len(mid), filters[sc.Name], drops)
			checks[sc.Name](t, d, mid)
		})
	}
}

// lost is the data the kernel received and threw away for lack of room.
func lost(d Counters) uint64 {
	return d["TcpExtTCPRcvQDrop"] + d["TcpExtTCPOFODrop"] + d["TcpExtOfoPruned"] + d["TcpExtTCPBacklogDrop"]
}

package realsw

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sockbuf/sockbuf_exporter/deploy/rules"
	"github.com/sockbuf/sockbuf_exporter/internal/e2e"
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(e2e.Main(m)) }

// alertSeconds is how long each scenario runs under Prometheus. The rules are the shipped alerts.yml's,
// rendered by the same generator from rules.QuickConfig (every window and `for` divided by 60). The same runs
// also carry the kernel's own checks (kernelChecks: nstat and ss) and the bpf exporter's (bpfWatch), so that
// the suite stays within a few minutes of make test.
const alertSeconds = 22

// Alerts whose counters are host-wide, whatever namespace the exporter runs in (softnet_stat, tcp_mem):
// other tests and engineers on the machine move them, so no scenario can promise they stay silent.
var hostWide = map[string]bool{
	"SockbufSoftnetBacklogDrops":       true,
	"SockbufTCPMemoryPressure":         true,
	"SockbufTCPMemoryNearLimit":        true,
	"SockbufTCPMemoryPressureEpisodes": true,
	"SockbufTCPMemoryPressureTime":     true,
	"SockbufTCPAbortOnMemory":          true,
}

// TestAlertsOnRealSoftware runs each scenario in a namespace of its own with the real exporter binary and a
// real Prometheus evaluating the shipped alert rules, and checks which alerts fire and which stay silent
// throughout: the harm model of docs/harm.md, on real software. "After the fix" and healthy traffic must
// stay silent.
func TestAlertsOnRealSoftware(t *testing.T) {
	e2e.Require(t)
	files, err := rules.Files(rules.QuickConfig())
	if err != nil {
		t.Fatal(err)
	}
	alertsFile := filepath.Join(t.TempDir(), "alerts.yml")
	if err := os.WriteFile(alertsFile, files["alerts.yml"], 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		sc Scenario
		// fire: must fire; may: allowed to be active, neither required nor forbidden; pending: may be pending
		// for a while but must never fire. Every other alert must never be active, not even pending.
		fire, may, pending []string
		// bpf, when set, runs a second exporter with the bpf collector (own namespace) and a second
		// Prometheus on the same traffic, with these expectations (bpfAlertCases, bpf_alerts_e2e_test.go).
		bpf *bpfExpect
	}{
		{PinnedSmallWrites, []string{"SockbufTCPReceiveDataDropped", "SockbufTCPReceiveQueueCollapsing"},
			// The pinned reader also falls behind: its window closes and its sockets fill. True, not required.
			[]string{"SockbufTCPReceiveWindowsClosing", "SockbufSocketsReceiveBufferFull"}, nil, &bpfPinned},
		// After the fix the reader's buffer still fills for a moment before each growth (that moment is what
		// PruneCalled counts): one socket full in one scrape makes a new group's average 1 at once, so the
		// alert can be pending for a few evaluations (seen in CI, one socket); its `for` is there to keep
		// such moments from paging, and firing fails the test.
		{UnpinnedSmallWrites, nil, nil, []string{"SockbufSocketsReceiveBufferFull"}, &bpfUnpinned},
		{SlowReaderNginx, []string{"SockbufTCPReceiveWindowsClosing"}, []string{"SockbufSocketsReceiveBufferFull"}, nil, nil},
		// The 40 windows close at once when the uploads start: the ratio is above the threshold until they
		// leave the rate window, shorter than the `for` (as 5m is shorter than 15m in DefaultConfig).
		{PausedReaderUploads, []string{"SockbufSocketsReceiveBufferFull"}, nil, []string{"SockbufTCPReceiveWindowsClosing"}, nil},
		// Fast readers on loopback still close a window now and then (64 KB segments arrive faster than one
		// read() takes them): over the quick config's 5 s rate window the ratio can touch the threshold for a
		// moment (seen once: 1.5 %, 0.2 % over the run). Pending never notifies; firing would fail the test.
		{Healthy, nil, nil, []string{"SockbufTCPReceiveWindowsClosing"}, nil},
		{MemcgTCPLimit, []string{"SockbufCgroupTCPMemoryAtLimit", "SockbufTCPReceiveDataDropped"}, []string{"SockbufTCPReceiveWindowsClosing"}, nil, nil},
		// After the fix: the same uploads into the same server, its cgroup's TCP memory limit raised far
		// above what 20 connections hold. Nothing is refused or lost. One Python process reading 20 uploads
		// on two CPUs does fall behind them (about 3 % of segments close a window, as with the limit): that
		// alert is true here, and may fire.
		{MemcgTCPLimitRaised, nil, []string{"SockbufTCPReceiveWindowsClosing"}, nil, nil},
	}
	for _, c := range cases {
		t.Run(c.sc.Name, func(t *testing.T) {
			ns := testenv.NewNetNS(t)
			env := New(t, ns)
			// tcp_rmem is per namespace: a max of 32 MiB shows it is not what limits a reader that does not read.
			ns.MustRun(t, "sysctl", "-qw", "net.ipv4.tcp_rmem=4096 131072 33554432")
			if c.sc.Prepare != nil {
				c.sc.Prepare(t, env)
			}
			exp := e2e.StartExporterSeeingCgroups(t, ns)
			prom := e2e.StartPrometheus(t, ns, e2e.PrometheusConfig{
				Targets:   []string{exp.Addr},
				RuleFiles: []string{alertsFile},
			})
			var bw *bpfWatch
			if c.bpf != nil {
				bw = startBPFWatch(t, ns, alertsFile)
			}
			prom.WaitTargetsUp(t, 20*time.Second)
			before := exp.Scrape(t)
			if bw != nil {
				bw.begin(t)
			}

			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			kernelBefore := env.Nstat()
			start := time.Now()
			done := make(chan error, 1)
			go func() { done <- c.sc.Run(ctx, env, alertSeconds*time.Second) }()

			var maxFull float64
			var mid []Socket
			midTaken := false
			firstFiring := map[string]time.Duration{}
			active, _ := watchAlerts(t, prom, done, func() {
				if s, err := prom.QueryErr(`sum(sockbuf_rcvbuf_full_sockets)`); err == nil && len(s) == 1 && s[0].Value > maxFull {
					maxFull = s[0].Value
				}
				if bw != nil {
					bw.poll(t)
				}
				if f := midSockets[c.sc.Name]; f != "" && !midTaken && time.Since(start) >= alertSeconds*time.Second/2 {
					mid, midTaken = env.Sockets(f), true
				}
			}, firstFiring, start)
			kernel := env.Nstat().Sub(kernelBefore)
			if check := kernelChecks[c.sc.Name]; check != nil {
				var drops uint64
				for _, s := range mid {
					drops += s.Drops
				}
				t.Logf("%s (%s), %ds, nstat:\n%shalf-way: %d sockets (%s), sk_drops summed %d",
					c.sc.Name, c.sc.Doc, alertSeconds, kernel, len(mid), midSockets[c.sc.Name], drops)
				if !midTaken {
					t.Errorf("%s: the scenario ended before its sockets were looked at half-way", c.sc.Name)
				}
				check(t, kernel, mid)
			}
			if len(firstFiring) > 0 {
				t.Logf("%s: first firing, after the traffic started: %v", c.sc.Name, firstFiring)
			}
			after := exp.Scrape(t)
			if bw != nil {
				bw.check(t, c.sc.Name, *c.bpf)
			}
			delta := func(name string) float64 { return after.Sum(name) - before.Sum(name) }
			t.Logf("%s: exporter deltas over the scenario: PruneCalled %.0f, TCPRcvCollapsed %.0f, InSegs %.0f, "+
				"TCPRcvQDrop %.0f, TCPOFODrop %.0f, OfoPruned %.0f, TCPToZeroWindowAdv %.0f, socket drops %.0f; most full sockets %.0f",
				c.sc.Name, delta("sockbuf_tcp_prune_called_total"), delta("sockbuf_tcp_rcv_collapsed_total"),
				delta("sockbuf_tcp_in_segments_total"), delta("sockbuf_tcp_rcvq_drop_total"), delta("sockbuf_tcp_ofo_drop_total"),
				delta("sockbuf_tcp_ofo_pruned_total"), delta("sockbuf_tcp_to_zero_window_adv_total"),
				delta("sockbuf_socket_drops_total"), maxFull)
			var names []string
			for n, st := range active {
				names = append(names, n+": "+st)
			}
			sort.Strings(names)
			t.Logf("%s: alerts active during the scenario: [%s]", c.sc.Name, strings.Join(names, "; "))

			allowed := map[string]bool{}
			for _, n := range append(append([]string{}, c.fire...), c.may...) {
				allowed[n] = true
			}
			for _, n := range c.fire {
				if _, ok := active[n]; !ok || !strings.HasPrefix(active[n], "firing") {
					t.Errorf("%s: %s never fired", c.sc.Name, n)
				}
			}
			for _, n := range c.pending {
				if strings.HasPrefix(active[n], "firing") {
					t.Errorf("%s: %s fired (%s); it may only be pending", c.sc.Name, n, active[n])
				}
				allowed[n] = true
			}
			for n := range active {
				if !allowed[n] && !hostWide[n] {
					t.Errorf("%s: %s was active (%s) and must stay silent", c.sc.Name, n, active[n])
				}
			}
		})
	}
}

// watchAlerts polls Prometheus' alerts once a second (as often as it evaluates) until done says the scenario
// ended, calling each after every poll, and returns every alert active at any poll with its state ("firing"
// winning over "pending") and its labels then.
//
// firstFiring, when not nil, gets the time since start at which each alert was first seen firing.
func watchAlerts(t *testing.T, prom *e2e.Prometheus, done <-chan error, each func(), firstFiring map[string]time.Duration, start time.Time) (active map[string]string, labels map[string]map[string]string) {
	t.Helper()
	active, labels = map[string]string{}, map[string]map[string]string{}
	for running := true; running; {
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
			running = false
		case <-time.After(time.Second):
		}
		collectAlerts(t, prom, active, labels)
		for n, st := range active {
			if _, seen := firstFiring[n]; firstFiring != nil && !seen && strings.HasPrefix(st, "firing") {
				firstFiring[n] = time.Since(start).Round(time.Second)
			}
		}
		if each != nil {
			each()
		}
	}
	return active, labels
}

// collectAlerts adds the alerts active now to active and labels, "firing" winning over "pending".
func collectAlerts(t *testing.T, prom *e2e.Prometheus, active map[string]string, labels map[string]map[string]string) {
	t.Helper()
	for _, a := range prom.Alerts(t) {
		if foreignMemcgAlert(a.Labels) {
			continue
		}
		name := a.Labels["alertname"]
		if _, seen := active[name]; !seen || a.State == "firing" {
			active[name] = a.State + " (value " + a.Value + ")"
			labels[name] = a.Labels
		}
	}
}

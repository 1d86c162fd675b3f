package realsw

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sockbuf/sockbuf_exporter/deploy/rules"
	"github.com/sockbuf/sockbuf_exporter/internal/e2e"
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

// TestBPFAlertsOnRealSoftware runs the pinned client and the same client after the fix with the exporter's
// bpf collector on (own namespace only), under a real Prometheus evaluating the shipped rules
// (rules.QuickConfig). Pinned: the loss pages once, as SockbufPinnedReceiversDropping on the client group of
// the Node.js server's port, and the host-wide SockbufTCPReceiveDataDropped on the same counters never fires.
// After the fix: the client's sockets still drop segments, all of reasons that are not loss, and every
// data-loss alert stays silent.
func TestBPFAlertsOnRealSoftware(t *testing.T) {
	e2e.Require(t)
	files, err := rules.Files(rules.QuickConfig())
	if err != nil {
		t.Fatal(err)
	}
	alertsFile := filepath.Join(t.TempDir(), "alerts.yml")
	if err := os.WriteFile(alertsFile, files["alerts.yml"], 0o644); err != nil {
		t.Fatal(err)
	}
	loss := rules.DefaultConfig().LossReasons
	client := map[string]string{"role": "client", "port": strconv.Itoa(PortNodeSmallWrites)}
	cases := []struct {
		sc Scenario
		// As in TestAlertsOnRealSoftware: fire must fire, may may be active, pending may be pending but never
		// fire; every other alert (host-wide ones aside) must never be active.
		fire, may, pending []string
		// lockedLoss: whether the client group must show loss reasons under rcvbuf_locked="true".
		lockedLoss bool
	}{
		{PinnedSmallWrites, []string{"SockbufPinnedReceiversDropping", "SockbufTCPReceiveQueueCollapsing"},
			[]string{"SockbufTCPReceiveWindowsClosing", "SockbufSocketsReceiveBufferFull"},
			// The bpf series of a reason appear with its first drop, which rate() cannot see: the host-wide
			// alert may be pending for an evaluation until the clause that silences it sees the loss.
			[]string{"SockbufTCPReceiveDataDropped"}, true},
		// The bursty reader's buffer can look full for a few scrapes on a loaded machine; whether that may
		// fire is TestAlertsOnRealSoftware's business. Here every data-loss alert must stay silent.
		{UnpinnedSmallWrites, nil, nil, []string{"SockbufSocketsReceiveBufferFull"}, false},
	}
	for _, c := range cases {
		t.Run(c.sc.Name, func(t *testing.T) {
			ns := testenv.NewNetNS(t)
			env := New(t, ns)
			exp := e2e.StartExporter(t, ns, "--collector.bpf", "--collector.bpf.own-netns")
			before := exp.Scrape(t)
			if v := before.Select("sockbuf_scrape_collector_success", map[string]string{"collector": "bpf"}); len(v) != 1 || v.Sum("sockbuf_scrape_collector_success") != 1 {
				testenv.Missing(t, "the bpf collector does not run here (%v); log:\n%s", v, exp.Logs())
			}
			prom := e2e.StartPrometheus(t, ns, e2e.PrometheusConfig{
				Targets:   []string{exp.Addr},
				RuleFiles: []string{alertsFile},
			})
			prom.WaitTargetsUp(t, 20*time.Second)

			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- c.sc.Run(ctx, env, alertSeconds*time.Second) }()

			active, labels := watchAlerts(t, prom, done, nil)
			after := exp.Scrape(t)

			// The client group's drops over the scenario, by rcvbuf_locked and reason.
			byReason := map[string]float64{}
			for k, v := range after.Select("sockbuf_tcp_receive_drops_total", client) {
				if d := v - before[k]; d > 0 {
					byReason[label(k, "rcvbuf_locked")+"/"+label(k, "reason")] += d
				}
			}
			var lockedLoss, unlockedLoss float64
			for _, r := range loss {
				lockedLoss += byReason["true/"+r]
				unlockedLoss += byReason["false/"+r]
			}
			t.Logf("%s: bpf drops of client port %d by rcvbuf_locked/reason: %v", c.sc.Name, PortNodeSmallWrites, byReason)
			var names []string
			for n, st := range active {
				names = append(names, fmt.Sprintf("%s: %s %v", n, st, labels[n]))
			}
			sort.Strings(names)
			t.Logf("%s: alerts active during the scenario: [%s]", c.sc.Name, strings.Join(names, "; "))

			if c.lockedLoss && lockedLoss == 0 {
				t.Errorf("%s: no loss reason under rcvbuf_locked=\"true\" on the pinned client's group", c.sc.Name)
			}
			if !c.lockedLoss {
				if lockedLoss+unlockedLoss != 0 {
					t.Errorf("%s: %v loss-reason drops on the client's group after the fix", c.sc.Name, lockedLoss+unlockedLoss)
				}
				for k := range byReason {
					if strings.HasPrefix(k, "true/") {
						t.Errorf("%s: drops %s on an unpinned client", c.sc.Name, k)
					}
				}
			}
			if l, ok := labels["SockbufPinnedReceiversDropping"]; ok && (l["role"] != "client" || l["port"] != client["port"]) {
				t.Errorf("%s: SockbufPinnedReceiversDropping for %v, want the client group of port %s", c.sc.Name, l, client["port"])
			}

			allowed := map[string]bool{}
			for _, n := range append(append([]string{}, c.fire...), c.may...) {
				allowed[n] = true
			}
			for _, n := range c.fire {
				if !strings.HasPrefix(active[n], "firing") {
					t.Errorf("%s: %s never fired", c.sc.Name, n)
				}
			}
			for _, n := range c.pending {
				if strings.HasPrefix(active[n], "firing") {
					t.Errorf("%s: %s fired (%s) although the bpf collector saw the loss; it may only be pending", c.sc.Name, n, active[n])
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

// label returns one label's value from a series key written name{a="x",b="y"}.
func label(series, name string) string {
	for _, sep := range []string{"{", ","} {
		if _, rest, ok := strings.Cut(series, sep+name+`="`); ok {
			v, _, _ := strings.Cut(rest, `"`)
			return v
		}
	}
	return ""
}

package dashboards

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sockbuf/sockbuf_exporter/deploy/rules"
	"github.com/sockbuf/sockbuf_exporter/internal/e2e"
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
	"github.com/sockbuf/sockbuf_exporter/internal/trafficgen"
)

func TestMain(m *testing.M) { os.Exit(e2e.Main(m)) }

// emptyInNetNS are the dashboard queries that cannot return data from an exporter in a network namespace
// other than the host's, and why. Anything else that stays empty fails the test.
var emptyInNetNS = map[string]string{
	// /proc/sys/net/ipv4/tcp_mem exists only in the initial network namespace, so the exporter does not
	// export the thresholds there (the collector still succeeds); the memory line of the same panel is checked.
	"sockbuf-host.json: TCP memory against tcp_mem (B)": "tcp_mem thresholds are host-namespace only",
	// net.core.netdev_max_backlog is a global sysctl, shown only in the initial namespace.
	"sockbuf-host.json: Queue limits (A)": "netdev_max_backlog is host-namespace only",
}

// e2eJob is the scrape job of the end-to-end test: deliberately a name the shipped rules' default selector
// does not match, so that the dashboards are shown to work for any job name (they must not read the
// recording rules, which stay empty for it) and the alerts with a Selector changed as docs/runbooks.md says.
const e2eJob = "tcp-buffers"

// fastRules writes a copy of the shipped alerts.yml with every `for` shortened, so that alerts fire within
// seconds, and the default job selector replaced by one for e2eJob; the shipped file keeps both.
func fastRules(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../deploy/rules/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	fast := regexp.MustCompile(`(?m)^(\s+for: ).*$`).ReplaceAll(b, []byte("${1}2s"))
	if string(fast) == string(b) {
		t.Fatal("alerts.yml has no `for:` to shorten")
	}
	def := rules.DefaultConfig().Selector
	if !strings.Contains(string(fast), def) {
		t.Fatalf("alerts.yml does not use the default selector %s", def)
	}
	fast = []byte(strings.ReplaceAll(string(fast), def, `job="`+e2eJob+`"`))
	p := filepath.Join(t.TempDir(), "alerts-fast.yml")
	if err := os.WriteFile(p, fast, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestEndToEnd runs the real exporter in a fresh network namespace while the traffic generator makes the
// kernel prune, with a real Prometheus loading the rules and a real Alertmanager behind it, and checks that
// the pruning alert reaches a webhook and that every dashboard query returns data.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test; -short")
	}
	e2e.Require(t)
	ns := testenv.NewNetNS(t)
	// --collector.netns: from the test's namespace, the host's and other tests' are other namespaces;
	// --collector.netns.sockets dumps their sockets for the sockets dashboard's per-namespace panel.
	// --collector.bpf for the sockets dashboard's drop-reason panels and the per-service alerts, counting
	// only the test's namespace so that other tests' drops stay out.
	exp := e2e.StartExporter(t, ns, "--collector.netns", "--collector.netns.sockets", "--collector.bpf", "--collector.bpf.own-netns")
	bpfOK := bpfRunning(t, exp)
	hook := e2e.StartWebhook(t, ns)
	am := e2e.StartAlertmanager(t, ns, e2e.AlertmanagerConfig{WebhookURL: hook.URL()})
	prom := e2e.StartPrometheus(t, ns, e2e.PrometheusConfig{
		Targets: []string{exp.Addr}, // scraped every second
		JobName: e2eJob,
		// The shipped recording rules, loaded as a user would, select nothing of e2eJob: a dashboard panel
		// reading them would come back empty below.
		RuleFiles:     []string{fastRules(t), "../deploy/rules/recording.yml"},
		Alertmanagers: []string{am.Addr},
	})
	prom.WaitTargetsUp(t, 15*time.Second)

	// Prune until the end of the test (bounded at 90s): renewing the connections every second keeps the
	// kernel pruning between scrapes, so rates stay above zero while the dashboard queries run.
	var done atomic.Bool
	traffic := make(chan error, 1)
	go func() {
		traffic <- ns.Do(func() error {
			_, err := trafficgen.Prune(context.Background(), trafficgen.Options{
				Duration: 90 * time.Second, Renew: time.Second, CheckEvery: 100 * time.Millisecond,
				Until: done.Load,
			})
			return err
		})
	}()
	// Autotuned receivers that read: receive-buffer growth for the growth panel.
	growth := make(chan error, 1)
	go func() { growth <- ns.Do(func() error { return bulkTransfers(done.Load, 90*time.Second) }) }()
	defer func() {
		done.Store(true)
		if err := <-traffic; err != nil {
			t.Errorf("traffic generator: %v", err)
		}
		if err := <-growth; err != nil {
			t.Errorf("bulk transfers: %v", err)
		}
	}()

	// The pruning load's listener pins SO_RCVBUF: with the bpf collector its loss pages as the pinned
	// receivers' alert, and the host-wide alert on the same counters steps aside; without it, the host-wide
	// alert pages.
	alert := "SockbufTCPReceiveDataDropped"
	if bpfOK {
		alert = "SockbufPinnedReceiversDropping"
	}
	active := waitAlertFiring(t, prom, alert, 45*time.Second)
	if active.Labels["instance"] != exp.Addr || active.Labels["severity"] != "critical" {
		t.Errorf("%s active with labels %v, want instance %s, severity critical", alert, active.Labels, exp.Addr)
	}
	if bpfOK {
		if active.Labels["role"] != "server" || active.Labels["port"] == "" {
			t.Errorf("%s active with labels %v, want the pruning listener's server group", alert, active.Labels)
		}
		// The host-wide alert's own condition holds (the host counters see the loss): only its unless
		// clause keeps it silent.
		hostCond := hostDataLostCondition(t)
		if s, err := prom.QueryErr(hostCond); err != nil || len(s) == 0 {
			t.Errorf("the host-wide data-loss condition %s returns %v (err %v): the check below would prove nothing", hostCond, s, err)
		}
		// No double page: while the pinned alert fires, neither the host-wide alert nor the unpinned
		// per-service alert is active, not even pending.
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
			for _, a := range prom.Alerts(t) {
				switch a.Labels["alertname"] {
				case "SockbufTCPReceiveDataDropped", "SockbufServiceReceiveDataDropped":
					t.Errorf("%s %s (value %s) while %s fires for the same loss", a.Labels["alertname"], a.State, a.Value, alert)
				}
			}
		}
	}
	got := hook.WaitAlert(t, alert, 30*time.Second)
	if !strings.Contains(got.Annotations["description"], exp.Addr) ||
		got.Annotations["runbook_url"] != rules.DefaultRunbookBase+"#"+rules.Anchor(alert) {
		t.Errorf("webhook got %s with annotations %v", alert, got.Annotations)
	}
	t.Logf("Alertmanager delivered %s: %s", alert, got.Annotations["description"])
	for _, a := range prom.Alerts(t) {
		t.Logf("active in Prometheus: %s (%s, %s) value %s", a.Labels["alertname"], a.Labels["severity"], a.State, a.Value)
	}

	// Every query of both dashboards, variables filled in with this target, must return data. Recording
	// rules and rates need a few evaluations; poll each for a while before calling it empty.
	// The address as a regex: its dots match any character, which still selects only this target.
	vals := map[string]string{"job": e2eJob, "instance": exp.Addr}
	qs := allDashboardQueries(t)
	deadline := time.Now().Add(20 * time.Second)
	var empty []string
	for _, q := range qs {
		expr := fillVariables(q.expr, vals)
		n := 0
		for {
			s, err := prom.QueryErr(expr)
			if err != nil {
				t.Errorf("%s: %v", q.where, err)
				break
			}
			if n = len(s); n > 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		why, expected := emptyInNetNS[q.where]
		if !expected && !bpfOK && (strings.Contains(q.expr, "sockbuf_tcp_receive_drops_total") || strings.Contains(q.expr, "sockbuf_tcp_rcvbuf_grow_total")) {
			why, expected = "the bpf collector could not load its programs", true
		}
		switch {
		case n == 0 && expected:
			t.Logf("%s: no data, as expected (%s)", q.where, why)
		case n == 0:
			empty = append(empty, q.where+": "+expr)
		case expected:
			t.Logf("%s: returns data although listed in emptyInNetNS (%s)", q.where, why)
		}
	}
	if len(empty) > 0 {
		t.Errorf("%d of %d dashboard queries returned no data:\n\t%s", len(empty), len(qs), strings.Join(empty, "\n\t"))
	}
}

// waitAlertFiring polls Prometheus' /api/v1/alerts until the alert is firing.
func waitAlertFiring(t *testing.T, prom *e2e.Prometheus, name string, timeout time.Duration) e2e.Alert {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		alerts := prom.Alerts(t)
		for _, a := range alerts {
			if a.Labels["alertname"] == name && a.State == "firing" {
				return a
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not firing in Prometheus after %s; active: %v", name, timeout, alerts)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// bpfRunning says whether the exporter's bpf collector loaded its programs. Where it cannot (no CAP_BPF or
// BTF), its panels are expected empty: that skips their check locally and fails it in CI.
func bpfRunning(t *testing.T, exp *e2e.Exporter) bool {
	t.Helper()
	for _, v := range exp.Scrape(t).Select("sockbuf_scrape_collector_success", map[string]string{"collector": "bpf"}) {
		if v == 1 {
			return true
		}
	}
	msg := "the bpf collector does not run here; its dashboard panels and alerts go unchecked. Exporter log:\n" + exp.Logs()
	if os.Getenv("CI") != "" {
		t.Error(msg)
	} else {
		t.Log(msg)
	}
	return false
}

// bulkTransfers sends 16 MiB at a time from one unpinned socket to another that reads it all, over and over
// until stop returns true or limit passes, so that receive-buffer autotuning grows the reader's buffer
// (tcp:tcp_rcvbuf_grow). It runs on the namespace's thread (NetNS.Do).
func bulkTransfers(stop func() bool, limit time.Duration) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(io.Discard, c)
			}()
		}
	}()
	buf := make([]byte, 16<<20)
	for end := time.Now().Add(limit); !stop() && time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			return err
		}
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, err = c.Write(buf)
		c.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// hostDataLostCondition is SockbufTCPReceiveDataDropped's expression for the test's job without the clause
// that silences it where the bpf collector sees the loss.
func hostDataLostCondition(t *testing.T) string {
	t.Helper()
	c := rules.DefaultConfig()
	c.Selector = `job="` + e2eJob + `"`
	for _, g := range rules.Alerting(c).Groups {
		for _, r := range g.Rules {
			if r.Alert == "SockbufTCPReceiveDataDropped" {
				cond, _, ok := strings.Cut(r.Expr, " unless ")
				if !ok {
					t.Fatalf("SockbufTCPReceiveDataDropped has no unless clause: %s", r.Expr)
				}
				return cond
			}
		}
	}
	t.Fatal("no SockbufTCPReceiveDataDropped rule")
	return ""
}

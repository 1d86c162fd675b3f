package realsw

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sockbuf/sockbuf_exporter/deploy/rules"
	"github.com/sockbuf/sockbuf_exporter/internal/e2e"
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

// The bpf half of TestAlertsOnRealSoftware: the pinned client and the same client after the fix, watched on
// the same traffic by a second exporter with the bpf collector on (own namespace only) and a second real
// Prometheus evaluating the shipped rules (rules.QuickConfig). Pinned: the loss pages once, as
// SockbufPinnedReceiversDropping on the client group of the Node.js server's port, and the host-wide
// SockbufTCPReceiveDataDropped on the same counters never fires. After the fix: the client's sockets still
// drop segments, all of reasons that are not loss, and every data-loss alert stays silent. Sharing the
// traffic with the netlink-only exporter's run keeps the suite within its few minutes.

// bpfExpect is what the bpf exporter's Prometheus must show: as in TestAlertsOnRealSoftware, fire must fire,
// may may be active, pending may be pending but never fire; every other alert (host-wide ones aside) must
// never be active.
type bpfExpect struct {
	fire, may, pending []string
	// lockedLoss: whether the client group must show loss reasons under rcvbuf_locked="true".
	lockedLoss bool
}

var (
	bpfPinned = bpfExpect{[]string{"SockbufPinnedReceiversDropping", "SockbufTCPReceiveQueueCollapsing"},
		[]string{"SockbufTCPReceiveWindowsClosing", "SockbufSocketsReceiveBufferFull"},
		// The bpf series of a reason appear with its first drop, which rate() cannot see: the host-wide
		// alert may be pending for an evaluation until the clause that silences it sees the loss.
		[]string{"SockbufTCPReceiveDataDropped"}, true}
	// The bursty reader's buffer can look full for a few scrapes on a loaded machine; whether that may
	// fire is the netlink half's business. Here every data-loss alert must stay silent.
	bpfUnpinned = bpfExpect{nil, nil, []string{"SockbufSocketsReceiveBufferFull"}, false}
)

// bpfWatch is the second exporter and Prometheus of a case.
type bpfWatch struct {
	exp    *e2e.Exporter
	prom   *e2e.Prometheus
	before e2e.Metrics
	active map[string]string
	labels map[string]map[string]string
}

// startBPFWatch starts the bpf exporter and its Prometheus in ns; it fails (skips outside CI) when the bpf
// collector cannot run here.
func startBPFWatch(t *testing.T, ns *testenv.NetNS, alertsFile string) *bpfWatch {
	t.Helper()
	w := &bpfWatch{active: map[string]string{}, labels: map[string]map[string]string{}}
	w.exp = e2e.StartExporterSeeingCgroups(t, ns, "--collector.bpf", "--collector.bpf.own-netns")
	probe := w.exp.Scrape(t)
	if v := probe.Select("sockbuf_scrape_collector_success", map[string]string{"collector": "bpf"}); len(v) != 1 || v.Sum("sockbuf_scrape_collector_success") != 1 {
		testenv.Missing(t, "the bpf collector does not run here (%v); log:\n%s", v, w.exp.Logs())
	}
	w.prom = e2e.StartPrometheus(t, ns, e2e.PrometheusConfig{Targets: []string{w.exp.Addr}, RuleFiles: []string{alertsFile}})
	w.prom.WaitTargetsUp(t, 20*time.Second)
	return w
}

// begin takes the bpf exporter's counters just before the traffic starts.
func (w *bpfWatch) begin(t *testing.T) { w.before = w.exp.Scrape(t) }

// poll records the bpf Prometheus's alerts, once per poll of the netlink one.
func (w *bpfWatch) poll(t *testing.T) { collectAlerts(t, w.prom, w.active, w.labels) }

// check compares the client group's bpf drops and the bpf Prometheus's alerts over the scenario with c.
func (w *bpfWatch) check(t *testing.T, name string, c bpfExpect) {
	t.Helper()
	w.poll(t)
	after := w.exp.Scrape(t)
	loss := rules.DefaultConfig().LossReasons
	client := map[string]string{"role": "client", "port": strconv.Itoa(PortNodeSmallWrites)}
	byReason := map[string]float64{}
	for k, v := range after.Select("sockbuf_tcp_receive_drops_total", client) {
		if d := v - w.before[k]; d > 0 {
			byReason[label(k, "rcvbuf_locked")+"/"+label(k, "reason")] += d
		}
	}
	var lockedLoss, unlockedLoss float64
	for _, r := range loss {
		lockedLoss += byReason["true/"+r]
		unlockedLoss += byReason["false/"+r]
	}
	t.Logf("%s (bpf): drops of client port %d by rcvbuf_locked/reason: %v", name, PortNodeSmallWrites, byReason)
	var names []string
	for n, st := range w.active {
		names = append(names, fmt.Sprintf("%s: %s %v", n, st, w.labels[n]))
	}
	sort.Strings(names)
	t.Logf("%s (bpf): alerts active during the scenario: [%s]", name, strings.Join(names, "; "))

	if c.lockedLoss && lockedLoss == 0 {
		t.Errorf("%s (bpf): no loss reason under rcvbuf_locked=\"true\" on the pinned client's group", name)
	}
	if !c.lockedLoss {
		if lockedLoss+unlockedLoss != 0 {
			t.Errorf("%s (bpf): %v loss-reason drops on the client's group after the fix", name, lockedLoss+unlockedLoss)
		}
		for k := range byReason {
			if strings.HasPrefix(k, "true/") {
				t.Errorf("%s (bpf): drops %s on an unpinned client", name, k)
			}
		}
	}
	if l, ok := w.labels["SockbufPinnedReceiversDropping"]; ok && (l["role"] != "client" || l["port"] != client["port"]) {
		t.Errorf("%s (bpf): SockbufPinnedReceiversDropping for %v, want the client group of port %s", name, l, client["port"])
	}
	allowed := map[string]bool{}
	for _, n := range append(append([]string{}, c.fire...), c.may...) {
		allowed[n] = true
	}
	for _, n := range c.fire {
		if !strings.HasPrefix(w.active[n], "firing") {
			t.Errorf("%s (bpf): %s never fired", name, n)
		}
	}
	for _, n := range c.pending {
		if strings.HasPrefix(w.active[n], "firing") {
			t.Errorf("%s (bpf): %s fired (%s) although the bpf collector saw the loss; it may only be pending", name, n, w.active[n])
		}
		allowed[n] = true
	}
	for n := range w.active {
		if !allowed[n] && !hostWide[n] {
			t.Errorf("%s (bpf): %s was active (%s) and must stay silent", name, n, w.active[n])
		}
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

// Package rules renders sockbuf_exporter's Prometheus alerting and recording rules (alerts.yml and
// recording.yml in this directory) from one typed Config, so that every threshold, `for` duration and label
// selector lives in one place a user can change. The same Config sets the dashboards' thresholds (package
// dashboards). The rendered YAML is committed; `go generate ./deploy/rules` rewrites it (go run ./gen), and
// TestGenerated fails when it is stale.
package rules

//go:generate go run ./gen

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"
)

// Threshold is one alert's trigger: the value the expression compares against and how long it must hold.
type Threshold struct {
	Value float64
	For   string // a Prometheus duration, e.g. "10m"
}

// Config holds every knob of the rules. Change DefaultConfig (or build your own and call Render) and
// regenerate.
type Config struct {
	// Selector is added to every selector of an exporter metric (and to `up`), so that the rules only look
	// at sockbuf_exporter targets. The default, `job=~".*sockbuf.*"`, matches the shipped scrape configs
	// (job "sockbuf", the ServiceMonitor's "sockbuf-exporter"); with any other job name every alert stays
	// silent, so set your own matcher here (e.g. `job="node-tcp"`) and regenerate. docs/runbooks.md says
	// so at the top.
	Selector string
	// RunbookBase is what runbook_url starts with; the alert's anchor is appended after '#'. It must be an
	// absolute URL: Alertmanager and Grafana show runbook_url as a link, and a repository-relative path is
	// not clickable there. Point it at your own copy (a fork, an internal wiki) to ship edited runbooks.
	RunbookBase string
	// RateWindow is the range of every rate() and increase() in alerts and recording rules. It must cover at
	// least four scrapes so that a single missed scrape does not blank the rate.
	RateWindow string

	// The alerts follow docs/harm.md: data lost, CPU spent compacting, readers stalled, memory limits,
	// accept queues, softnet. PruneCalled alone (the kernel made room, usually by growing the buffer) and
	// per-socket drops alone (they include discarded window probes and duplicates) page nobody.

	// TCPRcvQDrop + TCPOFODrop + OfoPruned per second: data the kernel received and threw away for lack of
	// receive memory.
	DataLost Threshold
	// TCPBacklogDrop per second: segments dropped while the socket was busy in a system call.
	BacklogDrops Threshold
	// TCPRcvCollapsed per incoming segment: CPU spent compacting receive queues.
	CollapseRatio Threshold
	// TCPToZeroWindowAdv per incoming segment: receivers that keep closing their window, stalling their
	// senders. Per segment, not per second, because a busy host with readers that keep up still closes a
	// window now and then when a reader is descheduled; a reader that cannot keep up closes it every few
	// dozen segments.
	ZeroWindows Threshold
	// Sockets of one group with a full receive buffer, on average over FullSocketsWindow.
	FullSockets       Threshold
	FullSocketsWindow string
	// Value unused: TCP memory above tcp_mem's pressure threshold on average over MemoryWindow.
	MemoryPressure Threshold
	MemoryWindow   string
	// Fraction of tcp_mem's max threshold, on average over MemoryNearMaxWindow: above it the kernel refuses
	// memory to every TCP socket.
	MemoryNearMax       Threshold
	MemoryNearMaxWindow string
	// Number of times TCP entered memory pressure within PressureEpisodesWindow.
	PressureEpisodes       Threshold
	PressureEpisodesWindow string
	// Share of the time TCP spent in memory pressure over PressureTimeWindow (rate of
	// TCPMemoryPressuresChrono). The kernel adds an episode's duration when it ends, so one episode shows
	// in the rate for PressureTimeWindow less a scrape interval: with For equal to the window a single
	// episode never fires it (SockbufTCPMemoryPressure covers a long one while it lasts), repeated ones do.
	PressureTime       Threshold
	PressureTimeWindow string
	// TCPAbortOnMemory per second: connections reset for lack of memory.
	AbortOnMemory Threshold
	// ListenOverflows per second.
	ListenOverflows Threshold
	// Fraction of a listener's backlog limit its accept queue must reach, on average over ListenQueueWindow.
	ListenQueueFull   Threshold
	ListenQueueWindow string
	// Softnet (netdev_max_backlog) drops per second, summed over CPUs.
	SoftnetDrops Threshold
	// Value unused: the target has not been scraped successfully.
	ExporterDown Threshold

	// With the bpf collector (--collector.bpf), data loss per service (role, port, cgroup) from
	// sockbuf_tcp_receive_drops_total, counting only LossReasons: the kernel's drop reasons that are data
	// thrown away for lack of receive-buffer room. docs/harm.md says why each other reason (window probes,
	// duplicates, segments beyond the window, zero-window drops) is left out. The loss is split by
	// rcvbuf_locked into two alerts with different fixes, so each lost packet pages once: ServiceDataLost on
	// sockets whose buffer autotuning manages, PinnedDataLost on sockets whose SO_RCVBUF the application set.
	// While either sees loss on a target, the host-wide alerts on the same kernel counters (data dropped,
	// backlog drops, per-namespace data dropped) stay silent there; where the bpf metrics are absent they
	// fire as before.
	LossReasons     []string
	ServiceDataLost Threshold
	PinnedDataLost  Threshold
	// Value unused: a collector has reported failure on every scrape.
	CollectorFailing Threshold

	// A cgroup v1 memory cgroup's TCP memory at its memory.kmem.tcp.limit_in_bytes (memcg collector): its
	// peak (max_usage) rose within CgroupTCPLimitWindow to the limit or above, or its usage averaged at least
	// Value of the limit over the window. usage passes the limit only through charges forced after a refused
	// one, so a new peak at the limit is a refusal; on recent kernels failcnt does not count them. The
	// window must be longer than For: a peak that rises once stays in the window for the window's length.
	CgroupTCPLimit       Threshold
	CgroupTCPLimitWindow string
}

// DefaultRunbookBase is where the runbooks of the main branch are browsable.
const DefaultRunbookBase = "https://github.com/sockbuf/sockbuf_exporter/blob/main/docs/runbooks.md"

// DefaultConfig is what the committed alerts.yml and recording.yml are rendered from.
func DefaultConfig() Config {
	return Config{
		Selector:    `job=~".*sockbuf.*"`,
		RunbookBase: DefaultRunbookBase,
		RateWindow:  "5m",

		// Any data thrown away after it was received costs a retransmission and a stall: alert on any.
		DataLost:      Threshold{Value: 0, For: "5m"},
		BacklogDrops:  Threshold{Value: 0, For: "10m"},
		CollapseRatio: Threshold{Value: 0.01, For: "15m"},
		// A window closing once per 100 incoming segments for a quarter of an hour: readers that
		// persistently cannot keep up (docs/harm.md: 7% with three slow readers; at most 0.26% with five
		// fast ones on a loaded host, and 0 after the pinned client's fix).
		ZeroWindows: Threshold{Value: 0.01, For: "15m"},
		// An average of one full socket over 15 minutes: not a burst, not one unlucky scrape.
		FullSockets:         Threshold{Value: 1, For: "5m"},
		FullSocketsWindow:   "15m",
		MemoryPressure:      Threshold{For: "10m"},
		MemoryWindow:        "5m",
		MemoryNearMax:       Threshold{Value: 0.9, For: "2m"},
		MemoryNearMaxWindow: "2m",
		// Flapping in and out of pressure shows a host sized at the edge.
		PressureEpisodes:       Threshold{Value: 3, For: "0m"},
		PressureEpisodesWindow: "1h",
		// 5% is 45s in every quarter of an hour, spent with every socket's buffers held down.
		PressureTime:       Threshold{Value: 0.05, For: "15m"},
		PressureTimeWindow: "15m",
		AbortOnMemory:      Threshold{Value: 0, For: "5m"},
		ListenOverflows:    Threshold{Value: 0, For: "5m"},
		ListenQueueFull:    Threshold{Value: 0.9, For: "5m"},
		ListenQueueWindow:  "5m",
		SoftnetDrops:       Threshold{Value: 0, For: "10m"},
		ExporterDown:       Threshold{For: "5m"},
		CollectorFailing:   Threshold{For: "15m"},
		// proto_mem = TcpExt TCPRcvQDrop + TCPOFODrop, tcp_ofo_queue_prune ~ OfoPruned, socket_backlog =
		// TCPBacklogDrop (bpf/drops/doc.go); socket_rcvbuff is the generic "receive buffer full" reason of
		// datagram sockets (TCP's receive path says proto_mem), loss for lack of room should TCP use it.
		LossReasons:     []string{"proto_mem", "tcp_ofo_queue_prune", "socket_backlog", "socket_rcvbuff"},
		ServiceDataLost: Threshold{Value: 0, For: "5m"},
		PinnedDataLost:  Threshold{Value: 0, For: "5m"},
		// A refused charge drops data at once; the minute keeps one unlucky scrape from paging.
		CgroupTCPLimit:       Threshold{Value: 0.9, For: "1m"},
		CgroupTCPLimitWindow: "5m",
	}
}

// QuickConfig is DefaultConfig with every duration — rate windows, averaging windows, `for` — divided by 60
// (minutes become seconds), for end-to-end tests that scrape and evaluate every second (internal/realsw):
// the same expressions, thresholds and proportions between windows and `for`, so such a test proves the
// shipped rules' logic, only sixty times faster. Never ship it: a 5s rate window flaps on real hosts.
func QuickConfig() Config {
	c := DefaultConfig()
	for _, d := range []*string{&c.RateWindow, &c.FullSocketsWindow, &c.MemoryWindow, &c.MemoryNearMaxWindow, &c.PressureEpisodesWindow,
		&c.PressureTimeWindow, &c.ListenQueueWindow, &c.CgroupTCPLimitWindow} {
		*d = sixtieth(*d)
	}
	for _, th := range []*Threshold{&c.DataLost, &c.BacklogDrops, &c.CollapseRatio, &c.ZeroWindows, &c.FullSockets,
		&c.MemoryPressure, &c.MemoryNearMax, &c.PressureEpisodes, &c.PressureTime, &c.AbortOnMemory,
		&c.ListenOverflows, &c.ListenQueueFull, &c.SoftnetDrops, &c.ExporterDown, &c.CollectorFailing,
		&c.ServiceDataLost, &c.PinnedDataLost, &c.CgroupTCPLimit} {
		th.For = sixtieth(th.For)
	}
	return c
}

// sixtieth divides a Prometheus duration by 60, keeping 0 and rounding anything else up to whole seconds.
func sixtieth(d string) string {
	v, err := model.ParseDuration(d)
	if err != nil {
		panic(fmt.Sprintf("rules: DefaultConfig has a bad duration %q: %v", d, err))
	}
	if v == 0 {
		return "0s"
	}
	return model.Duration(max(time.Duration(v)/60, time.Second).Round(time.Second)).String()
}

// Rule is one Prometheus rule, alerting or recording, in the rule-file format.
type Rule struct {
	Record      string            `yaml:"record,omitempty"`
	Alert       string            `yaml:"alert,omitempty"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

// Group is a named list of rules evaluated together.
type Group struct {
	Name  string `yaml:"name"`
	Rules []Rule `yaml:"rules"`
}

// RuleFile is the top level of a Prometheus rule file.
type RuleFile struct {
	Groups []Group `yaml:"groups"`
}

// builder renders expressions with the configured selector and window.
type builder struct{ c Config }

// sel returns metric{selector[,extra]}.
func (b builder) sel(metric string, extra ...string) string {
	var m []string
	if b.c.Selector != "" {
		m = append(m, b.c.Selector)
	}
	m = append(m, extra...)
	if len(m) == 0 {
		return metric
	}
	return metric + "{" + strings.Join(m, ",") + "}"
}

// rate returns rate(metric{selector}[window]).
func (b builder) rate(metric string) string {
	return "rate(" + b.sel(metric) + "[" + b.c.RateWindow + "])"
}

// withNetns applies fn (rate, increase) over window to a host counter plus the same counter summed over the
// other network namespaces the netns collector reports, or plus nothing where it is off. The kernel counts
// memory-pressure episodes in the namespace of the socket that entered or left pressure, while pressure
// itself is host-wide: on a host whose traffic runs in containers, most episodes land in their namespaces.
func (b builder) withNetns(fn, host, netns, window string) string {
	h := fn + "(" + b.sel(host) + "[" + window + "])"
	n := "sum without (netns, netns_inode) (" + fn + "(" + b.sel(netns) + "[" + window + "]))"
	return h + " + (" + n + " or " + h + " * 0)"
}

// bpfDrops is the bpf collector's counter of receive-path drops by drop reason and socket group.
const bpfDrops = "sockbuf_tcp_receive_drops_total"

// lossRate returns the per-second rate of bpfDrops of the given reasons, with extra matchers.
func (b builder) lossRate(reasons []string, extra ...string) string {
	m := append([]string{`reason=~"` + strings.Join(reasons, "|") + `"`}, extra...)
	return "rate(" + b.sel(bpfDrops, m...) + "[" + b.c.RateWindow + "])"
}

// unlessBPFSees keeps a host-wide alert silent on a target while the bpf collector attributes loss of the
// matching drop reasons there (those of them in LossReasons), where the per-service alerts page for it. It
// is an inhibition written into the expression, so that it needs no Alertmanager configuration and promtool
// tests it; when the bpf metrics are absent (collector off, no privileges, kernel without kfree_skb's rx_sk)
// or do not show the loss, the clause removes nothing.
func (b builder) unlessBPFSees(reasons []string, extra ...string) string {
	var r []string
	for _, x := range reasons {
		if slices.Contains(b.c.LossReasons, x) {
			r = append(r, x)
		}
	}
	if len(r) == 0 {
		return ""
	}
	return " unless on (job, instance) (sum by (job, instance) (" + b.lossRate(r, extra...) + ") > 0)"
}

// num formats a threshold the way a person would write it in PromQL.
func num(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// recorded turns a counter name into the metric part of its recording rule: sockbuf_x_total -> sockbuf_x.
func recorded(level, counter, op string) string {
	return level + ":" + strings.TrimSuffix(counter, "_total") + ":" + op
}

// The counters the recording rules turn into per-second rates.
var rateCounters = []string{
	"sockbuf_tcp_prune_called_total",
	"sockbuf_tcp_rcv_pruned_total",
	"sockbuf_tcp_ofo_pruned_total",
	"sockbuf_tcp_rcv_collapsed_total",
	"sockbuf_tcp_rcvq_drop_total",
	"sockbuf_tcp_backlog_drop_total",
	"sockbuf_tcp_ofo_drop_total",
	"sockbuf_tcp_zero_window_drop_total",
	"sockbuf_tcp_in_segments_total",
	"sockbuf_tcp_memory_pressures_total",
	"sockbuf_tcp_memory_pressure_seconds_total",
	"sockbuf_tcp_listen_overflows_total",
	"sockbuf_tcp_listen_drops_total",
	"sockbuf_tcp_want_zero_window_adv_total",
	"sockbuf_tcp_to_zero_window_adv_total",
	"sockbuf_tcp_abort_on_memory_total",
}

// The counters shown per incoming segment, which makes hosts of different traffic comparable.
var perSegmentCounters = []string{
	"sockbuf_tcp_prune_called_total",
	"sockbuf_tcp_rcv_pruned_total",
	"sockbuf_tcp_ofo_pruned_total",
	"sockbuf_tcp_rcv_collapsed_total",
	"sockbuf_tcp_rcvq_drop_total",
	"sockbuf_tcp_to_zero_window_adv_total",
}

// RateRecord names the recording rule holding counter's per-second rate, e.g.
// instance:sockbuf_tcp_prune_called:rate5m.
func (c Config) RateRecord(counter string) string {
	return recorded("instance", counter, "rate"+c.RateWindow)
}

// PerSegmentRecord names the recording rule holding counter's rate divided by the rate of incoming segments.
func (c Config) PerSegmentRecord(counter string) string {
	return "instance:" + strings.TrimSuffix(counter, "_total") + "_per_in_segment:ratio_rate" + c.RateWindow
}

// Recording returns the recording rules: rates and ratios for fleet-wide views, ad-hoc queries and other
// rules. The dashboards do not read them: they compute from the exporter's series with their own job and
// instance variables and $__rate_interval, which a rule evaluated with Selector and RateWindow cannot follow.
func Recording(c Config) RuleFile {
	b := builder{c}
	var rules []Rule
	for _, m := range rateCounters {
		rules = append(rules, Rule{Record: c.RateRecord(m), Expr: b.rate(m)})
	}
	inSegs := c.RateRecord("sockbuf_tcp_in_segments_total")
	for _, m := range perSegmentCounters {
		// An idle host has no incoming segments; dropping it avoids NaN instead of reporting a ratio of nothing.
		rules = append(rules, Rule{
			Record: c.PerSegmentRecord(m),
			Expr:   c.RateRecord(m) + " / (" + inSegs + " > 0)",
		})
	}
	rules = append(rules,
		Rule{
			Record: "instance:sockbuf_softnet_dropped:rate" + c.RateWindow,
			Expr:   "sum without (cpu) (" + b.rate("sockbuf_softnet_dropped_total") + ")",
		},
		Rule{
			// Share of tcp_mem's max in use: 1 means the kernel refuses TCP memory to every socket.
			Record: "instance:sockbuf_tcp_memory_max_utilisation:ratio",
			Expr:   b.sel("sockbuf_tcp_memory_bytes") + " / ignoring (level) " + b.sel("sockbuf_tcp_mem_threshold_bytes", `level="max"`),
		},
		Rule{
			Record: "group:sockbuf_socket_drops:rate" + c.RateWindow,
			Expr:   b.rate("sockbuf_socket_drops_total"),
		},
		Rule{
			// Share of a group's receive-buffer budget that is filled with unread data.
			Record: "group:sockbuf_rmem_alloc_bytes_per_rcvbuf_bytes:ratio",
			Expr:   b.sel("sockbuf_rmem_alloc_bytes") + " / (" + b.sel("sockbuf_rcvbuf_bytes") + " > 0)",
		},
	)
	return RuleFile{Groups: []Group{{Name: "sockbuf.rules", Rules: rules}}}
}

// alert builds one alerting rule with the house annotations.
func (b builder) alert(name, severity, expr string, th Threshold, summary, description string) Rule {
	return Rule{
		Alert:  name,
		Expr:   expr,
		For:    th.For,
		Labels: map[string]string{"severity": severity},
		Annotations: map[string]string{
			"summary":     summary,
			"description": description,
			"runbook_url": b.c.RunbookBase + "#" + Anchor(name),
		},
	}
}

// Anchor is the runbook section anchor for an alert: its name in lower case, the way GitHub renders a
// "## SockbufFoo" heading.
func Anchor(alert string) string { return strings.ToLower(alert) }

// Alerting returns the alert rules, grouped by what they look at.
func Alerting(c Config) RuleFile {
	b := builder{c}
	w := c.RateWindow
	on := "{{ $labels.instance }}"
	group := `{{ $labels.role }} port {{ $labels.port }}{{ with $labels.cgroup }} in cgroup {{ . }}{{ end }}{{ with $labels.process }} ({{ . }}){{ end }}`

	lost := b.rate("sockbuf_tcp_rcvq_drop_total") + " + " + b.rate("sockbuf_tcp_ofo_drop_total") + " + " + b.rate("sockbuf_tcp_ofo_pruned_total")
	host := []Rule{
		b.alert("SockbufTCPReceiveDataDropped", "critical",
			lost+" > "+num(c.DataLost.Value)+b.unlessBPFSees([]string{"proto_mem", "tcp_ofo_queue_prune"}), c.DataLost,
			"TCP data already received is being thrown away on "+on+".",
			"The kernel on "+on+" threw away received data {{ $value | humanize }} times per second over the last "+w+" for lack of receive memory (TcpExt TCPRcvQDrop + TCPOFODrop segments, OfoPruned purges): senders must retransmit them. Usually sockets whose SO_RCVBUF is pinned too small for small segments; sockbuf_socket_drops_total shows which group. With --collector.bpf, SockbufServiceReceiveDataDropped and SockbufPinnedReceiversDropping name the service instead and this alert stays silent."),
		b.alert("SockbufTCPBacklogDrops", "warning",
			b.rate("sockbuf_tcp_backlog_drop_total")+" > "+num(c.BacklogDrops.Value)+b.unlessBPFSees([]string{"socket_backlog"}), c.BacklogDrops,
			"TCP segments are dropped at busy sockets' backlogs on "+on+".",
			"On "+on+" the kernel dropped {{ $value | humanize }} segments per second over the last "+w+" because their socket was held by a system call and its backlog was full (TcpExt TCPBacklogDrop): senders must retransmit them."),
		b.alert("SockbufTCPReceiveQueueCollapsing", "warning",
			b.rate("sockbuf_tcp_rcv_collapsed_total")+" / "+b.rate("sockbuf_tcp_in_segments_total")+" > "+num(c.CollapseRatio.Value), c.CollapseRatio,
			"TCP receive queues are being collapsed on "+on+".",
			"On "+on+" the kernel collapsed {{ $value | humanizePercentage }} as many receive-queue packets as segments arrived over the last "+w+" (TcpExt TCPRcvCollapsed / Tcp InSegs): CPU and latency spent copying the queues of sockets at their buffer limit that could not grow (SO_RCVBUF pinned, or tcp_rmem max reached)."),
		b.alert("SockbufTCPReceiveWindowsClosing", "warning",
			b.rate("sockbuf_tcp_to_zero_window_adv_total")+" / ("+b.rate("sockbuf_tcp_in_segments_total")+" > 0) > "+num(c.ZeroWindows.Value), c.ZeroWindows,
			"TCP receivers keep closing their window on "+on+".",
			"On "+on+" receivers advertised a zero window {{ $value | humanizePercentage }} as often as segments arrived over the last "+w+" (TcpExt TCPToZeroWindowAdv / Tcp InSegs): applications read slower than their peers send, and the senders stall. Nothing is lost; sockbuf_rcvbuf_full_sockets shows which group."),
		b.alert("SockbufTCPMemoryPressure", "warning",
			"avg_over_time("+b.sel("sockbuf_tcp_memory_bytes")+"["+c.MemoryWindow+"]) > ignoring (level) "+b.sel("sockbuf_tcp_mem_threshold_bytes", `level="pressure"`), c.MemoryPressure,
			"TCP memory is above the tcp_mem pressure threshold on "+on+".",
			"TCP sockets on "+on+" used {{ $value | humanize1024 }}B on average over the last "+c.MemoryWindow+", above net.ipv4.tcp_mem's pressure threshold: the kernel is shrinking every socket's buffers."),
		b.alert("SockbufTCPMemoryNearLimit", "critical",
			"avg_over_time("+b.sel("sockbuf_tcp_memory_bytes")+"["+c.MemoryNearMaxWindow+"]) / ignoring (level) "+b.sel("sockbuf_tcp_mem_threshold_bytes", `level="max"`)+" > "+num(c.MemoryNearMax.Value), c.MemoryNearMax,
			"TCP memory is close to the tcp_mem limit on "+on+".",
			"TCP sockets on "+on+" used {{ $value | humanizePercentage }} of net.ipv4.tcp_mem's max threshold on average over the last "+c.MemoryNearMaxWindow+"; at 100% the kernel drops incoming data on every socket."),
		b.alert("SockbufTCPMemoryPressureEpisodes", "warning",
			b.withNetns("increase", "sockbuf_tcp_memory_pressures_total", "sockbuf_netns_tcp_memory_pressures_total", c.PressureEpisodesWindow)+" > "+num(c.PressureEpisodes.Value), c.PressureEpisodes,
			"TCP keeps entering memory pressure on "+on+".",
			"TCP on "+on+" entered memory pressure {{ $value | humanize }} times in the last "+c.PressureEpisodesWindow+" (TcpExt TCPMemoryPressures): the host's TCP memory is sized at the edge of its load."),
		b.alert("SockbufTCPMemoryPressureTime", "warning",
			"clamp_max("+b.withNetns("rate", "sockbuf_tcp_memory_pressure_seconds_total", "sockbuf_netns_tcp_memory_pressure_seconds_total", c.PressureTimeWindow)+", 1) > "+num(c.PressureTime.Value), c.PressureTime,
			"TCP spends a large share of its time in memory pressure on "+on+".",
			"TCP on "+on+" spent {{ $value | humanizePercentage }} of the last "+c.PressureTimeWindow+" in memory pressure (TcpExt TCPMemoryPressuresChrono, counted when an episode ends): for that share of the time the kernel held every socket's buffers down."),
		b.alert("SockbufTCPAbortOnMemory", "critical",
			b.rate("sockbuf_tcp_abort_on_memory_total")+" > "+num(c.AbortOnMemory.Value), c.AbortOnMemory,
			"TCP connections are reset for lack of memory on "+on+".",
			"On "+on+" the kernel reset {{ $value | humanize }} connections per second over the last "+w+" because TCP memory was at tcp_mem's max or there were too many orphans (TcpExt TCPAbortOnMemory)."),
		b.alert("SockbufListenQueueOverflows", "warning",
			b.rate("sockbuf_tcp_listen_overflows_total")+" > "+num(c.ListenOverflows.Value), c.ListenOverflows,
			"Listen queues overflow on "+on+".",
			"On "+on+" {{ $value | humanize }} connections per second over the last "+w+" found their listener's accept queue full (TcpExt ListenOverflows): the application does not accept fast enough or its backlog is too small."),
		b.alert("SockbufSoftnetBacklogDrops", "warning",
			"sum without (cpu) ("+b.rate("sockbuf_softnet_dropped_total")+") > "+num(c.SoftnetDrops.Value), c.SoftnetDrops,
			"Packets are dropped at the per-CPU input backlog on "+on+".",
			"On "+on+" {{ $value | humanize }} packets per second over the last "+w+" were dropped because a CPU's input backlog was longer than net.core.netdev_max_backlog (/proc/net/softnet_stat). The counter is host-wide: an exporter in a pod sees every pod's drops."),
	}

	sockets := []Rule{
		b.alert("SockbufSocketsReceiveBufferFull", "warning",
			"avg_over_time("+b.sel("sockbuf_rcvbuf_full_sockets")+"["+c.FullSocketsWindow+"]) >= "+num(c.FullSockets.Value), c.FullSockets,
			"Sockets keep a full receive buffer on "+on+".",
			"On average {{ $value | humanize }} "+group+" sockets on "+on+" had a full receive buffer (rmem_alloc at least --collector.sockets.full-ratio of rcvbuf) over the last "+c.FullSocketsWindow+": the owning application is not reading, and its peers are stalled by a zero window."),
		b.alert("SockbufListenQueueFull", "warning",
			"avg_over_time("+b.sel("sockbuf_listen_queue_length")+"["+c.ListenQueueWindow+"]) >= "+num(c.ListenQueueFull.Value)+" * avg_over_time("+b.sel("sockbuf_listen_queue_limit")+"["+c.ListenQueueWindow+"]) and "+b.sel("sockbuf_listen_queue_limit")+" > 0", c.ListenQueueFull,
			"A listener's accept queue is at its limit on "+on+".",
			"The listener on port {{ $labels.port }} on "+on+" had {{ $value | humanize }} connections waiting to be accepted on average over the last "+c.ListenQueueWindow+", at its backlog limit: new connections are being dropped."),
	}

	// Per namespace: the same data-loss rule on the counters of the namespaces the netns collector reads;
	// namespaces of the same name (netns_inode apart) are summed.
	netnsLost := b.rate("sockbuf_netns_tcp_rcvq_drop_total") + " + " + b.rate("sockbuf_netns_tcp_ofo_pruned_total")
	netns := []Rule{
		b.alert("SockbufNetnsReceiveDataDropped", "critical",
			"sum without (netns_inode) ("+netnsLost+") > "+num(c.DataLost.Value)+b.unlessBPFSees([]string{"proto_mem", "tcp_ofo_queue_prune"}, `role="unknown"`), c.DataLost,
			"TCP data already received is being thrown away in network namespace {{ $labels.netns }} on "+on+".",
			"In network namespace {{ $labels.netns }} on "+on+" the kernel threw away received data {{ $value | humanize }} times per second over the last "+w+" for lack of receive memory (TcpExt TCPRcvQDrop segments + OfoPruned purges of that namespace: a pod or container whose counters the host's do not include)."),
	}

	// Per service, with the bpf collector: the loss reasons only (no window probes, duplicates or
	// zero-window drops), split by rcvbuf_locked so that each lost packet pages once, with its own fix.
	svc := `{{ $labels.role }} port {{ $labels.port }}{{ with $labels.cgroup }} in cgroup {{ . }}{{ end }}`
	reasons := strings.Join(c.LossReasons, ", ")
	perService := "sum without (reason, rcvbuf_locked) ("
	bpf := []Rule{
		b.alert("SockbufServiceReceiveDataDropped", "critical",
			perService+b.lossRate(c.LossReasons, `rcvbuf_locked!="true"`)+") > "+num(c.ServiceDataLost.Value), c.ServiceDataLost,
			"TCP data already received is being thrown away for "+svc+" on "+on+".",
			"The kernel on "+on+" threw away {{ $value | humanize }} received packets per second of "+svc+" over the last "+w+" for lack of receive-buffer room, on sockets whose buffer autotuning manages (bpf drop reasons "+reasons+"; window probes and duplicates excluded): senders must retransmit them. The application does not read fast enough, tcp_rmem's max is reached, or TCP memory is short."),
		b.alert("SockbufPinnedReceiversDropping", "critical",
			perService+b.lossRate(c.LossReasons, `rcvbuf_locked="true"`)+") > "+num(c.PinnedDataLost.Value), c.PinnedDataLost,
			"Receivers with a pinned SO_RCVBUF are dropping data for "+svc+" on "+on+".",
			"The kernel on "+on+" threw away {{ $value | humanize }} received packets per second of "+svc+" over the last "+w+" for lack of receive-buffer room on sockets whose application set SO_RCVBUF (rcvbuf_locked=\"true\", bpf drop reasons "+reasons+"): the pin switches autotuning off, so the buffer cannot grow. Stop setting SO_RCVBUF."),
	}

	// Per memory cgroup, with the memcg collector (cgroup v1 only: on v2 socket memory counts against
	// memory.max, whose max events also count harmless page-cache reclaim, so no alert is about them).
	peak := b.sel("sockbuf_memcg_tcp_memory_max_usage_bytes")
	limit := b.sel("sockbuf_memcg_tcp_memory_limit_bytes")
	memcg := []Rule{
		b.alert("SockbufCgroupTCPMemoryAtLimit", "warning",
			"("+peak+" / "+limit+" >= 1 and "+peak+" > min_over_time("+peak+"["+c.CgroupTCPLimitWindow+"]))"+
				" or avg_over_time("+b.sel("sockbuf_memcg_tcp_memory_bytes")+"["+c.CgroupTCPLimitWindow+"]) / "+limit+" >= "+num(c.CgroupTCPLimit.Value), c.CgroupTCPLimit,
			"Memory cgroup {{ $labels.cgroup }} is at its TCP memory limit on "+on+".",
			"The TCP socket memory of memory cgroup {{ $labels.cgroup }} on "+on+" reached {{ $value | humanizePercentage }} of its memory.kmem.tcp.limit_in_bytes in the last "+c.CgroupTCPLimitWindow+" (a new peak, or the average): the kernel refuses receive memory to the sockets its tasks created or accepted, and drops what arrives for them (TcpExt TCPRcvQDrop)."),
	}

	exporter := []Rule{
		b.alert("SockbufExporterDown", "warning",
			b.sel("up")+" == 0", c.ExporterDown,
			"sockbuf_exporter on "+on+" cannot be scraped.",
			"Prometheus has failed to scrape {{ $labels.job }} on "+on+" for "+c.ExporterDown.For+" (up = {{ $value }}): receive-buffer drops on that host go unseen."),
		b.alert("SockbufCollectorFailing", "warning",
			b.sel("sockbuf_scrape_collector_success")+" == 0", c.CollectorFailing,
			"The {{ $labels.collector }} collector of sockbuf_exporter fails on "+on+".",
			"The {{ $labels.collector }} collector on "+on+" has failed on every scrape for "+c.CollectorFailing.For+" (success = {{ $value }}); its metrics are missing. The exporter's log says why."),
	}

	return RuleFile{Groups: []Group{
		{Name: "sockbuf.host", Rules: host},
		{Name: "sockbuf.sockets", Rules: sockets},
		{Name: "sockbuf.netns", Rules: netns},
		{Name: "sockbuf.bpf", Rules: bpf},
		{Name: "sockbuf.memcg", Rules: memcg},
		{Name: "sockbuf.exporter", Rules: exporter},
	}}
}

// AlertNames lists the alerts of c, sorted.
func AlertNames(c Config) []string {
	var names []string
	for _, g := range Alerting(c).Groups {
		for _, r := range g.Rules {
			names = append(names, r.Alert)
		}
	}
	sort.Strings(names)
	return names
}

// header is written above the rendered YAML so nobody edits it by hand.
const header = "# Generated by deploy/rules (go run ./deploy/rules/gen) from DefaultConfig; DO NOT EDIT.\n" +
	"# Change the Config and run: go generate ./deploy/rules\n"

// Render returns a rule file as YAML.
func Render(f RuleFile) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString(header)
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(f); err != nil {
		return nil, fmt.Errorf("encoding rules: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encoding rules: %w", err)
	}
	return buf.Bytes(), nil
}

// Files returns the rendered rule files by name, as committed in this directory.
func Files(c Config) (map[string][]byte, error) {
	out := map[string][]byte{}
	for name, f := range map[string]RuleFile{"alerts.yml": Alerting(c), "recording.yml": Recording(c)} {
		b, err := Render(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out[name] = b
	}
	return out, nil
}

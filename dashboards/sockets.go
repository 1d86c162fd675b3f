package dashboards

//lint:file-ignore SA1019 Grafana imports and provisions the classic (v1) dashboard JSON on every supported version; dashboardv2 needs Grafana 12 with a feature flag.

import (
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"

	"github.com/sockbuf/sockbuf_exporter/deploy/rules"
)

// groupLegend names a socket group the way the alerts do.
const groupLegend = "{{instance}} {{role}} :{{port}} {{cgroup}} {{process}}"

// Sockets is the per-socket dashboard: which groups of sockets (role, port, cgroup, process) hold full
// receive buffers, how full, how big their buffers are, and the listeners' accept queues.
func Sockets() *dashboard.DashboardBuilder {
	const mib = 1 << 20
	rc := rules.DefaultConfig()
	full := m("sockbuf_rcvbuf_full_sockets")
	recvq := m("sockbuf_recv_queue_bytes")
	top := func(n, expr string) string { return "topk(" + n + ", " + expr + ")" }
	return bpfRows(base("sockbuf-sockets", "sockbuf / Sockets",
		"Which groups of sockets lost data and why (bpf collector), then the per-socket receive-buffer state from the sockets collector, aggregated by role, port, cgroup and process. Generated from dashboards/*.go; do not edit in Grafana.")).
		WithRow(row("Who is not reading")).
		WithPanel(ranked("Groups ranked by full sockets",
			"Red: the group has sockets whose receive buffer is full (rmem_alloc ≥ full-ratio × rcvbuf): the owning application is not reading fast enough.",
			"short", redAbove(1), 12,
			q(top("20", full), ""),
			q(m("sockbuf_sockets")+" and "+top("20", full), ""))).
		WithPanel(ranked("Groups ranked by Recv-Q",
			"Red: more than 1 MiB of received data waits unread in the group's sockets (Recv-Q sum, largest socket, and the buffer budget).",
			"bytes", redAbove(mib), 12,
			q(top("20", recvq), ""),
			q(m("sockbuf_recv_queue_max_bytes")+" and "+top("20", recvq), ""),
			q(m("sockbuf_rcvbuf_bytes")+" and "+top("20", recvq), ""))).
		WithPanel(graph("Full sockets by group",
			"Red: a group has at least one socket with a full receive buffer (SockbufSocketsReceiveBufferFull fires when the average over 15m reaches 1). The application does not read: raising tcp_rmem does nothing for it; make it read (or shed load).",
			"short", redAbove(rc.FullSockets.Value), 12,
			q(top("10", full), groupLegend)).
			Links(runbooks("SockbufSocketsReceiveBufferFull", "SockbufTCPReceiveWindowsClosing"))).
		WithPanel(graph("Receive-buffer fill by group",
			"Red: a group's unread data fills more than 90% of its sockets' receive buffers in total; pruning follows.",
			"percentunit", redAbove(0.9), 12,
			q(top("10", m("sockbuf_rmem_alloc_bytes")+" / ("+m("sockbuf_rcvbuf_bytes")+" > 0)"), groupLegend))).
		WithRow(row("Distributions")).
		WithPanel(heat("Receive-buffer fill ratio",
			"Red cells in the top rows: many sockets hold nearly a full buffer of unread data (rmem_alloc / rcvbuf of every non-listening socket).",
			"percentunit", neverRed(), 12,
			q("sum by (le) ("+m("sockbuf_rmem_fill_ratio_bucket")+")", "{{le}}"))).
		WithPanel(buckets("Receive-buffer sizes",
			"Never red: where established sockets' rcvbuf sits — a pile at one size (often 2 MiB from SO_RCVBUF=1 MiB) means pinned buffers, spread toward tcp_rmem max means autotuning works.",
			"short", neverRed(), 12,
			q("sum by (le) ("+m("sockbuf_rcvbuf_size_bytes_bucket")+")", "{{le}}"))).
		WithPanel(graph("Socket drops by group",
			"Never red: sk_drops of the group's sockets. It counts data dropped for lack of room, but also the window probes a full socket discards by design and duplicate retransmissions, so it rises under healthy flow control. Read it only when the host dashboard's data-lost panel is red, to find the group; with --collector.bpf the panels at the top tell loss from probes by drop reason.",
			"pps", neverRed(), 24,
			q(top("10", rate("sockbuf_socket_drops_total")), groupLegend))).
		WithRow(row("Listeners")).
		WithPanel(acceptQueues()).
		WithPanel(ranked("Accept-queue fill",
			"Red: a listener's accept queue is at 90% or more of its backlog limit; at 100% new connections are dropped (SockbufListenQueueFull).",
			"percentunit", redAbove(rc.ListenQueueFull.Value), 12,
			q(m("sockbuf_listen_queue_length")+" / ("+m("sockbuf_listen_queue_limit")+" > 0)", ""))).
		WithRow(row("Attribution")).
		WithPanel(ranked("By cgroup",
			"Red: the cgroup (systemd unit or container) owns sockets with full receive buffers, or more than 1 MiB unread.",
			"short", redAbove(1), 12,
			q("sum by (instance, cgroup) ("+full+")", ""),
			q("sum by (instance, cgroup) ("+recvq+")", "").in("bytes", redAbove(mib)),
			q("sum by (instance, cgroup) ("+m("sockbuf_sockets")+")", "").in("short", neverRed()))).
		WithPanel(ranked("By process",
			"Red: the process owns sockets with full receive buffers, or more than 1 MiB unread (needs --collector.sockets.process-attribution).",
			"short", redAbove(1), 12,
			q("sum by (instance, process) ("+full+")", ""),
			q("sum by (instance, process) ("+recvq+")", "").in("bytes", redAbove(mib)),
			q("sum by (instance, process) ("+m("sockbuf_sockets")+")", "").in("short", neverRed()))).
		WithPanel(netnsFull()).
		WithRow(row("States and send queues")).
		WithPanel(graph("TCP sockets by state",
			"Never red: sockets per TCP state; a growing CLOSE_WAIT means an application stops reading and closing its sockets.",
			"short", neverRed(), 8,
			q(m("sockbuf_tcp_sockets_by_state"), "{{instance}} {{state}}"))).
		WithPanel(graph("Send queue by group",
			"Red: more than 4 MiB unsent in a group — the peer's receive buffer is the one filling up.",
			"bytes", redAbove(4*mib), 8,
			q(top("10", m("sockbuf_send_queue_bytes")), groupLegend))).
		WithPanel(graph("Sockets by group",
			"Never red: how many sockets each group holds, for scale when reading the other panels.",
			"short", neverRed(), 8,
			q(top("10", m("sockbuf_sockets")), groupLegend)))
}

// bpfRows puts the bpf collector's per-group drop counts first: harm first, by the kernel's own drop reason,
// split into data lost for lack of room (the reasons the per-service alerts count, rules.Config.LossReasons)
// and the drops that are not loss (window probes, duplicates), plus pinned receivers and buffer growth.
// Without --collector.bpf these panels are empty and the host dashboard's data-lost panel with "Socket drops
// by group" below are what is left.
func bpfRows(d *dashboard.DashboardBuilder) *dashboard.DashboardBuilder {
	rc := rules.DefaultConfig()
	loss := `reason=~"` + strings.Join(rc.LossReasons, "|") + `"`
	notLoss := `reason!~"` + strings.Join(rc.LossReasons, "|") + `"`
	const drops = "sockbuf_tcp_receive_drops_total"
	byGroup := func(by string, extra ...string) string {
		return "topk(10, sum by (instance, role, port, cgroup" + by + ") (rate(" + m(drops, extra...) + "[$__rate_interval])))"
	}
	const legend = "{{instance}} {{role}} :{{port}} {{cgroup}}"
	return d.WithRow(row("Who lost data, and why (bpf collector)")).
		WithPanel(graph("Data lost by group and reason",
			"Red: the kernel threw away received data of this group for lack of room — proto_mem (over rcvbuf after pruning, or refused by tcp_mem/memcg), tcp_ofo_queue_prune, socket_backlog — counted at each drop by its drop reason (SockbufServiceReceiveDataDropped, SockbufPinnedReceiversDropping). Window probes and duplicates are not here. Needs --collector.bpf; without it use the host dashboard's data-lost panel.",
			"pps", redAbove(alertLine(rc.ServiceDataLost.Value)), 12,
			q(byGroup(", reason", loss), legend+" {{reason}}")).
			Links(runbooks("SockbufServiceReceiveDataDropped", "SockbufPinnedReceiversDropping"))).
		WithPanel(graph("Pinned receivers dropping",
			"Red: sockets whose application set SO_RCVBUF (rcvbuf_locked=\"true\": autotuning off, the buffer cannot grow) lose data for lack of room (SockbufPinnedReceiversDropping). Fix: stop setting SO_RCVBUF; the line falls to 0 and the group's buffers start to grow. Needs --collector.bpf.",
			"pps", redAbove(alertLine(rc.PinnedDataLost.Value)), 12,
			q(byGroup("", loss, `rcvbuf_locked="true"`), legend)).
			Links(runbooks("SockbufPinnedReceiversDropping"))).
		WithPanel(graph("Drops that are not loss, by group and reason",
			"Never red: drops of the group's sockets for every other reason — tcp_old_sequence (zero-window probes a closed window discards by design), tcp_old_data and tcp_ofomerge (duplicates of data already received), tcp_zerowindow (data sent into a closed window: a slow reader, see the zero-window panels). Flow control and retransmissions, not lost data. Needs --collector.bpf.",
			"pps", neverRed(), 12,
			q(byGroup(", reason", notLoss), legend+" {{reason}}"))).
		WithPanel(graph("Receive-buffer growth by group",
			"Never red: how often autotuning (tcp_rcv_space_adjust) wanted a larger receive buffer for the group's sockets. Rising with rcvbuf_locked=\"false\": buffers grow with the reader, as they should. With rcvbuf_locked=\"true\" the growth was wanted and refused: the pin holds the buffer down. Needs --collector.bpf and Linux 6.17+.",
			"ops", neverRed(), 12,
			q("topk(10, sum by (instance, role, port, cgroup, rcvbuf_locked) (rate("+m("sockbuf_tcp_rcvbuf_grow_total")+"[$__rate_interval])))", legend+" locked={{rcvbuf_locked}}")))
}

// netnsFull ranks the other network namespaces (pods, containers) by their full sockets, with their unread
// bytes and sockets alongside. The namespaces' sockets are not in the group panels above, which see only the
// exporter's own namespace. Namespaces of one name (a recreated sandbox keeps its name, not its inode) are
// summed, as the netns alerts do.
func netnsFull() *table.PanelBuilder {
	const mib = 1 << 20
	byNetns := func(metric string) string { return "sum by (instance, netns) (" + m(metric) + ")" }
	top := "topk(10, " + byNetns("sockbuf_netns_rcvbuf_full_sockets") + ")"
	return ranked("Full sockets by network namespace",
		"Red: a pod, container or `ip netns` namespace has sockets whose receive buffer is full, or more than 1 MiB unread: its application reads too slowly; see the runbook of SockbufSocketsReceiveBufferFull (docs/runbooks.md) and look from inside it (kubectl exec, nsenter -n -t PID ss -tm). The 10 namespaces with most full sockets, with their Recv-Q and sockets; the exporter's own namespace is in the panels above. Needs --collector.netns.sockets.",
		"short", redAbove(1), 24,
		q(top, ""),
		q(byNetns("sockbuf_netns_recv_queue_bytes")+" and "+top, "").in("bytes", redAbove(mib)),
		q(byNetns("sockbuf_netns_sockets")+" and "+top, "").in("short", neverRed()))
}

// acceptQueues draws each listener's accept queue with its limit as a red dashed line.
func acceptQueues() *timeseries.PanelBuilder {
	return graph("Accept queues against their limits",
		"Red: a listener's queued connections (solid) reach its backlog limit (red dashed); connections beyond it are dropped.",
		"short", neverRed(), 12,
		q(m("sockbuf_listen_queue_length"), "{{instance}} :{{port}} queued"),
		q(m("sockbuf_listen_queue_limit"), "{{instance}} :{{port}} limit")).
		OverrideByRegexp(".* limit$", []dashboard.DynamicConfigValue{
			{Id: "color", Value: map[string]any{"mode": "fixed", "fixedColor": "red"}},
			{Id: "custom.lineStyle", Value: map[string]any{"fill": "dash", "dash": []int{10, 10}}},
			{Id: "custom.fillOpacity", Value: 0},
		})
}

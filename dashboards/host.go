package dashboards

//lint:file-ignore SA1019 Grafana imports and provisions the classic (v1) dashboard JSON on every supported version; dashboardv2 needs Grafana 12 with a feature flag.

import (
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"

	"github.com/sockbuf/sockbuf_exporter/deploy/rules"
)

// rate is the dashboards' rate of a counter over Grafana's rate interval (at least four scrapes).
func rate(metric string) string {
	return "rate(" + metric + "{" + sel + "}[$__rate_interval])"
}

// withNetns is the rate of a host counter plus the same counter's rate summed over the other network
// namespaces, as the memory-pressure alerts compute it (deploy/rules withNetns); without the netns
// collector the namespaces' part is zero, so the panel still shows the host's.
func withNetns(host, netns string) string {
	h := rate(host)
	return h + " + (sum without (netns, netns_inode) (" + rate(netns) + ") or " + h + " * 0)"
}

func m(metric string, extra ...string) string {
	s := metric + "{" + sel
	for _, e := range extra {
		s += "," + e
	}
	return s + "}"
}

// alertLine is where a panel turns red for an alert that fires on any rise (threshold 0): just above 0, so
// that a flat zero stays green.
func alertLine(threshold float64) float64 { return max(threshold, 0.001) }

// Host is the host dashboard: where on this host the kernel drops or prunes TCP data for lack of
// receive-buffer room, and the settings in force.
func Host() *dashboard.DashboardBuilder {
	rc := rules.DefaultConfig()
	// Computed from the raw counters, not read from the recording rules: those are evaluated with the rules'
	// job selector and a fixed window, so they would be empty for other job names and ignore the zoom.
	// An idle host has no incoming segments; dropping it avoids NaN instead of drawing a ratio of nothing.
	perSeg := func(counter, legend string) query {
		return q(rate(counter)+" / ("+rate("sockbuf_tcp_in_segments_total")+" > 0)", "{{instance}} "+legend)
	}
	return base("sockbuf-host", "sockbuf / Host",
		"Harm first: data lost, CPU spent collapsing, readers stalled; then TCP memory against tcp_mem, softnet and listen-queue drops, and the buffer settings in force. Generated from dashboards/*.go; do not edit in Grafana.").
		WithRow(row("Harm: data lost, CPU spent, readers stalled")).
		WithPanel(graph("Data lost: received, then thrown away",
			"Red: the kernel threw away data it had received, for lack of receive memory (SockbufTCPReceiveDataDropped) or at a busy socket's backlog (SockbufTCPBacklogDrops); senders retransmit it. Usually a pinned SO_RCVBUF too small for small segments: see the runbook. Falls to 0 after the fix.",
			"pps", redAbove(alertLine(rc.DataLost.Value)), 8,
			q(rate("sockbuf_tcp_rcvq_drop_total"), "{{instance}} TCPRcvQDrop (in order)"),
			q(rate("sockbuf_tcp_ofo_drop_total"), "{{instance}} TCPOFODrop (out of order)"),
			q(rate("sockbuf_tcp_ofo_pruned_total"), "{{instance}} OfoPruned (out-of-order queue purged)"),
			q(rate("sockbuf_tcp_backlog_drop_total"), "{{instance}} TCPBacklogDrop")).
			Links(runbooks("SockbufTCPReceiveDataDropped", "SockbufTCPBacklogDrops"))).
		WithPanel(graph("Collapse cost: packets copied per incoming segment",
			"Red: the kernel copies receive queues into compact buffers for more than 1% of incoming segments (SockbufTCPReceiveQueueCollapsing): CPU and latency spent on sockets at a buffer limit they cannot grow past. Falls to 0 when the pinned SO_RCVBUF is removed.",
			"percentunit", redAbove(rc.CollapseRatio.Value), 8,
			perSeg("sockbuf_tcp_rcv_collapsed_total", "TCPRcvCollapsed per segment")).
			Links(runbooks("SockbufTCPReceiveQueueCollapsing"))).
		WithPanel(graph("Readers stalled: zero-window advertisements per incoming segment",
			"Red: receivers close their window more often than once per 100 incoming segments (SockbufTCPReceiveWindowsClosing): applications read slower than their peers send and the senders wait. Nothing is lost; the sockets dashboard shows which group is full. TCPZeroWindowDrop counts data a peer sent into a closed window (some stacks' 1-byte window probes).",
			"percentunit", redAbove(rc.ZeroWindows.Value), 8,
			perSeg("sockbuf_tcp_to_zero_window_adv_total", "TCPToZeroWindowAdv (window closed)"),
			perSeg("sockbuf_tcp_want_zero_window_adv_total", "TCPWantZeroWindowAdv (wanted to close)"),
			perSeg("sockbuf_tcp_from_zero_window_adv_total", "TCPFromZeroWindowAdv (reopened)"),
			perSeg("sockbuf_tcp_zero_window_drop_total", "TCPZeroWindowDrop")).
			Links(runbooks("SockbufTCPReceiveWindowsClosing", "SockbufSocketsReceiveBufferFull"))).
		WithPanel(graph("The kernel had to make room (PruneCalled), beside its outcome",
			"Never red: PruneCalled counts every time a receive queue reached its buffer; for a socket without SO_RCVBUF the kernel then just grows the buffer (tcp_clamp_window) and nothing is lost. Read it with the lines beside it: RcvPruned (pruning failed, a segment was dropped) and TCPRcvCollapsed (queues copied). PruneCalled alone, even rising, is not a problem.",
			"ops", neverRed(), 24,
			q(rate("sockbuf_tcp_prune_called_total"), "{{instance}} PruneCalled (had to make room)"),
			q(rate("sockbuf_tcp_rcv_pruned_total"), "{{instance}} RcvPruned (could not, segment dropped)"),
			q(rate("sockbuf_tcp_rcv_collapsed_total"), "{{instance}} TCPRcvCollapsed (packets copied)"))).
		WithPanel(graph("Data lost by network namespace",
			"Red: a pod, container or `ip netns` namespace throws away received data (SockbufNetnsReceiveDataDropped); look at its sockets from inside it (kubectl exec, nsenter -n -t PID ss -tm). The 10 namespaces losing most, with their PruneCalled for context; the host's own namespace is in the panels above. Needs --collector.netns.",
			"ops", redAbove(alertLine(rc.DataLost.Value)), 24,
			q("topk(10, sum by (instance, netns) ("+rate("sockbuf_netns_tcp_rcvq_drop_total")+" + "+rate("sockbuf_netns_tcp_ofo_pruned_total")+"))", "{{instance}} {{netns}} data lost (TCPRcvQDrop + OfoPruned)"),
			q("topk(10, sum by (instance, netns) ("+rate("sockbuf_netns_tcp_prune_called_total")+"))", "{{instance}} {{netns}} PruneCalled (context)")).
			Links(runbooks("SockbufNetnsReceiveDataDropped"))).
		WithRow(row("TCP memory")).
		WithPanel(memoryGraph()).
		WithPanel(graph("Time in memory pressure",
			"Red: TCP spent more than 5% of the time in memory pressure, holding every socket's buffers down (SockbufTCPMemoryPressureTime when it lasts; an episode is counted when it ends). Pressure is host-wide but counted in the namespace of the socket that entered or left it, so the other namespaces' time (--collector.netns) is added to the host's.",
			"percentunit", redAbove(rc.PressureTime.Value), 8,
			q(withNetns("sockbuf_tcp_memory_pressure_seconds_total", "sockbuf_netns_tcp_memory_pressure_seconds_total"), "{{instance}} share of time in pressure"))).
		WithPanel(graph("Memory pressure episodes and aborts",
			"Red: TCP keeps entering memory pressure, or aborts connections because tcp_mem's max is reached (SockbufTCPMemoryPressureEpisodes).",
			"ops", redAbove(alertLine(rc.AbortOnMemory.Value)), 8,
			q(rate("sockbuf_tcp_memory_pressures_total"), "{{instance}} entered pressure"),
			q(rate("sockbuf_tcp_abort_on_memory_total"), "{{instance}} connections aborted for lack of memory"))).
		WithRow(row("Backlogs and listeners")).
		WithPanel(graph("Softnet drops per CPU",
			"Red: packets dropped before TCP saw them because a CPU's input backlog exceeded net.core.netdev_max_backlog (SockbufSoftnetBacklogDrops). Host-wide: an exporter in a pod sees every pod's drops.",
			"pps", redAbove(alertLine(rc.SoftnetDrops.Value)), 8,
			q(rate("sockbuf_softnet_dropped_total"), "{{instance}} cpu {{cpu}}"))).
		WithPanel(graph("Softnet squeezes per CPU",
			"Red: a CPU ran out of its softirq budget more than 10×/s with packets still waiting — the next step toward softnet drops.",
			"ops", redAbove(10), 8,
			q(rate("sockbuf_softnet_times_squeezed_total"), "{{instance}} cpu {{cpu}}"))).
		WithPanel(graph("Listen-queue overflows",
			"Red: connections found their listener's accept queue full and were dropped (SockbufListenQueueOverflows); see the sockets dashboard for which port.",
			"ops", redAbove(alertLine(rc.ListenOverflows.Value)), 8,
			q(rate("sockbuf_tcp_listen_overflows_total"), "{{instance}} ListenOverflows"),
			q(rate("sockbuf_tcp_listen_drops_total"), "{{instance}} ListenDrops"))).
		WithRow(row("Settings in force")).
		WithPanel(stats("Buffer sysctls",
			"Never red: the limits in force. Autotuned sockets grow up to tcp_rmem max whatever rmem_max is; SO_RCVBUF requests are capped at rmem_max, then doubled.",
			"bytes", neverRed(), 12,
			q(m("sockbuf_net_core_rmem_max_bytes"), "{{instance}} net.core.rmem_max"),
			q(m("sockbuf_net_core_rmem_default_bytes"), "{{instance}} net.core.rmem_default"),
			q(m("sockbuf_tcp_rmem_bytes"), "{{instance}} tcp_rmem {{setting}}"),
			q(m("sockbuf_net_core_wmem_max_bytes"), "{{instance}} net.core.wmem_max"),
			q(m("sockbuf_net_core_wmem_default_bytes"), "{{instance}} net.core.wmem_default"),
			q(m("sockbuf_tcp_wmem_bytes"), "{{instance}} tcp_wmem {{setting}}"))).
		WithPanel(stats("Receive-window autotuning",
			"Red: receive-buffer autotuning (tcp_moderate_rcvbuf) or window scaling is switched off, which caps every connection's window.",
			"bool_on_off", redBelow(1), 6,
			q(m("sockbuf_tcp_moderate_rcvbuf"), "{{instance}} tcp_moderate_rcvbuf"),
			q(m("sockbuf_tcp_window_scaling"), "{{instance}} tcp_window_scaling"))).
		WithPanel(stats("Queue limits",
			"Never red: net.core.netdev_max_backlog (per-CPU input backlog), net.core.somaxconn (cap on listen backlogs) and tcp_adv_win_scale (share of the buffer left for overhead before Linux 6.6; ignored since, each socket measures it).",
			"none", neverRed(), 6,
			q(m("sockbuf_net_core_netdev_max_backlog"), "{{instance}} netdev_max_backlog"),
			q(m("sockbuf_net_core_somaxconn"), "{{instance}} somaxconn"),
			q(m("sockbuf_tcp_adv_win_scale"), "{{instance}} tcp_adv_win_scale"))).
		WithRow(row("Exporter")).
		WithPanel(stats("Target and collectors up",
			"Red: Prometheus cannot scrape the exporter, or a collector failed on the last scrape (its metrics are missing; the exporter's log says why).",
			"none", redBelow(1), 12,
			q(m("up"), "{{instance}} up"),
			q(m("sockbuf_scrape_collector_success"), "{{instance}} {{collector}}"))).
		WithPanel(graph("Collector duration",
			"Red: a collector takes more than a second per scrape, eating into the scrape timeout.",
			"s", redAbove(1), 12,
			q(m("sockbuf_scrape_collector_duration_seconds"), "{{instance}} {{collector}}")))
}

// memoryGraph draws TCP memory in use with tcp_mem's three thresholds as dashed lines.
func memoryGraph() *timeseries.PanelBuilder {
	line := func(color string) []dashboard.DynamicConfigValue {
		return []dashboard.DynamicConfigValue{
			{Id: "color", Value: map[string]any{"mode": "fixed", "fixedColor": color}},
			{Id: "custom.lineStyle", Value: map[string]any{"fill": "dash", "dash": []int{10, 10}}},
			{Id: "custom.fillOpacity", Value: 0},
		}
	}
	return graph("TCP memory against tcp_mem",
		"Red: memory in use crosses the red tcp_mem max line, where the kernel refuses memory to every TCP socket; above the orange pressure line it shrinks every socket's buffers.",
		"bytes", neverRed(), 8,
		q(m("sockbuf_tcp_memory_bytes"), "{{instance}} in use"),
		q(m("sockbuf_tcp_mem_threshold_bytes"), "{{instance}} tcp_mem {{level}}")).
		OverrideByRegexp(".*tcp_mem min$", line("yellow")).
		OverrideByRegexp(".*tcp_mem pressure$", line("orange")).
		OverrideByRegexp(".*tcp_mem max$", line("red"))
}

package collector

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockbuf/sockbuf_exporter/procnet"
)

func init() {
	registerCollector("netstat", "TCP receive-path counters from /proc/net/netstat (TcpExt) and /proc/net/snmp (Tcp)", true,
		func(cfg Config, _ *slog.Logger) (Collector, error) { return newNetstatCollector(cfg), nil })
}

// netstatField is one kernel counter exported by the netstat collector.
type netstatField struct {
	counter procnet.Counter
	scale   float64 // 1, or 0.001 for a counter the kernel keeps in milliseconds
	spec    MetricSpec
}

// counterField declares the metric of a kernel counter. help is one sentence saying what the kernel counts;
// sentence is what `netstat -s` prints for the field (net-tools prints "Name: N" for the fields it has no
// sentence for), so a user can grep for either; notes go to docs/metrics.md only.
func counterField(c procnet.Counter, metric, help, sentence, notes string) netstatField {
	return netstatField{counter: c, scale: 1, spec: spec("netstat", MetricSpec{
		Name:   metric,
		Type:   Counter,
		Help:   fmt.Sprintf("%s (%s %s; netstat -s: %q).", strings.TrimSuffix(help, "."), c.Proto(), c.Name(), sentence),
		Notes:  notes,
		Source: fmt.Sprintf("/proc/net/%s %s %s", c.File(), c.Proto(), c.Name()),
	})}
}

// netstatFields lists every counter the collector exports. The receive-path TcpExt counters come first, in
// the order a packet meets them. What each says is what net/ipv4/tcp_input.c does when it counts it.
var netstatFields = []netstatField{
	counterField(procnet.PruneCalled, "tcp_prune_called_total",
		"Times a socket's receive memory went over its rcvbuf and the kernel had to make room, often only by growing the buffer",
		"packets pruned from receive queue because of socket buffer overrun",
		"Counted on entry to tcp_prune_queue(), before anything is pruned. For a socket whose SO_RCVBUF the application did "+
			"not set, tcp_clamp_window() then raises sk_rcvbuf toward tcp_rmem[2] and, if that is enough, nothing is collapsed "+
			"or dropped: netstat's sentence is wrong for that case. Harm shows in TCPRcvCollapsed (CPU), RcvPruned, "+
			"TCPRcvQDrop and OfoPruned (data lost); never alert on PruneCalled alone."),
	counterField(procnet.RcvPruned, "tcp_rcv_pruned_total",
		"Times collapsing and purging the out-of-order queue still left a socket over its rcvbuf, so arriving data was dropped",
		"packets pruned from receive queue",
		"Counted once per tcp_prune_queue() call that failed, not per packet; the segments dropped are counted in "+
			"TCPRcvQDrop or TCPOFODrop. The sender must retransmit them."),
	counterField(procnet.OfoPruned, "tcp_ofo_pruned_total",
		"Times out-of-order data already received was thrown away to make room",
		"packets dropped from out-of-order queue because of socket buffer overrun",
		"Counted once per tcp_prune_ofo_queue() call that freed something, not per packet; that data must be resent."),
	counterField(procnet.TCPRcvCollapsed, "tcp_rcv_collapsed_total",
		"Buffers the kernel copied into compact ones to fit a receive queue into its rcvbuf, costing CPU and latency",
		"packets collapsed in receive queue due to low socket buffer",
		"Counted per buffer by tcp_collapse(); nothing is lost, but the copy runs in softirq. Compare with "+
			"sockbuf_tcp_in_segments_total to judge the share of traffic it touches."),
	counterField(procnet.TCPRcvQDrop, "tcp_rcvq_drop_total",
		"In-order segments dropped because receive memory could not be charged even after pruning",
		"TCPRcvQDrop: N",
		"tcp_data_queue() when tcp_try_rmem_schedule() fails (drop reason PROTO_MEM): data lost, resent by the peer."),
	counterField(procnet.TCPBacklogDrop, "tcp_backlog_drop_total",
		"Segments dropped because the socket was held by the application and its backlog was full",
		"TCPBacklogDrop: N",
		"tcp_add_backlog() drops when backlog plus receive queue exceed about twice rcvbuf: small pinned buffers make it "+
			"more likely. Data lost."),
	counterField(procnet.TCPOFOQueue, "tcp_ofo_queue_total",
		"Segments put in the out-of-order queue",
		"TCPOFOQueue: N", ""),
	counterField(procnet.TCPOFODrop, "tcp_ofo_drop_total",
		"Out-of-order segments dropped because receive memory could not be charged",
		"TCPOFODrop: N",
		"tcp_data_queue_ofo() when tcp_try_rmem_schedule() fails (drop reason PROTO_MEM): data lost."),
	counterField(procnet.TCPOFOMerge, "tcp_ofo_merge_total",
		"Out-of-order segments whose data was already queued",
		"TCPOFOMerge: N", "Duplicates, not overflow."),
	counterField(procnet.TCPZeroWindowDrop, "tcp_zero_window_drop_total",
		"Segments with new data dropped because the receive window was zero",
		"TCPZeroWindowDrop: N",
		"The reader did not keep up and the sender sent into a closed window anyway; zero-window probes are counted "+
			"elsewhere (they carry old sequence numbers)."),
	counterField(procnet.TCPRcvCoalesce, "tcp_rcv_coalesce_total",
		"Segments merged into the previous receive buffer, which is normal and saves memory",
		"TCPRcvCoalesce: N", ""),
	counterField(procnet.TCPWantZeroWindowAdv, "tcp_want_zero_window_adv_total",
		"Times a receiver wanted to advertise a zero window but could not shrink the window already offered",
		"TCPWantZeroWindowAdv: N",
		"tcp_select_window(): the application is not reading fast enough; the sign of a slow reader, which pruning "+
			"counters do not show."),
	counterField(procnet.TCPToZeroWindowAdv, "tcp_to_zero_window_adv_total",
		"Times the advertised receive window dropped to zero because the application did not read",
		"TCPToZeroWindowAdv: N",
		"tcp_select_window(): flow control stalled the sender. More buffer does not help a reader that does not read."),
	counterField(procnet.TCPFromZeroWindowAdv, "tcp_from_zero_window_adv_total",
		"Times the advertised receive window reopened from zero",
		"TCPFromZeroWindowAdv: N", ""),
	counterField(procnet.TCPWinProbe, "tcp_win_probe_total",
		"Zero-window probes this host sent to peers that advertised a zero window",
		"TCPWinProbe: N",
		"Sender side of a slow reader: the receiving host discards the probes by design, and they show in its sk_drops "+
			"(sockbuf_socket_drops_total)."),
	counterField(procnet.TCPDSACKOldSent, "tcp_dsack_old_sent_total",
		"Duplicate segments of data already received, answered with a D-SACK",
		"TCPDSACKOldSent: N",
		"The sender retransmitted what had arrived (tcp_dsack_set in tcp_data_queue's out-of-window path): such "+
			"duplicates are discarded and show in sk_drops (sockbuf_socket_drops_total) without any loss."),
	counterField(procnet.TCPMemoryPressures, "tcp_memory_pressures_total",
		"Times TCP memory crossed the tcp_mem pressure threshold",
		"TCP ran low on memory N times", "Counted in the namespace of the socket that crossed it, see the netns collector."),
	{
		counter: procnet.TCPMemoryPressuresChrono, scale: 0.001,
		spec: spec("netstat", MetricSpec{
			Name: "tcp_memory_pressure_seconds_total", Type: Counter, Unit: "seconds",
			Help:   `Time TCP spent in memory pressure (TcpExt TCPMemoryPressuresChrono, kept in ms; netstat -s: "TCPMemoryPressuresChrono: N").`,
			Source: "/proc/net/netstat TcpExt TCPMemoryPressuresChrono (ms / 1000)",
		}),
	},
	counterField(procnet.TCPAbortOnMemory, "tcp_abort_on_memory_total",
		"Connections reset because there were too many orphans or TCP memory was at tcp_mem max",
		"N connections aborted due to memory pressure", ""),
	counterField(procnet.ListenOverflows, "tcp_listen_overflows_total",
		"Handshakes completed into a full accept queue",
		"N times the listen queue of a socket overflowed",
		"The application does not accept() fast enough or its listen() backlog (capped by somaxconn) is too small."),
	counterField(procnet.ListenDrops, "tcp_listen_drops_total",
		"SYNs and handshakes dropped at listeners, ListenOverflows included",
		"N SYNs to LISTEN sockets dropped", ""),
	counterField(procnet.InSegs, "tcp_in_segments_total",
		"Segments received, the denominator for the drop counters",
		"N segments received", ""),
	counterField(procnet.RetransSegs, "tcp_retransmitted_segments_total",
		"Segments retransmitted by this host",
		"N segments retransmitted", ""),
	counterField(procnet.InErrs, "tcp_in_errors_total",
		"Segments received in error",
		"N bad segments received", ""),
	counterField(procnet.InCsumErrors, "tcp_in_checksum_errors_total",
		"Segments received with a bad checksum",
		"InCsumErrors: N", ""),
}

// netstatCollector exports TCP receive-path counters from /proc/net/netstat and /proc/net/snmp. The counters
// belong to the network namespace the exporter runs in.
type netstatCollector struct {
	fs    *procnet.FS
	descs []*prometheus.Desc
}

func newNetstatCollector(cfg Config) *netstatCollector {
	c := &netstatCollector{fs: cfg.fs()}
	for _, f := range netstatFields {
		c.descs = append(c.descs, f.spec.Desc())
	}
	return c
}

func (c *netstatCollector) Update(_ context.Context, ch chan<- prometheus.Metric) error {
	var n procnet.Netstat
	if err := c.fs.Netstat(&n); err != nil {
		return err
	}
	for i, f := range netstatFields {
		// A field this kernel does not have stays absent: a 0 would claim that nothing was dropped.
		if v, ok := n.Get(f.counter); ok {
			ch <- prometheus.MustNewConstMetric(c.descs[i], prometheus.CounterValue, float64(v)*f.scale)
		}
	}
	return nil
}

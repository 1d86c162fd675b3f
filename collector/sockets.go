package collector

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockbuf/sockbuf_exporter/attrib"
	"github.com/sockbuf/sockbuf_exporter/sockagg"
	"github.com/sockbuf/sockbuf_exporter/sockdiag"
)

// The sockets collector dumps every TCP socket of the exporter's network namespace over netlink inet_diag on
// each scrape and exports sums per group of sockets, never per socket: a group is a role (server when the
// socket's local port has a LISTEN socket, client otherwise), a port (the local port for servers, the
// remote port for clients) and the owner (cgroup, optionally process). A scrape makes two dumps: first the
// LISTEN sockets alone, without attributes (a few hundred bytes on most hosts), so that the role of every
// socket is known when the second, full dump streams through the aggregator.

func init() {
	registerCollector("sockets",
		"receive queues and buffers of every TCP socket (netlink inet_diag), summed per role, port, cgroup and process",
		true, func(cfg Config, logger *slog.Logger) (Collector, error) {
			return newSocketsCollector(cfg, logger, func() (socketDumper, error) { return sockdiag.Dial(nil) })
		})
}

// snapshotHelp ends the HELP of the two histograms. They count the sockets alive at the scrape, so their
// buckets, _count and _sum fall when sockets close; rate() and increase() would take that for counter resets.
const snapshotHelp = "a snapshot of the live sockets at each scrape whose buckets, _count and _sum go down when sockets close (do not rate() or increase() it)."

var (
	groupLabelNames = []string{"role", "port", "cgroup", "process"}

	socketsSpec = spec("sockets", MetricSpec{
		Name: "sockets", Type: Gauge, Labels: groupLabelNames,
		Help: "Non-listening TCP sockets in the group (role server: local port has a LISTEN socket, port = local port; " +
			"role client: port = remote port; port=\"other\": groups beyond --collector.sockets.max-groups).",
		Source: "inet_diag dump (NETLINK_SOCK_DIAG), the sockets of `ss -tn`",
	})
	recvQueueSpec = spec("sockets", MetricSpec{
		Name: "recv_queue_bytes", Type: Gauge, Unit: "bytes", Labels: groupLabelNames,
		Help:   "Sum of Recv-Q over the group's sockets: bytes received and not yet read by the application (idiag_rqueue).",
		Source: "inet_diag_msg idiag_rqueue (ss Recv-Q)",
	})
	recvQueueMaxSpec = spec("sockets", MetricSpec{
		Name: "recv_queue_max_bytes", Type: Gauge, Unit: "bytes", Labels: groupLabelNames,
		Help:   "Largest Recv-Q of one socket of the group (idiag_rqueue).",
		Source: "inet_diag_msg idiag_rqueue (ss Recv-Q)",
	})
	rmemAllocSpec = spec("sockets", MetricSpec{
		Name: "rmem_alloc_bytes", Type: Gauge, Unit: "bytes", Labels: groupLabelNames,
		Help:   "Sum of rmem_alloc over the group's sockets: memory (skb truesize) charged to their receive queues (skmeminfo r).",
		Source: "INET_DIAG_SKMEMINFO SK_MEMINFO_RMEM_ALLOC (ss -m skmem r)",
	})
	rcvbufSpec = spec("sockets", MetricSpec{
		Name: "rcvbuf_bytes", Type: Gauge, Unit: "bytes", Labels: groupLabelNames,
		Help:   "Sum of rcvbuf over the group's sockets: their receive buffer limits, set by SO_RCVBUF or autotuning (skmeminfo rb).",
		Source: "INET_DIAG_SKMEMINFO SK_MEMINFO_RCVBUF (ss -m skmem rb)",
	})
	rcvbufFullSpec = spec("sockets", MetricSpec{
		Name: "rcvbuf_full_sockets", Type: Gauge, Labels: groupLabelNames,
		Help: "Sockets of the group whose rmem_alloc is at least --collector.sockets.full-ratio of their rcvbuf.",
		Notes: "A full buffer is most often an application that does not read fast enough: its window closes and the " +
			"sender waits, nothing is lost, and autotuning does not grow the buffer of a reader that does not read. It is " +
			"harmful when the collapse and drop counters move too. A single scrape may catch a busy socket at 0: alert on " +
			"an average over time, not on one sample.",
		Source: "INET_DIAG_SKMEMINFO SK_MEMINFO_RMEM_ALLOC and SK_MEMINFO_RCVBUF",
	})
	zeroWindowSpec = spec("sockets", MetricSpec{
		Name: "rcv_window_zero_sockets", Type: Gauge, Labels: groupLabelNames,
		Help:   "ESTABLISHED sockets of the group advertising a zero receive window: the application does not read and the peer must stop sending.",
		Notes:  "Only with --collector.sockets.tcp-info, on kernels whose tcp_info has tcpi_rcv_wnd (6.2+).",
		Source: "INET_DIAG_INFO tcp_info tcpi_rcv_wnd",
	})
	socketDropsSpec = spec("sockets", MetricSpec{
		Name: "socket_drops_total", Type: Counter, Labels: groupLabelNames,
		Help: "Packets the group's sockets discarded (sk_drops), window probes to a closed window included.",
		Notes: "sk_drops counts every packet a socket discards: receive memory or backlog full, but also the zero-window " +
			"probes a receiver with a closed window discards by design (old sequence numbers) and packets a socket filter " +
			"or checksum rejects, so it rises on healthy flow control; data loss is in sockbuf_tcp_rcvq_drop_total, " +
			"sockbuf_tcp_ofo_drop_total and sockbuf_tcp_backlog_drop_total (or per reason with the bpf collector). " +
			"Counted per socket cookie from the first scrape that saw the socket; closed sockets keep their contribution. " +
			"A group keeps its counter while folded into port=\"other\" (whose own counter adds the drops of whatever is " +
			"folded at the time) or without sockets; the counters of up to " + strconv.Itoa(sockagg.MaxDropCounters) +
			" groups not exported live are remembered, the longest gone forgotten first. Absent on kernels whose skmeminfo " +
			"has no drops field.",
		Source: "INET_DIAG_SKMEMINFO SK_MEMINFO_DROPS (ss -m skmem d)",
	})
	sendQueueSpec = spec("sockets", MetricSpec{
		Name: "send_queue_bytes", Type: Gauge, Unit: "bytes", Labels: groupLabelNames,
		Help:   "Sum of Send-Q over the group's sockets: bytes sent and not yet acknowledged by the peer (idiag_wqueue).",
		Source: "inet_diag_msg idiag_wqueue (ss Send-Q)",
	})
	fillRatioSpec = spec("sockets", MetricSpec{
		Name: "rmem_fill_ratio", Type: Histogram, Unit: "ratio",
		Help:   "rmem_alloc / rcvbuf of every non-listening socket with buffers (not TIME_WAIT or SYN_RECV), " + snapshotHelp,
		Notes:  "The le=\"0\" bucket holds the empty ones. Compare bucket values across time (e.g. bucket / _count).",
		Source: "INET_DIAG_SKMEMINFO SK_MEMINFO_RMEM_ALLOC / SK_MEMINFO_RCVBUF",
	})
	rcvbufSizeSpec = spec("sockets", MetricSpec{
		Name: "rcvbuf_size_bytes", Type: Histogram, Unit: "bytes",
		Help: "rcvbuf of every ESTABLISHED socket, " + snapshotHelp,
		Notes: "The kernel stores twice what an application passes to SO_RCVBUF and never autotunes that socket, so pinned " +
			"sockets pile up at one value: 131072 is both tcp_rmem's default (an autotuned socket that has not grown) and " +
			"SO_RCVBUF=65536, 425984 a request capped by the default rmem_max, 2097152 and 4194304 SO_RCVBUF of 1 and 2 MiB. " +
			"The size alone cannot tell pinned from autotuned: sockbuf_rcvbuf_locked_sockets (bpf engine) and " +
			"sockbuf_tcp_receive_drops_total{rcvbuf_locked} (bpf collector) can.",
		Source: "INET_DIAG_SKMEMINFO SK_MEMINFO_RCVBUF (ss -m skmem rb)",
	})
	listenLengthSpec = spec("sockets", MetricSpec{
		Name: "listen_queue_length", Type: Gauge, Labels: []string{"port"},
		Help: "Connections waiting in the accept queue of the port's fullest LISTEN socket (Recv-Q of a LISTEN socket).",
		Notes: "Of the port's IPv4, IPv6 and SO_REUSEPORT sockets, the one with the highest length/limit, ties by length, " +
			"since each has a queue of its own. When it reaches the limit, new connections are dropped (ListenOverflows).",
		Source: "inet_diag_msg idiag_rqueue of LISTEN sockets (ss -ltn Recv-Q)",
	})
	listenLimitSpec = spec("sockets", MetricSpec{
		Name: "listen_queue_limit", Type: Gauge, Labels: []string{"port"},
		Help: "Accept queue limit of the port's fullest LISTEN socket, the same one as sockbuf_listen_queue_length's: " +
			"the listen() backlog capped by net.core.somaxconn (Send-Q of a LISTEN socket).",
		Source: "inet_diag_msg idiag_wqueue of LISTEN sockets (ss -ltn Send-Q)",
	})
	byStateSpec = spec("sockets", MetricSpec{
		Name: "tcp_sockets_by_state", Type: Gauge, Labels: []string{"state"},
		Help: "TCP sockets of the exporter's network namespace by state, for the states the collector dumps " +
			"(--collector.sockets.states; listen always). time_wait and syn_recv are not dumped by default: " +
			"they hold no buffers and a busy host has many (sockbuf_tcp_sockets_time_wait counts TIME-WAIT for free).",
		Source: "inet_diag dump (idiag_state)",
	})
	groupsFoldedSpec = spec("sockets", MetricSpec{
		Name: "socket_groups_folded", Type: Gauge,
		Help:   "Groups that did not fit under --collector.sockets.max-groups on this scrape and were summed into port=\"other\" (0: every group is exported).",
		Source: "the exporter",
	})
	dumpRetriesSpec = spec("sockets", MetricSpec{
		Name: "sockets_dump_retries_total", Type: Counter,
		Help:   "inet_diag dumps started over because the kernel's socket tables changed under them (NLM_F_DUMP_INTR).",
		Source: "netlink NLM_F_DUMP_INTR",
	})
	dumpInconsistentSpec = spec("sockets", MetricSpec{
		Name: "sockets_dump_inconsistent_total", Type: Counter,
		Help:   "inet_diag dumps still interrupted after 3 retries and served anyway: a socket may be missing or counted twice on that scrape.",
		Source: "netlink NLM_F_DUMP_INTR",
	})
)

// tcpStateLabels are the values of the state label, node_exporter's tcpstat names, by idiag_state
// (include/net/tcp_states.h).
var tcpStateLabels = [...]string{
	sockdiag.StateEstablished: "established",
	sockdiag.StateSynSent:     "syn_sent",
	sockdiag.StateSynRecv:     "syn_recv",
	sockdiag.StateFinWait1:    "fin_wait1",
	sockdiag.StateFinWait2:    "fin_wait2",
	sockdiag.StateTimeWait:    "time_wait",
	sockdiag.StateClose:       "close",
	sockdiag.StateCloseWait:   "close_wait",
	sockdiag.StateLastAck:     "last_ack",
	sockdiag.StateListen:      "listen",
	sockdiag.StateClosing:     "closing",
}

// parseStates turns --collector.sockets.states into a dump mask. It takes the state label's names, the names
// ss prints (sockdiag.StateName: ESTAB, UNCONN, ...), ss's filter names (established, syn-sent, syn-recv,
// fin-wait-1, fin-wait-2, time-wait, closed, close-wait, last-ack, listening, closing), and "all", in any case
// and with or without - and _; empty means sockdiag.DefaultStates.
func parseStates(s string) (uint32, error) {
	if strings.TrimSpace(s) == "" {
		return sockdiag.DefaultStates, nil
	}
	norm := func(n string) string {
		return strings.NewReplacer("-", "", "_", "").Replace(strings.ToLower(strings.TrimSpace(n)))
	}
	var mask uint32
	for _, name := range strings.Split(s, ",") {
		n := norm(name)
		switch n {
		case "":
			continue
		case "all":
			for st := range tcpStateLabels {
				if tcpStateLabels[st] != "" {
					mask |= 1 << st
				}
			}
			continue
		// The two of ss's filter names that are neither a label nor what ss prints.
		case "closed":
			n = "close"
		case "listening":
			n = "listen"
		}
		found := false
		for st, label := range tcpStateLabels {
			if label != "" && (norm(label) == n || norm(sockdiag.StateName(uint8(st))) == n) {
				mask |= 1 << st
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown TCP state %q", strings.TrimSpace(name))
		}
	}
	if mask&(1<<sockdiag.StateSynRecv) != 0 {
		// Connections in the handshake are request sockets, TCP_NEW_SYN_RECV inside the kernel.
		mask |= 1 << sockdiag.StateNewSynRecv
	}
	return mask, nil
}

// socketDumper is what the collector needs of a sockdiag.Client; tests replace it. DumpContext stops at the
// context's deadline or cancellation with an error that matches ctx.Err().
type socketDumper interface {
	DumpContext(ctx context.Context, req sockdiag.Request, fn func(*sockdiag.Socket) error) (sockdiag.DumpStats, error)
	Close() error
}

// socketsCollector exports per-group socket metrics. The exporter never runs two scrapes of it at once (see
// flight), so the drops counters and the reused aggregation state need no lock.
type socketsCollector struct {
	logger *slog.Logger
	dial   func() (socketDumper, error)
	states uint32 // of the main dump; LISTEN is dumped separately
	ext    sockdiag.Ext

	client  socketDumper
	agg     *sockagg.Aggregator
	cgroups *attrib.CgroupResolver // nil without cgroup attribution
	procs   *processAttribution    // nil without process attribution
	attempt int                    // Socket.Attempt of the dump in progress
	hasDrop bool                   // the kernel's skmeminfo has the drops field
	hasWnd  bool                   // tcp_info was asked for and has tcpi_rcv_wnd

	retries, inconsistent uint64

	onListener, onSocket func(*sockdiag.Socket) error // bound once, so a scrape allocates no closure

	sockets, recvQueue, recvQueueMax, rmemAlloc, rcvbuf, full, zeroWindow, drops, sendQueue *prometheus.Desc
	fill, size, listenLength, listenLimit, byState, folded, dumpRetries, dumpInconsistent   *prometheus.Desc
}

func newSocketsCollector(cfg Config, logger *slog.Logger, dial func() (socketDumper, error)) (*socketsCollector, error) {
	sc := cfg.Sockets
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	states, err := parseStates(sc.States)
	if err != nil {
		return nil, err // Validate parsed it already
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &socketsCollector{
		logger: logger,
		dial:   dial,
		states: states &^ (1 << sockdiag.StateListen),
		ext:    sockdiag.ExtSKMemInfo,
		agg:    sockagg.New(sc.MaxGroups, sc.FullRatio, sc.CgroupAttribution),

		sockets: socketsSpec.Desc(), recvQueue: recvQueueSpec.Desc(), recvQueueMax: recvQueueMaxSpec.Desc(),
		rmemAlloc: rmemAllocSpec.Desc(), rcvbuf: rcvbufSpec.Desc(), full: rcvbufFullSpec.Desc(),
		zeroWindow: zeroWindowSpec.Desc(),
		drops:      socketDropsSpec.Desc(), sendQueue: sendQueueSpec.Desc(), fill: fillRatioSpec.Desc(),
		size: rcvbufSizeSpec.Desc(), listenLength: listenLengthSpec.Desc(), listenLimit: listenLimitSpec.Desc(),
		byState: byStateSpec.Desc(), folded: groupsFoldedSpec.Desc(), dumpRetries: dumpRetriesSpec.Desc(),
		dumpInconsistent: dumpInconsistentSpec.Desc(),
	}
	if sc.TCPInfo {
		c.ext |= sockdiag.ExtInfo
	}
	c.onListener, c.onSocket = c.listener, c.socket
	if sc.CgroupAttribution {
		root := sc.CgroupRoot
		if root == "" {
			root, err = attrib.FindCgroup2Mount(cfg.ProcPath)
			if err != nil {
				logger.Warn("cannot find the cgroup v2 mount; the cgroup label stays empty", "err", err)
			}
		}
		if root == "" {
			logger.Info("no cgroup v2 hierarchy mounted; the cgroup label stays empty")
		} else {
			c.cgroups = attrib.NewCgroupResolver(root, sc.CgroupLabel)
		}
	}
	if sc.ProcessAttribution {
		c.procs = newProcessAttribution(cfg.ProcPath, logger)
	}
	return c, nil
}

// Update runs one scrape; the context's deadline interrupts a dump in progress.
func (c *socketsCollector) Update(ctx context.Context, ch chan<- prometheus.Metric) error {
	if c.client == nil {
		cl, err := c.dial()
		if err != nil {
			return fmt.Errorf("opening sock_diag: %w", err)
		}
		c.client = cl
	}

	if c.procs != nil {
		c.procs.refresh(ctx) // never fails the collector
	}
	c.agg.Begin()
	c.attempt = 0
	st, err := c.client.DumpContext(ctx, sockdiag.Request{Family: sockdiag.FamilyUnspec, States: 1 << sockdiag.StateListen}, c.onListener)
	if err != nil {
		return dumpError("LISTEN", err)
	}
	c.countDump(st)
	if c.states != 0 {
		c.attempt = 0
		st, err = c.client.DumpContext(ctx, sockdiag.Request{Family: sockdiag.FamilyUnspec, States: c.states, Extensions: c.ext}, c.onSocket)
		if err != nil {
			return dumpError("TCP", err)
		}
		c.countDump(st)
	}
	var cgroupName func(uint64) string
	if c.cgroups != nil {
		cgroupName = c.cgroups.Name
	}
	var processName func(int32) string
	if c.procs != nil {
		processName = c.procs.Name
	}
	c.agg.Finish(cgroupName, processName)
	c.emit(ch)
	return nil
}

func dumpError(what string, err error) error {
	// The aggregation of this scrape is half done; the drops baseline was not committed, so the next
	// scrape recomputes the same deltas.
	return fmt.Errorf("dumping %s sockets: %w", what, err)
}

func (c *socketsCollector) countDump(st sockdiag.DumpStats) {
	c.retries += uint64(st.Retries)
	if st.Inconsistent {
		c.inconsistent++
	}
}

func (c *socketsCollector) listener(s *sockdiag.Socket) error {
	if s.Attempt != c.attempt {
		c.attempt = s.Attempt
		c.agg.ResetListeners()
	}
	if s.IsListen() {
		c.agg.AddListener(s)
	}
	return nil
}

func (c *socketsCollector) socket(s *sockdiag.Socket) error {
	if s.Attempt != c.attempt {
		c.attempt = s.Attempt
		c.agg.ResetSockets()
	}
	if s.IsListen() {
		return nil // counted by the LISTEN dump
	}
	if !c.hasDrop && s.HasSKMemInfo && s.SKMemInfoHasDrops() {
		c.hasDrop = true
	}
	if !c.hasWnd && s.HasRcvWnd() {
		c.hasWnd = true
	}
	var proc int32
	if c.procs != nil {
		proc = c.procs.Owner(s.Inode)
	}
	c.agg.Add(s, proc)
	return nil
}

func (c *socketsCollector) emit(ch chan<- prometheus.Metric) {
	a := c.agg
	gauge := func(d *prometheus.Desc, v uint64, lv []string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), lv...)
	}
	for _, g := range a.Groups() {
		lv := groupLabelValues(g.Labels)
		st := &g.Stats
		gauge(c.sockets, st.Sockets, lv)
		gauge(c.recvQueue, st.RecvQueue, lv)
		gauge(c.recvQueueMax, st.RecvQueueMax, lv)
		gauge(c.rmemAlloc, st.RmemAlloc, lv)
		gauge(c.rcvbuf, st.Rcvbuf, lv)
		gauge(c.full, st.Full, lv)
		gauge(c.sendQueue, st.SendQueue, lv)
		if c.hasWnd {
			gauge(c.zeroWindow, st.ZeroWindow, lv)
		}
		if c.hasDrop {
			ch <- prometheus.MustNewConstMetric(c.drops, prometheus.CounterValue, float64(g.Drops), lv...)
		}
	}
	if c.hasDrop {
		for _, g := range a.OldGroups() {
			ch <- prometheus.MustNewConstMetric(c.drops, prometheus.CounterValue, float64(g.Drops), groupLabelValues(g.Labels)...)
		}
	}
	fill, size := a.Fill(), a.Size()
	ch <- prometheus.MustNewConstHistogram(c.fill, fill.Count(), fill.Sum(), fill.Cumulative())
	ch <- prometheus.MustNewConstHistogram(c.size, size.Count(), size.Sum(), size.Cumulative())
	for _, l := range a.Listeners() {
		port := []string{sockagg.PortLabel(l.Port, l.Other)}
		gauge(c.listenLength, l.Length, port)
		gauge(c.listenLimit, l.Limit, port)
	}
	mask := c.states | 1<<sockdiag.StateListen
	states := a.States()
	for st, label := range tcpStateLabels {
		if label != "" && (mask&(1<<st) != 0 || states[st] != 0) {
			gauge(c.byState, states[st], []string{label})
		}
	}
	gauge(c.folded, uint64(a.Folded()), nil)
	ch <- prometheus.MustNewConstMetric(c.dumpRetries, prometheus.CounterValue, float64(c.retries))
	ch <- prometheus.MustNewConstMetric(c.dumpInconsistent, prometheus.CounterValue, float64(c.inconsistent))
	if c.procs != nil {
		c.procs.emit(ch)
	}
}

// groupLabelValues are the values of groupLabelNames, built once per group and scrape.
func groupLabelValues(l sockagg.Labels) []string {
	return []string{l.Role.String(), l.PortLabel(), l.Cgroup, l.Process}
}

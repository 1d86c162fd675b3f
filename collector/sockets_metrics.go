package collector

import (
	"strconv"

	"github.com/sockbuf/sockbuf_exporter/sockagg"
)

// The sockets collector's metrics (sockets.go exports them; sockets_engine.go adds the bpf engine's).

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
		Help: "ESTABLISHED sockets of the group advertising a zero receive window: the application does not read and the peer must stop sending.",
		Notes: "On kernels whose tcp_info has tcpi_rcv_wnd (6.2+). The bpf engine reads the same field (tp->rcv_wnd) of " +
			"every socket at no extra cost. The netlink engine with --collector.sockets.tcp-info gets every ESTABLISHED " +
			"socket's window with the dump; without it, the full sockets (rmem_alloc at --collector.sockets.full-ratio " +
			"of rcvbuf, the only ones whose window can be closed) are looked up one by one with tcp_info, and those not " +
			"checked are counted in sockbuf_rcv_window_unchecked_sockets. A group with zero windows and no drops is a " +
			"slow reader: flow control, not a small buffer.",
		Source: "INET_DIAG_INFO tcp_info tcpi_rcv_wnd (netlink: a lookup of each full socket without --collector.sockets.tcp-info); bpf engine: tp->rcv_wnd",
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
			"has no drops field. The bpf engine counts the same deltas in the kernel (each socket's last sk_drops in BPF " +
			"socket storage, for every socket, where the netlink engine tracks at most 65,536 sockets that dropped) into " +
			"the same counters; a group beyond its table of 16,384 groups counts into port=\"other\" only. Switching " +
			"engines restarts the counters, as a restart of the exporter does.",
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
		Notes:  "Always 0 with the bpf engine, whose walk is never started over.",
		Source: "netlink NLM_F_DUMP_INTR",
	})
	dumpInconsistentSpec = spec("sockets", MetricSpec{
		Name: "sockets_dump_inconsistent_total", Type: Counter,
		Help:   "inet_diag dumps still interrupted after 3 retries and served anyway: a socket may be missing or counted twice on that scrape.",
		Source: "netlink NLM_F_DUMP_INTR",
	})
)

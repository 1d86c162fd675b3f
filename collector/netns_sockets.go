package collector

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockbuf/sockbuf_exporter/netns"
	"github.com/sockbuf/sockbuf_exporter/sockagg"
	"github.com/sockbuf/sockbuf_exporter/sockdiag"
)

// With --collector.netns.sockets the netns collector also dumps the TCP sockets of every namespace it exports
// and sums them per namespace, with the sockets collector's per-group sum (sockagg.Stats.Add). inet_diag only
// dumps the sockets of the netlink socket's own namespace, so each namespace gets a sock_diag client opened
// inside it (netns.Dial). setns into another namespace needs CAP_SYS_ADMIN; without it the dial fails with EPERM.
//
// The client and the fd of /proc/<pid>/ns/net it was dialed with are kept across scrapes (the client dials
// again through the fd after an aborted dump), one pair per exported namespace, and closed on the first scrape
// that no longer exports the namespace: its processes are gone, or it fell out of the cap. Both hold a
// reference to the namespace, so a deleted pod's namespace lives on until that scrape; in return an inode
// with a cached client cannot have been reused by a new namespace.
//
// A namespace whose dial or dump fails (EPERM, the namespace gone) is left without socket metrics on that
// scrape and counted in sockbuf_netns_socket_dump_errors_total; its counters from /proc are exported anyway.
//
// The scrape's deadline (DefaultTimeout without one) bounds all the dumps together. Unlike the sockets
// collector, the netns collector does not fail when it passes: the exporter would drop all its output, and
// with it every namespace's /proc counters, read before the dumps, that the prune alerts need; on a large
// node the dumps are what runs out of time. So the dumps stop a little before the deadline (dumpReserve),
// leaving the collector time to return its output; the namespace being dumped and those not reached are left
// without socket metrics on that scrape and counted in sockbuf_netns_socket_dumps_skipped_total, and their
// clients are kept.
//
// Engine: with the bpf engine (chosen as for the sockets collector, see sockets_engine.go) each namespace is
// walked with one shared sockiter.Engine (WalkNetNS) through the namespace fd kept instead of a client; the
// sums are the same (TestNetnsEndToEnd runs both engines against ss).
//
// Cost: the dial (open, setns, socket, setns back) once per namespace; then one dump per scrape, which walks
// the kernel's whole established hash table, shared by all namespaces unless net.ipv4.tcp_child_ehash_entries
// gave them their own, skipping other namespaces' sockets: its cost grows with the host's hash size and
// sockets, not only the namespace's. BenchmarkNetnsRealProc measures it.

var (
	netnsSocketsSpec = spec("netns", MetricSpec{
		Name: "netns_sockets", Type: Gauge, Labels: netnsLabels,
		Help:   "Non-listening TCP sockets of the network namespace netns, in the states that hold buffers (not TIME_WAIT or SYN_RECV).",
		Notes:  "Only with --collector.netns.sockets.",
		Source: "inet_diag dump (NETLINK_SOCK_DIAG) inside the namespace, the sockets of `ip netns exec NS ss -tn`",
	})
	netnsRecvQueueSpec = spec("netns", MetricSpec{
		Name: "netns_recv_queue_bytes", Type: Gauge, Unit: "bytes", Labels: netnsLabels,
		Help:   "Sum of Recv-Q over the non-listening TCP sockets of the network namespace netns: bytes received and not yet read by the applications (idiag_rqueue).",
		Notes:  "Only with --collector.netns.sockets.",
		Source: "inet_diag_msg idiag_rqueue inside the namespace (`ip netns exec NS ss -tn` Recv-Q)",
	})
	netnsRcvbufFullSpec = spec("netns", MetricSpec{
		Name: "netns_rcvbuf_full_sockets", Type: Gauge, Labels: netnsLabels,
		Help: "TCP sockets of the network namespace netns whose rmem_alloc is at least --collector.sockets.full-ratio of their rcvbuf.",
		Notes: "A full buffer is most often a reader that does not keep up (its window closes, nothing is lost); " +
			"it is harmful when the collapse and drop counters move too. Only with --collector.netns.sockets.",
		Source: "INET_DIAG_SKMEMINFO SK_MEMINFO_RMEM_ALLOC and SK_MEMINFO_RCVBUF inside the namespace",
	})
	netnsDumpsSkippedSpec = spec("netns", MetricSpec{
		Name: "netns_socket_dumps_skipped_total", Type: Counter,
		Help: "Exported network namespaces whose socket dump was cut short or not started because the scrape's deadline came first.",
		Notes: "Their socket metrics are left out of that scrape while their counters still export. Rising: the dumps take " +
			"longer than the scrape timeout allows; raise scrape_timeout or lower --collector.netns.max-namespaces. " +
			"Only with --collector.netns.sockets.",
		Source: "the exporter",
	})
	netnsDumpErrorsSpec = spec("netns", MetricSpec{
		Name: "netns_socket_dump_errors_total", Type: Counter,
		Help:   "Socket dumps of an exported network namespace that failed, leaving its socket metrics out of that scrape.",
		Notes:  "Causes: setns without CAP_SYS_ADMIN (EPERM), a namespace gone during the scrape. Only with --collector.netns.sockets.",
		Source: "the exporter",
	})
)

// netnsDumpStates are the states dumped in each namespace: those that hold buffers, without LISTEN, whose
// Recv-Q is an accept queue and not data (and which the kernel then skips the listening hash for).
const netnsDumpStates = sockdiag.DefaultStates &^ (1 << sockdiag.StateListen)

// netnsSockets dumps and sums the sockets of each exported namespace. Only the netns collector's scrape, which
// runs one at a time, touches it.
type netnsSockets struct {
	logger    *slog.Logger
	fullRatio float64
	// dial opens a client inside the namespace ino through process pid; tests replace it.
	dial func(pid int, ino uint64) (socketDumper, error)
	// walker, when set, walks each namespace with the bpf engine instead of dumping it, through the fd
	// openNS opens (nil for the netlink engine).
	walker netnsWalker
	openNS func(pid int, ino uint64) (*os.File, error)

	gen      uint64
	clients  map[uint64]*netnsClient // by namespace inode
	errors   uint64
	skipped  uint64
	cutShort bool // the last scrape ran out of time: log the next one at debug level only

	// The namespace being dumped: its sums and the attempt the sums are of.
	stats    sockagg.Stats
	attempt  int
	onSocket func(*sockdiag.Socket) error // s.socket bound once, so a dump allocates no closure

	sockets, recvQueue, full, dumpErrors, dumpsSkipped *prometheus.Desc
}

// netnsClient is a namespace's cached client (nil while its dial fails) and whether its last dump failed.
type netnsClient struct {
	d       socketDumper
	nsf     *os.File // the bpf engine's handle on the namespace instead of d
	gen     uint64
	failing bool
}

func newNetnsSockets(fullRatio float64, dial func(pid int, ino uint64) (socketDumper, error), logger *slog.Logger) *netnsSockets {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &netnsSockets{
		logger: logger, fullRatio: fullRatio, dial: dial,
		clients: map[uint64]*netnsClient{},
		sockets: netnsSocketsSpec.Desc(), recvQueue: netnsRecvQueueSpec.Desc(), full: netnsRcvbufFullSpec.Desc(),
		dumpErrors: netnsDumpErrorsSpec.Desc(), dumpsSkipped: netnsDumpsSkippedSpec.Desc(),
	}
	s.onSocket = s.socket
	return s
}

// dumpReserve is the part of the time left to a scrape that the dumps leave to the rest of the collector
// (closing clients, sending the metrics) and to the exporter, so that the collector returns before the
// scrape's deadline and its output is kept: a tenth, at most maxDumpReserve.
func dumpReserve(left time.Duration) time.Duration {
	return min(left/10, maxDumpReserve)
}

const maxDumpReserve = 500 * time.Millisecond

// update dumps the sockets of every namespace of spaces and sends their sums; namespaces not in spaces lose
// their clients. When the scrape's deadline nears, it stops dumping and counts the namespaces left; it never
// fails, so that the namespaces' counters are exported (see the file comment).
func (s *netnsSockets) update(ctx context.Context, spaces []*netns.Namespace, ch chan<- prometheus.Metric) {
	if deadline, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline.Add(-dumpReserve(time.Until(deadline))))
		defer cancel()
	}

	// Every exported namespace keeps its client, dumped on this scrape or not: closing the clients of the
	// namespaces an interrupted scrape did not reach would only make the next scrape dial them again.
	s.gen++
	for _, ns := range spaces {
		if cl := s.clients[ns.Ino]; cl != nil {
			cl.gen = s.gen
		}
	}
	cutShort := false
	for i, ns := range spaces {
		if err := s.dumpOne(ctx, ns, ch); err != nil {
			left := len(spaces) - i
			s.skipped += uint64(left)
			level := slog.LevelDebug
			if !s.cutShort {
				level = slog.LevelWarn // once per run of slow scrapes
			}
			s.logger.Log(ctx, level, "scrape deadline near while dumping the sockets of network namespaces; the socket metrics of those not dumped are left out of this scrape",
				"namespaces_not_dumped", left, "namespaces", len(spaces), "err", err)
			cutShort = true
			break
		}
	}
	s.cutShort = cutShort
	for ino, cl := range s.clients {
		if cl.gen != s.gen {
			if cl.d != nil {
				cl.d.Close()
			}
			if cl.nsf != nil {
				cl.nsf.Close()
			}
			delete(s.clients, ino)
		}
	}
	ch <- prometheus.MustNewConstMetric(s.dumpErrors, prometheus.CounterValue, float64(s.errors))
	ch <- prometheus.MustNewConstMetric(s.dumpsSkipped, prometheus.CounterValue, float64(s.skipped))
}

// dumpOne dumps one namespace and sends its sums, or counts the failure. It returns an error only when ctx
// ended before the dump completed.
func (s *netnsSockets) dumpOne(ctx context.Context, ns *netns.Namespace, ch chan<- prometheus.Metric) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("dumping the sockets of network namespaces: %w", err)
	}
	cl := s.clients[ns.Ino]
	if cl == nil {
		cl = &netnsClient{}
		s.clients[ns.Ino] = cl
	}
	cl.gen = s.gen
	var err error
	switch {
	case s.walker != nil:
		err = s.walkOne(ctx, ns, cl)
	case cl.d == nil:
		cl.d, err = s.dial(ns.Pid, ns.Ino)
	}
	if err == nil && s.walker == nil {
		s.stats, s.attempt = sockagg.Stats{}, 0
		_, err = cl.d.DumpContext(ctx, sockdiag.Request{Family: sockdiag.FamilyUnspec, States: netnsDumpStates, Extensions: sockdiag.ExtSKMemInfo}, s.onSocket)
	}
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("dumping the sockets of network namespace %s: %w", ns.Name, err)
		}
		s.errors++
		level := slog.LevelDebug
		if !cl.failing {
			level = slog.LevelWarn // once per run of failures, not on every scrape
		}
		cl.failing = true
		s.logger.Log(ctx, level, "cannot dump the sockets of a network namespace; its socket metrics are left out",
			"netns", ns.Name, "netns_inode", ns.Inode, "err", err)
		return nil
	}
	cl.failing = false
	ch <- prometheus.MustNewConstMetric(s.sockets, prometheus.GaugeValue, float64(s.stats.Sockets), ns.Name, ns.Inode)
	ch <- prometheus.MustNewConstMetric(s.recvQueue, prometheus.GaugeValue, float64(s.stats.RecvQueue), ns.Name, ns.Inode)
	ch <- prometheus.MustNewConstMetric(s.full, prometheus.GaugeValue, float64(s.stats.Full), ns.Name, ns.Inode)
	return nil
}

func (s *netnsSockets) socket(sk *sockdiag.Socket) error {
	if sk.Attempt != s.attempt {
		// The kernel restarted the dump (NLM_F_DUMP_INTR): count again from the start.
		s.attempt = sk.Attempt
		s.stats = sockagg.Stats{}
	}
	if !sk.IsListen() {
		s.stats.Add(sk, s.fullRatio)
	}
	return nil
}

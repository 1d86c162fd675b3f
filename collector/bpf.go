package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
)

// The bpf collector (off by default) exports what bpf/drops counts in the kernel: every receive-path drop of
// a TCP socket by the kernel's own drop reason, per group of sockets, plus receive-buffer growth and memory
// limit hits. Groups mean what they mean for the sockets collector: role and port by the same listening-port
// rule (the collector tells the programs the namespace's listening ports every scrape, from a LISTEN-only
// sock_diag dump), cgroup by the same resolver, the same cap (--collector.sockets.max-groups) with the rest
// folded into port="other" per role. See bpf_linux.go and bpf_counters.go.
//
// When the programs cannot be loaded (no CAP_BPF and CAP_PERFMON, no BTF, no kfree_skb tracepoint), the
// collector logs one line naming what is missing when the exporter starts, exports none of its metrics, and
// reports sockbuf_scrape_collector_success{collector="bpf"} 0 on every scrape without logging again; the
// other collectors are untouched.

// bpfHelp describes the collector for its flag.
const bpfHelp = "every receive-path drop of TCP sockets by the kernel's drop reason, per role, port, cgroup and rcvbuf_locked, plus buffer growth and memory limit hits, counted by eBPF programs on tracepoints; needs CAP_BPF and CAP_PERFMON and the kernel's BTF"

// BPFConfig configures the bpf collector.
type BPFConfig struct {
	// OwnNetNS counts only sockets (and drops without a socket on devices) of the exporter's own network
	// namespace; otherwise every namespace's.
	OwnNetNS bool
	// MapEntries sizes the kernel map of attributed drops (distinct reason, role, port, cgroup, rcvbuf_locked
	// keys since start); 0 means bpf/drops.DefaultMaxGroups. Drops of keys beyond it are counted in
	// sockbuf_bpf_map_full_events_total{map="drops"}.
	MapEntries int
}

// Validate checks the configuration.
func (c BPFConfig) Validate() error {
	if c.MapEntries < 0 {
		return fmt.Errorf("--collector.bpf.map-entries must not be negative, got %d", c.MapEntries)
	}
	return nil
}

// errUnavailable marks the error of a collector that could not start: the exporter logged why once, when the
// collector was built, and does not log it again on every scrape.
var errUnavailable = errors.New("collector unavailable")

// unavailableCollector stands for a collector whose source is missing on this host.
type unavailableCollector struct{ err error }

func (u unavailableCollector) Update(context.Context, chan<- prometheus.Metric) error { return u.err }

// newUnavailable logs the one line that says why a collector exports nothing and returns the collector that
// fails every scrape quietly.
func newUnavailable(logger *slog.Logger, msg string, err error) Collector {
	logger.Error(msg, "err", err)
	return unavailableCollector{err: fmt.Errorf("%w: %s: %w", errUnavailable, msg, err)}
}

var bpfGroupLabels = []string{"role", "port", "cgroup", "rcvbuf_locked"}

const bpfGroupNotes = "role, port and cgroup mean what they mean for the sockets collector: a socket whose local port " +
	"has a LISTEN socket in its network namespace is a server of that port, any other a client of its remote port; " +
	"the groups beyond --collector.sockets.max-groups (those with the fewest events since the exporter started) " +
	"fold into port=\"other\" with an empty cgroup, one per role. In a network namespace other than the " +
	"exporter's (counted unless --collector.bpf.own-netns) the exporter does not list the listening ports, so the " +
	"port ranges decide: a local port outside net.ipv4.ip_local_port_range with a remote one inside is a server of " +
	"the local port, a local port inside with a remote one outside a client of the remote port, anything else " +
	"role=\"unknown\" and port=\"unknown\"; the cgroup still tells the pods apart. Listening and " +
	"request sockets are servers of their own port everywhere. rcvbuf_locked is \"true\" when the application set " +
	"SO_RCVBUF (sk_userlocks & SOCK_RCVBUF_LOCK), which disables autotuning: such a socket never grows its buffer. " +
	"Counters are kept per kernel key; a group's counter goes on from where it was when the group comes back " +
	"from folding, and the \"other\" counter adds the events of whatever is folded at the time. "

var (
	bpfDropsSpec = spec("bpf", MetricSpec{
		Name: "tcp_receive_drops_total", Type: Counter, Labels: append([]string{"reason"}, bpfGroupLabels...),
		Help: "Packets of TCP sockets the kernel dropped on the receive path, by the kernel's drop reason (skb:kfree_skb with enum skb_drop_reason).",
		Notes: "reason is the kernel's name without SKB_DROP_REASON_, in lower case, read from the running kernel's " +
			"BTF. Data lost for lack of buffer room: proto_mem (= TcpExt TCPRcvQDrop + TCPOFODrop), " +
			"tcp_ofo_queue_prune (out-of-order data pruned, OfoPruned), socket_backlog (TCPBacklogDrop). Flow control, " +
			"not loss: tcp_zerowindow (TCPZeroWindowDrop, data the peer sent into a closed window; it sends it again). " +
			"Not data loss either: tcp_old_sequence (mostly zero-window probes a " +
			"receiver with a closed window discards by design), tcp_old_data (retransmissions of data already " +
			"received), tcp_ofomerge (duplicates of data already held), tcp_invalid_sequence. " + bpfGroupNotes +
			"Linux 6.11+ (kfree_skb's rx_sk argument); on older kernels every drop is unattributed.",
		Source: "tp_btf/kfree_skb (bpf/drops)",
	})
	bpfUnattributedSpec = spec("bpf", MetricSpec{
		Name: "receive_drops_unattributed_total", Type: Counter, Labels: []string{"reason"},
		Help: "Packets the kernel dropped without a TCP socket (no socket found, before the socket lookup, or a socket of another protocol), by drop reason (skb:kfree_skb).",
		Notes: "Softnet, netfilter, routing and no-listener drops land here (no_socket, netfilter_drop, ...), as do UDP " +
			"and other protocols' drops. With --collector.bpf.own-netns only drops on devices of the exporter's " +
			"namespace.",
		Source: "tp_btf/kfree_skb (bpf/drops)",
	})
	bpfGrowSpec = spec("bpf", MetricSpec{
		Name: "tcp_rcvbuf_grow_total", Type: Counter, Labels: bpfGroupLabels,
		Help: "Times receive-buffer autotuning (tcp_rcv_space_adjust) found the reader consuming more per round trip than the buffer held and called tcp_rcvbuf_grow (tcp:tcp_rcvbuf_grow).",
		Notes: "The buffer grew, unless rcvbuf_locked=\"true\" (SO_RCVBUF pinned it: the tracepoint fires before " +
			"the lock check, so this counts growth wanted and refused) or it was at tcp_rmem's maximum. " + bpfGroupNotes +
			"Absent on kernels without the tracepoint (before 6.17).",
		Source: "tp_btf/tcp_rcvbuf_grow (bpf/drops)",
	})
	bpfLimitSpec = spec("bpf", MetricSpec{
		Name: "socket_memory_limit_hits_total", Type: Counter, Labels: []string{"kind", "cgroup"},
		Help: "Times TCP sockets of the cgroup wanted memory beyond tcp_mem or their memory cgroup's limit and were refused (sock:sock_exceed_buf_limit, __sk_mem_raise_allocated).",
		Notes: "kind is recv or send. On the receive side the segment that wanted the memory is then dropped, as " +
			"proto_mem unless the queue was empty. cgroup as for the sockets collector: the socket's cgroup v2 group, " +
			"not its memory cgroup where memory is a cgroup v1 controller (then often \"/\"; the memcg collector " +
			"names the v1 memory cgroup). A memory cgroup refusing receive memory is traced since Linux 6.18 " +
			"(earlier kernels trace only tcp_mem refusals there); proven by TestMemoryLimitHits (bpf/drops) with a " +
			"cgroup v1 TCP memory limit.",
		Source: "tp_btf/sock_exceed_buf_limit (bpf/drops)",
	})
	bpfLostSpec = spec("bpf", MetricSpec{
		Name: "bpf_map_full_events_total", Type: Counter, Labels: []string{"map"},
		Help: "Events the BPF programs could not count because their fixed-size map was full (a new key beyond its size).",
		Notes: "map is drops (size --collector.bpf.map-entries), unattributed, rcvbuf_grow or memory_limit. When it " +
			"rises the other bpf counters are short by this much.",
		Source: "bpf/drops lost map",
	})
	bpfMissedSpec = spec("bpf", MetricSpec{
		Name: "bpf_missed_runs_total", Type: Counter,
		Help:   "Runs of the bpf collector's programs the kernel skipped because the program was already running on that CPU (recursion misses).",
		Notes:  "Events neither counted nor in sockbuf_bpf_map_full_events_total; a tracepoint hit from an interrupt while the program ran.",
		Source: "BPF program statistics (bpf_prog_info recursion_misses)",
	})
)

// lostMaps are the values of the map label of sockbuf_bpf_map_full_events_total, in drops.Lost's order.
var lostMaps = [...]string{"drops", "unattributed", "rcvbuf_grow", "memory_limit"}

// bpfCgroupNamer returns how the bpf collector names cgroup ids: the sockets collector's resolver when cgroup
// attribution is on and a cgroup v2 hierarchy is found, otherwise every id gets the empty label. It is the one
// place to switch to another naming source.
func bpfCgroupNamer(cfg Config, logger *slog.Logger) func(uint64) string {
	r := CgroupResolver(cfg, logger)
	if r == nil {
		return func(uint64) string { return "" }
	}
	return func(id uint64) string {
		if id == 0 {
			return "" // TIME_WAIT and request sockets carry no cgroup
		}
		return r.Name(id)
	}
}

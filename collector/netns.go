package collector

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockbuf/sockbuf_exporter/bpf/sockiter"
	"github.com/sockbuf/sockbuf_exporter/netns"
	"github.com/sockbuf/sockbuf_exporter/procnet"
)

// The netns collector exports the receive-path counters of the host's other network namespaces (Kubernetes
// pods, containers, `ip netns add` namespaces), which the host's /proc/net/netstat does not include. Package
// netns finds, names and reads them; this file maps its results to metrics. The exporter's own namespace is
// left out: the netstat collector exports it.
//
// Two namespaces can get the same name (two namespaces made by one service), and summing them would make
// the sum go backwards when one ends, so every series also has netns_inode. It adds no series (one per
// namespace either way) and marks a recreated namespace (a restarted pod sandbox) as a new series.
//
// Sockets (--collector.netns.sockets): the sums of each exported namespace's TCP sockets, see netns_sockets.go.
//
// Cap: at most MaxNamespaces namespaces are exported, ranked by harm as docs/harm.md orders it (netnsRank):
// the most data lost, then the most collapsing, then the most PruneCalled (which alone is only buffer
// growth), then the lowest inode, so the set is stable; the others are counted in sockbuf_netns_namespaces_skipped. They are not folded into
// an "other" series: its sum would go backwards whenever a namespace moved in or out of the top.

func init() {
	registerCollector("netns",
		"receive-path TCP counters of every other network namespace (pods, containers) from /proc/<pid>/net/netstat and snmp; needs root or CAP_SYS_PTRACE",
		false, func(cfg Config, logger *slog.Logger) (Collector, error) {
			if cfg.Netns.MaxNamespaces < 1 {
				return nil, fmt.Errorf("--collector.netns.max-namespaces must be at least 1, got %d", cfg.Netns.MaxNamespaces)
			}
			c := newNetnsCollector(cfg)
			if logger != nil {
				c.logger = logger
			}
			if cfg.Netns.Sockets {
				ratio := cfg.Sockets.FullRatio
				if err := validFullRatio(ratio); err != nil {
					return nil, err
				}
				procPath := c.ns.ProcPath()
				c.socks = newNetnsSockets(ratio, func(pid int, ino uint64) (socketDumper, error) {
					return netns.Dial(procPath, pid, ino)
				}, logger)
				err := c.socks.useEngine(cfg.Sockets, func(o sockiter.Options) (netnsWalker, error) { return sockiter.Open(o) },
					func(pid int, ino uint64) (*os.File, error) { return netns.Open(procPath, pid, ino) })
				if err != nil {
					return nil, err
				}
			}
			return c, nil
		})
}

// NetnsConfig configures the netns collector.
type NetnsConfig struct {
	// MaxNamespaces caps the namespaces exported, at least 1; the rest are counted, not exported.
	MaxNamespaces int
	// NamedDir is where `ip netns add` bind-mounts named namespaces; /run/netns when empty.
	NamedDir string
	// Sockets dumps the TCP sockets of every exported namespace (netns_sockets.go); needs CAP_SYS_ADMIN.
	Sockets bool
}

// NetnsConfigWarning returns what is wrong with cfg.Netns given the enabled collectors that is not worth
// refusing to start for, or "": --collector.netns.sockets does nothing without the netns collector.
func NetnsConfigWarning(cfg Config, enabled []string) string {
	if cfg.Netns.Sockets && !slices.Contains(enabled, "netns") {
		return "--collector.netns.sockets has no effect without --collector.netns"
	}
	return ""
}

var netnsLabels = []string{"netns", "netns_inode"}

// netnsField is a netstat collector field also exported per namespace.
type netnsField struct {
	counter procnet.Counter
	scale   float64 // the netstat field's: 0.001 for a counter kept in ms
	spec    MetricSpec
}

// netnsCounter exports the netstat field kernelName per namespace; why, when set, ends the HELP.
func netnsCounter(counter procnet.Counter, why string) netnsField {
	for _, f := range netstatFields {
		if f.counter != counter {
			continue
		}
		help := strings.TrimSuffix(f.spec.Help, ".") + ", in the network namespace netns."
		return netnsField{counter: counter, scale: f.scale, spec: spec("netns", MetricSpec{
			Name:   "netns_" + f.spec.Name,
			Type:   Counter,
			Unit:   f.spec.Unit,
			Labels: netnsLabels,
			Help:   help,
			Notes:  strings.TrimSpace(f.spec.Notes + " " + why),
			Source: strings.Replace(f.spec.Source, "/proc/net/", "/proc/<pid>/net/", 1) + ", <pid> a process in the namespace",
		})}
	}
	panic("netns: no netstat field " + counter.Name())
}

// netnsMemoryPressureWhy is why the memory-pressure counters are exported per namespace although pressure is
// host-wide: tcp_enter_memory_pressure and tcp_leave_memory_pressure (net/ipv4/tcp.c) count in
// sock_net(sk), the namespace of the socket that crossed tcp_mem.
const netnsMemoryPressureWhy = "TCP memory pressure (tcp_mem) is host-wide, but the kernel counts it in the namespace " +
	"of the socket that entered or left it, so on a host whose traffic is in pods or containers the host's own " +
	"counter misses most of it: add these, summed over namespaces, to the host's."

// netnsFields are the counters exported per namespace: the receive-buffer drops, listen overflows, InSegs as
// the denominator, and the memory-pressure counters the host's netstat misses. The first one ranks namespaces
// for the cap.
var netnsFields = []netnsField{
	netnsCounter(procnet.PruneCalled, ""),
	netnsCounter(procnet.RcvPruned, ""),
	netnsCounter(procnet.OfoPruned, ""),
	netnsCounter(procnet.TCPRcvCollapsed, ""),
	netnsCounter(procnet.TCPRcvQDrop, ""),
	netnsCounter(procnet.TCPBacklogDrop, ""),
	netnsCounter(procnet.ListenOverflows, ""),
	netnsCounter(procnet.InSegs, ""),
	netnsCounter(procnet.TCPMemoryPressures, netnsMemoryPressureWhy),
	netnsCounter(procnet.TCPMemoryPressuresChrono, netnsMemoryPressureWhy),
}

var (
	netnsNamespacesSpec = spec("netns", MetricSpec{
		Name: "netns_namespaces", Type: Gauge,
		Help:   "Network namespaces found other than the exporter's own: distinct /proc/<pid>/ns/net of the processes it may read.",
		Source: "readlink /proc/<pid>/ns/net",
	})
	netnsReadErrorsSpec = spec("netns", MetricSpec{
		Name: "netns_read_errors_total", Type: Counter,
		Help: "Network namespaces left out of a scrape because their /proc/<pid>/net/netstat or snmp could not be read or parsed.",
		Notes: "One namespace's unreadable files cost only that namespace's series on that scrape; the exporter logs the " +
			"first error of a run of them at warning level, the rest at debug.",
		Source: "the exporter",
	})
	netnsSkippedSpec = spec("netns", MetricSpec{
		Name: "netns_namespaces_skipped", Type: Gauge,
		Help:   "Network namespaces found but not exported: beyond --collector.netns.max-namespaces (those with the least harm: data lost, then collapsing, then PruneCalled).",
		Source: "the exporter",
	})
)

// netnsCollector exports netstat counters, and optionally socket sums, per network namespace. The exporter
// never runs two scrapes of it at once (see flight), so its caches need no lock.
type netnsCollector struct {
	ns  *netns.Discoverer
	max int

	descs          []*prometheus.Desc // one per netnsFields entry
	namespacesDesc *prometheus.Desc
	skippedDesc    *prometheus.Desc
	readErrorsDesc *prometheus.Desc

	logger     *slog.Logger
	readErrors uint64
	failing    bool // the last scrape had a read error: log the next ones at debug level

	socks *netnsSockets // nil without --collector.netns.sockets
}

func newNetnsCollector(cfg Config) *netnsCollector {
	c := &netnsCollector{
		ns:             netns.New(cfg.ProcPath, cfg.Netns.NamedDir, cfg.Sockets.CgroupLabel),
		max:            cfg.Netns.MaxNamespaces,
		namespacesDesc: netnsNamespacesSpec.Desc(),
		skippedDesc:    netnsSkippedSpec.Desc(),
		readErrorsDesc: netnsReadErrorsSpec.Desc(),
		logger:         slog.New(slog.DiscardHandler),
	}
	for _, f := range netnsFields {
		c.descs = append(c.descs, f.spec.Desc())
	}
	return c
}

// Update runs one scrape. Only the socket dumps can take long; the scrape's deadline bounds them.
func (c *netnsCollector) Update(ctx context.Context, ch chan<- prometheus.Metric) error {
	found, err := c.ns.Scan()
	if err != nil {
		return err
	}
	buf := procnet.GetBuf()
	defer procnet.PutBuf(buf)
	read := found[:0]
	failing := false
	for _, ns := range found {
		ok, err := c.ns.ReadCounters(ns, buf)
		if err != nil {
			// One namespace's garbled or unreadable files must not cost the others their series.
			c.readErrors++
			level := slog.LevelDebug
			if !c.failing && !failing {
				level = slog.LevelWarn
			}
			failing = true
			c.logger.Log(ctx, level, "cannot read the counters of a network namespace; it is left out of this scrape",
				"netns", ns.Name, "netns_inode", ns.Inode, "err", err)
			continue
		}
		if ok {
			read = append(read, ns)
		}
	}
	c.failing = failing
	// Ranked by harm (netnsRank), then inode, so the exported set only changes when a namespace overtakes
	// another.
	sort.Slice(read, func(i, j int) bool {
		if c := netnsRank(read[i]).compare(netnsRank(read[j])); c != 0 {
			return c > 0
		}
		return read[i].Ino < read[j].Ino
	})
	skipped := 0
	if len(read) > c.max {
		skipped = len(read) - c.max
		read = read[:c.max]
	}
	for _, ns := range read {
		for i, f := range netnsFields {
			// A field this kernel lacks stays absent, as in the netstat collector.
			if v, ok := ns.Stats.Get(f.counter); ok {
				ch <- prometheus.MustNewConstMetric(c.descs[i], prometheus.CounterValue, float64(v)*f.scale, ns.Name, ns.Inode)
			}
		}
	}
	if c.socks != nil {
		c.socks.update(ctx, read, ch)
	}
	ch <- prometheus.MustNewConstMetric(c.namespacesDesc, prometheus.GaugeValue, float64(len(found)))
	ch <- prometheus.MustNewConstMetric(c.skippedDesc, prometheus.GaugeValue, float64(skipped))
	ch <- prometheus.MustNewConstMetric(c.readErrorsDesc, prometheus.CounterValue, float64(c.readErrors))
	return nil
}

// netnsHarm is what ranks a namespace for the cap, in the harm model's order (docs/harm.md): data the
// kernel received and threw away, then receive-queue collapsing, then PruneCalled, which alone is only the
// kernel making room (often by growing a buffer).
type netnsHarm struct{ lost, collapsed, prune uint64 }

func netnsRank(ns *netns.Namespace) netnsHarm {
	get := func(c procnet.Counter) uint64 {
		v, _ := ns.Stats.Get(c)
		return v
	}
	var h netnsHarm
	for _, c := range []procnet.Counter{procnet.TCPRcvQDrop, procnet.OfoPruned, procnet.RcvPruned, procnet.TCPBacklogDrop} {
		h.lost += get(c)
	}
	h.collapsed, h.prune = get(procnet.TCPRcvCollapsed), get(procnet.PruneCalled)
	return h
}

func (a netnsHarm) compare(b netnsHarm) int {
	return cmp.Or(cmp.Compare(a.lost, b.lost), cmp.Compare(a.collapsed, b.collapsed), cmp.Compare(a.prune, b.prune))
}

//go:build linux

package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockbuf/sockbuf_exporter/bpf/drops"
	"github.com/sockbuf/sockbuf_exporter/sockdiag"
)

func init() {
	registerCollector("bpf", bpfHelp,
		false, func(cfg Config, logger *slog.Logger) (Collector, error) {
			if err := cfg.BPF.Validate(); err != nil {
				return nil, err
			}
			if err := cfg.Sockets.Validate(); err != nil {
				return nil, err
			}
			return newBPFCollector(cfg, logger, func() (socketDumper, error) { return sockdiag.Dial(nil) })
		})
}

// bpfCollector reads the tracer's counters once per scrape. The exporter never runs two scrapes of it at once
// (see flight); mu only orders Update against Close.
type bpfCollector struct {
	logger     *slog.Logger
	dial       func() (socketDumper, error)
	cgroupName func(uint64) string
	netns      uint32 // the exporter's own namespace, whose listening ports the programs are told

	mu      sync.Mutex
	tracer  *drops.Tracer // nil once closed
	client  socketDumper
	ports   []uint16 // listening ports of the last LISTEN dump, reused
	attempt int

	drops, grows, limits *bpfCounters

	dropsDesc, unattributedDesc, growDesc, limitDesc, lostDesc, missedDesc *prometheus.Desc
	hasGrow, hasLimit                                                      bool
}

// newBPFCollector opens the tracer. When it cannot be opened, the collector that comes back exports nothing
// and fails every scrape quietly, after one log line that names what is missing.
func newBPFCollector(cfg Config, logger *slog.Logger, dial func() (socketDumper, error)) (Collector, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	own, err := drops.OwnNetNS()
	if err != nil {
		return nil, fmt.Errorf("finding the exporter's network namespace: %w", err)
	}
	opts := drops.Options{MaxGroups: cfg.BPF.MapEntries}
	if cfg.BPF.OwnNetNS {
		opts.NetNS = own
	}
	tr, err := drops.Open(opts)
	if err != nil {
		return newUnavailable(logger, "the bpf collector cannot load its programs and exports nothing: "+missingWhat(err), err), nil
	}
	c := &bpfCollector{
		logger:     logger,
		dial:       dial,
		cgroupName: bpfCgroupNamer(cfg, logger),
		netns:      own,
		tracer:     tr,
		drops:      newBPFCounters(cfg.Sockets.MaxGroups),
		grows:      newBPFCounters(cfg.Sockets.MaxGroups),
		limits:     newBPFCounters(0),
		hasGrow:    true,
		hasLimit:   true,

		dropsDesc: bpfDropsSpec.Desc(), unattributedDesc: bpfUnattributedSpec.Desc(), growDesc: bpfGrowSpec.Desc(),
		limitDesc: bpfLimitSpec.Desc(), lostDesc: bpfLostSpec.Desc(), missedDesc: bpfMissedSpec.Desc(),
	}
	for _, tp := range tr.Missing() {
		switch tp {
		case "tcp_rcvbuf_grow":
			c.hasGrow = false
			logger.Info("the kernel has no tcp:tcp_rcvbuf_grow tracepoint (Linux 6.17+); sockbuf_tcp_rcvbuf_grow_total is absent")
		case "sock_exceed_buf_limit":
			c.hasLimit = false
			logger.Info("the kernel has no sock:sock_exceed_buf_limit tracepoint; sockbuf_socket_memory_limit_hits_total is absent")
		}
	}
	if !tr.Attributed() {
		logger.Warn("the kernel's kfree_skb tracepoint has no rx_sk argument (Linux 6.11+): every drop is counted in sockbuf_receive_drops_unattributed_total")
	}
	return c, nil
}

// missingWhat says in a few words what an Open error means the host lacks.
func missingWhat(err error) string {
	msg := err.Error()
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		return "eBPF tracing needs Linux"
	case errors.Is(err, os.ErrPermission) || strings.Contains(msg, "CAP_BPF"):
		return "it needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN); see deploy/systemd/bpf.conf"
	case strings.Contains(msg, "/sys/kernel/btf/vmlinux"):
		return "the kernel's BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF) is missing"
	case strings.Contains(msg, "tracepoint"):
		return "the kernel lacks the skb:kfree_skb tracepoint"
	}
	return "loading failed"
}

// Close detaches the programs and unloads them.
func (c *bpfCollector) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var err error
	if c.tracer != nil {
		err = c.tracer.Close()
		c.tracer = nil
	}
	if c.client != nil {
		err = errors.Join(err, c.client.Close())
		c.client = nil
	}
	return err
}

// Update tells the programs this namespace's listening ports, then reads and exports the counters.
func (c *bpfCollector) Update(ctx context.Context, ch chan<- prometheus.Metric) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tracer == nil {
		return errors.New("the bpf collector is closed")
	}
	if err := c.describeListening(ctx); err != nil {
		return err
	}
	s, err := c.tracer.Read()
	if err != nil {
		return fmt.Errorf("reading the BPF counters: %w", err)
	}
	c.emit(ch, &s)
	return nil
}

// describeListening dumps the LISTEN sockets of the exporter's namespace (the same small dump the sockets
// collector makes first) and hands their ports to the tracer.
func (c *bpfCollector) describeListening(ctx context.Context) error {
	if c.client == nil {
		cl, err := c.dial()
		if err != nil {
			return fmt.Errorf("opening sock_diag: %w", err)
		}
		c.client = cl
	}
	c.ports = c.ports[:0]
	c.attempt = 0
	_, err := c.client.DumpContext(ctx, sockdiag.Request{Family: sockdiag.FamilyUnspec, States: 1 << sockdiag.StateListen},
		func(s *sockdiag.Socket) error {
			if s.Attempt != c.attempt { // the kernel restarted the dump
				c.attempt, c.ports = s.Attempt, c.ports[:0]
			}
			if s.IsListen() {
				c.ports = append(c.ports, s.Src.Port())
			}
			return nil
		})
	if err != nil {
		return dumpError("LISTEN", err)
	}
	if err := c.tracer.SetListening(c.netns, c.ports); err != nil {
		return fmt.Errorf("telling the BPF programs the listening ports: %w", err)
	}
	return nil
}

// group is the labels of a kernel group key.
func (c *bpfCollector) group(role drops.Role, port uint16, cgroup uint64) bpfGroup {
	g := bpfGroup{role: role.String(), port: "unknown", cgroup: c.cgroupName(cgroup)}
	if role != drops.RoleUnknown {
		g.port = strconv.Itoa(int(port))
	}
	return g
}

func (c *bpfCollector) emit(ch chan<- prometheus.Metric, s *drops.Snapshot) {
	counter := func(d *prometheus.Desc, v uint64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), lv...)
	}
	c.drops.begin()
	for _, d := range s.Drops {
		k := kernelKey{reason: d.ReasonCode, role: uint8(d.Role), port: d.Port, cgroup: d.CgroupID, locked: d.RcvbufLocked}
		c.drops.add(k, bpfSeries{reason: d.Reason, locked: d.RcvbufLocked, group: c.group(d.Role, d.Port, d.CgroupID)}, d.Packets)
	}
	for _, x := range c.drops.finish() {
		g := x.series.group
		counter(c.dropsDesc, x.value, x.series.reason, g.role, g.port, g.cgroup, strconv.FormatBool(x.series.locked))
	}
	for _, u := range s.Unattributed {
		counter(c.unattributedDesc, u.Packets, u.Reason)
	}
	if c.hasGrow {
		c.grows.begin()
		for _, r := range s.RcvbufGrow {
			k := kernelKey{role: uint8(r.Role), port: r.Port, cgroup: r.CgroupID, locked: r.RcvbufLocked}
			c.grows.add(k, bpfSeries{locked: r.RcvbufLocked, group: c.group(r.Role, r.Port, r.CgroupID)}, r.Count)
		}
		for _, x := range c.grows.finish() {
			g := x.series.group
			counter(c.growDesc, x.value, g.role, g.port, g.cgroup, strconv.FormatBool(x.series.locked))
		}
	}
	if c.hasLimit {
		c.limits.begin()
		for _, m := range s.MemoryLimit {
			k := kernelKey{kind: uint8(m.Kind), cgroup: m.CgroupID}
			c.limits.add(k, bpfSeries{kind: m.Kind.String(), group: bpfGroup{cgroup: c.cgroupName(m.CgroupID)}}, m.Count)
		}
		for _, x := range c.limits.finish() {
			counter(c.limitDesc, x.value, x.series.kind, x.series.group.cgroup)
		}
	}
	lost := [...]uint64{s.Lost.Drops, s.Lost.Unattributed, s.Lost.RcvbufGrow, s.Lost.MemoryLimit}
	for i, n := range lost {
		if i == 2 && !c.hasGrow || i == 3 && !c.hasLimit {
			continue
		}
		counter(c.lostDesc, n, lostMaps[i])
	}
	counter(c.missedDesc, s.Missed)
}

package collector

import (
	"context"
	"fmt"
	"log/slog"

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
// socket is known when the second, full dump streams through the aggregator. The bpf engine
// (sockets_engine.go) reads the same sockets another way and shares everything after the per-socket step.

func init() {
	registerCollector("sockets",
		"receive queues and buffers of every TCP socket (netlink inet_diag, or a BPF iterator: --collector.sockets.engine), summed per role, port, cgroup and process",
		true, func(cfg Config, logger *slog.Logger) (Collector, error) {
			c, err := newSocketsCollector(cfg, logger, func() (socketDumper, error) { return sockdiag.Dial(nil) })
			if err != nil {
				return nil, err
			}
			if err := c.useEngine(cfg.Sockets, openWalker); err != nil {
				return nil, err
			}
			return c, nil
		})
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
	walker  socketWalker // the bpf engine; nil: the netlink dumps (sockets_engine.go)
	agg     *sockagg.Aggregator
	cgroups *attrib.CgroupResolver // nil without cgroup attribution
	procs   *processAttribution    // nil without process attribution
	attempt int                    // Socket.Attempt of the dump in progress
	hasDrop bool                   // the kernel's skmeminfo has the drops field
	hasWnd  bool                   // the zero-window counts are right: tcp_info has tcpi_rcv_wnd (see sockets_window.go)
	lookups bool                   // full sockets are looked up for their window (no tcp_info in the dump)

	unchecked       int               // full sockets whose window this scrape did not check
	ids             []sockdiag.Socket // the full sockets to look up, reused
	windowUnchecked *prometheus.Desc

	retries, inconsistent uint64

	onListener, onSocket func(*sockdiag.Socket) error // bound once, so a scrape allocates no closure

	sockets, recvQueue, recvQueueMax, rmemAlloc, rcvbuf, full, zeroWindow, drops, sendQueue *prometheus.Desc
	fill, size, listenLength, listenLimit, byState, folded, dumpRetries, dumpInconsistent   *prometheus.Desc
	locked, lockedBytes, lockedSize                                                         *prometheus.Desc // bpf engine only
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
		locked:           rcvbufLockedSpec.Desc(), lockedBytes: rcvbufLockedBytesSpec.Desc(), lockedSize: rcvbufLockedSizeSpec.Desc(),
	}
	if sc.TCPInfo {
		c.ext |= sockdiag.ExtInfo
	} else {
		c.lookups, c.hasWnd = true, sockdiag.KernelHasRcvWnd()
		c.windowUnchecked = windowUncheckedSpec.Desc()
		c.agg.RecordFull(maxWindowLookups)
	}
	c.onListener, c.onSocket = c.listener, c.socket
	c.cgroups = CgroupResolver(cfg, logger)
	if sc.ProcessAttribution {
		c.procs = newProcessAttribution(cfg.ProcPath, logger)
	}
	return c, nil
}

// Update runs one scrape; the context's deadline interrupts a dump in progress.
func (c *socketsCollector) Update(ctx context.Context, ch chan<- prometheus.Metric) error {
	if c.walker != nil {
		if err := c.walk(ctx); err != nil {
			return err
		}
		c.emit(ch)
		return nil
	}
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
	if c.lookups {
		c.checkWindows(ctx)
	}
	c.agg.Finish(cgroupName, processName)
	c.emit(ch)
	if c.lookups {
		c.emitUnchecked(ch)
	}
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
		if c.walker != nil {
			gauge(c.locked, st.RcvbufLocked, lv)
			gauge(c.lockedBytes, st.RcvbufLockedBytes, lv)
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
	if c.walker != nil {
		locked := a.Locked()
		ch <- prometheus.MustNewConstHistogram(c.lockedSize, locked.Count(), locked.Sum(), locked.Cumulative())
	}
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

// CgroupResolver names cgroup ids for the sockets and bpf collectors (and diagnose's evidence) alike, with --collector.sockets.cgroup-label's
// policy: nil without cgroup attribution or without a cgroup v2 hierarchy (every group then has cgroup="").
func CgroupResolver(cfg Config, logger *slog.Logger) *attrib.CgroupResolver {
	sc := cfg.Sockets
	if !sc.CgroupAttribution {
		return nil
	}
	root := sc.CgroupRoot
	if root == "" {
		var err error
		if root, err = attrib.FindCgroup2Mount(cfg.ProcPath); err != nil {
			logger.Warn("cannot find the cgroup v2 mount; the cgroup label stays empty", "err", err)
		}
	}
	if root == "" {
		logger.Info("no cgroup v2 hierarchy mounted; the cgroup label stays empty")
		return nil
	}
	return attrib.NewCgroupResolver(root, sc.CgroupLabel)
}

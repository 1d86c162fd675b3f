package collector

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockbuf/sockbuf_exporter/memcg"
)

// The memcg collector exports the socket memory of memory cgroups that have a limit it can hit: every TCP
// socket is charged to the memory cgroup of the task that created or accepted it (sk->sk_memcg), and a
// charge the cgroup refuses makes the kernel drop what arrives instead of queueing it. Package memcg finds
// and reads the cgroups; this file maps them to metrics, one series per cgroup labelled with its path in
// the hierarchy.
//
// On by default: it only reads a few cgroupfs files per cgroup (world-readable, no privileges), the walk is
// bounded (memcgMaxVisit directories, memcg.MaxDepth levels), it exports only cgroups with a limit (v1:
// memory.kmem.tcp.limit_in_bytes written, rare; v2: memory.max set) and at most MaxCgroups of them. Where no
// memory hierarchy is mounted (a container without /sys/fs/cgroup, `ip netns exec`, a cgroup v2 host without
// the memory controller) it logs that once and exports nothing, succeeding: nothing is broken, and
// SockbufCollectorFailing must not page for it. It looks for the hierarchy again on every scrape.
//
// Cap: when more cgroups qualify than MaxCgroups, those closest to their limit are exported (v1: the
// greater of usage and peak over the TCP limit; v2: memory.current over memory.max), then by path; the
// others are counted in sockbuf_memcg_cgroups_skipped{reason="max_cgroups"}.

// MemcgConfig configures the memcg collector.
type MemcgConfig struct {
	// MaxCgroups caps the number of cgroups exported.
	MaxCgroups int
}

// DefaultMemcgMaxCgroups is the default of MemcgConfig.MaxCgroups.
const DefaultMemcgMaxCgroups = 100

// memcgMaxVisit bounds the cgroup directories one scrape reads. A Kubernetes node has a few per pod and a
// systemd host a few hundred in all.
const memcgMaxVisit = 10000

// Validate checks the configuration. Zero is an error, not the default: the operator who typed 0 did not
// ask for 100.
func (c MemcgConfig) Validate() error {
	if c.MaxCgroups < 1 {
		return fmt.Errorf("--collector.memcg.max-cgroups must be at least 1, got %d", c.MaxCgroups)
	}
	return nil
}

const memcgHelp = "socket memory of memory cgroups with a limit (cgroup v1 memory.kmem.tcp.*, v2 memory.current, memory.max, memory.stat sock, memory.events max), per cgroup"

func init() {
	registerCollector("memcg", memcgHelp, true, func(cfg Config, logger *slog.Logger) (Collector, error) {
		if err := cfg.Memcg.Validate(); err != nil {
			return nil, err
		}
		return newMemcgCollector(cfg, logger), nil
	})
}

const memcgV1Notes = "Only cgroups whose memory.kmem.tcp.limit_in_bytes was written: the kernel accounts a cgroup's TCP " +
	"memory on cgroup v1 only then (mem_cgroup_sk_alloc skips the others). cgroup is the path in the v1 memory hierarchy, " +
	"as /proc/<pid>/cgroup names it. "

const memcgV2Notes = "Only cgroups with a memory.max of their own; a cgroup without one is limited by an ancestor, whose " +
	"figures include it (v2 statistics are recursive). cgroup is the path in the unified hierarchy. "

var (
	memcgTCPUsageSpec = spec("memcg", MetricSpec{
		Name: "memcg_tcp_memory_bytes", Type: Gauge, Unit: "bytes", Labels: []string{"cgroup"},
		Help: "TCP socket buffers charged to this cgroup v1 memory cgroup now (memory.kmem.tcp.usage_in_bytes).",
		Notes: memcgV1Notes + "Every socket is charged to the memory cgroup of the task that created or accepted it. " +
			"mem_cgroup_charge_skmem (mm/memcontrol.c, through memcg1_charge_skmem in mm/memcontrol-v1.c) refuses a charge " +
			"that would take this above the limit, and __sk_mem_raise_allocated (net/core/sock.c) then refuses the memory: " +
			"received data is dropped (TcpExt TCPRcvQDrop). Some charges are forced past the limit (the first segment of an empty receive queue, " +
			"sk_forced_mem_schedule; a send queue at its sndbuf), so it can read above the limit.",
		Source: "memory.kmem.tcp.usage_in_bytes",
	})
	memcgTCPLimitSpec = spec("memcg", MetricSpec{
		Name: "memcg_tcp_memory_limit_bytes", Type: Gauge, Unit: "bytes", Labels: []string{"cgroup"},
		Help:   "Limit of the TCP socket buffers of this cgroup v1 memory cgroup (memory.kmem.tcp.limit_in_bytes), beyond which the kernel refuses receive memory and drops data.",
		Notes:  memcgV1Notes + "The kernel rounds the written value down to whole pages.",
		Source: "memory.kmem.tcp.limit_in_bytes",
	})
	memcgTCPMaxUsageSpec = spec("memcg", MetricSpec{
		Name: "memcg_tcp_memory_max_usage_bytes", Type: Gauge, Unit: "bytes", Labels: []string{"cgroup"},
		Help: "Highest TCP socket memory of this cgroup v1 memory cgroup since it was created or reset (memory.kmem.tcp.max_usage_in_bytes).",
		Notes: memcgV1Notes + "At or above the limit, a charge was refused at least once: usage only passes the limit " +
			"through a charge forced after a refused one (memcg1_charge_skmem). It is the only trace of a refusal on " +
			"recent kernels: memory.kmem.tcp.failcnt is not counted for TCP memory there (page_counter track_failcnt " +
			"is off for tcpmem), and it is not exported. A high-water mark: it rises on the first hit and on higher " +
			"peaks, not on every refusal; sockbuf_memcg_tcp_memory_bytes shows whether the cgroup is still at its limit.",
		Source: "memory.kmem.tcp.max_usage_in_bytes",
	})
	memcgSockSpec = spec("memcg", MetricSpec{
		Name: "memcg_socket_memory_bytes", Type: Gauge, Unit: "bytes", Labels: []string{"cgroup"},
		Help: "Socket buffers charged to this cgroup v2 memory cgroup and its descendants now (memory.stat sock).",
		Notes: memcgV2Notes + "Socket memory counts against memory.max like any other memory, but unlike page cache it " +
			"cannot be reclaimed: a cgroup at its limit with much of it in socket buffers reclaims with little success, " +
			"which puts its sockets under memory pressure (vmpressure), and that holds their buffers down.",
		Source: "memory.stat sock",
	})
	memcgCurrentSpec = spec("memcg", MetricSpec{
		Name: "memcg_memory_bytes", Type: Gauge, Unit: "bytes", Labels: []string{"cgroup"},
		Help:   "Memory charged to this cgroup v2 memory cgroup and its descendants now, socket buffers included (memory.current).",
		Notes:  memcgV2Notes,
		Source: "memory.current",
	})
	memcgMaxSpec = spec("memcg", MetricSpec{
		Name: "memcg_memory_limit_bytes", Type: Gauge, Unit: "bytes", Labels: []string{"cgroup"},
		Help:   "Memory limit of this cgroup v2 memory cgroup, socket buffers included (memory.max).",
		Notes:  memcgV2Notes + "Kubernetes sets it from a container's or pod's memory limit, systemd from MemoryMax=.",
		Source: "memory.max",
	})
	memcgEventsMaxSpec = spec("memcg", MetricSpec{
		Name: "memcg_memory_max_events_total", Type: Counter, Labels: []string{"cgroup"},
		Help: "Times a charge found this cgroup v2 memory cgroup or a descendant at its memory.max and had to reclaim or was forced over it (memory.events max).",
		Notes: memcgV2Notes + "try_charge_memcg (mm/memcontrol.c) counts it when a charge would exceed memory.max: before " +
			"direct reclaim, or when the charge is forced past the limit, as socket charges in softirq are (GFP_ATOMIC). " +
			"It also rises when page cache fills the limit and is reclaimed, which is harmless: read it with " +
			"sockbuf_memcg_socket_memory_bytes.",
		Source: "memory.events max",
	})
	memcgSkippedSpec = spec("memcg", MetricSpec{
		Name: "memcg_cgroups_skipped", Type: Gauge, Labels: []string{"reason"},
		Help: "Memory cgroups with a limit not exported on this scrape: beyond --collector.memcg.max-cgroups (reason=\"max_cgroups\") or unreadable (reason=\"unreadable\").",
		Notes: "max_cgroups keeps the cgroups closest to their limit. unreadable counts cgroup directories whose " +
			"directory or files could not be read or parsed, for example one removed during the walk.",
		Source: "the exporter's walk of the memory cgroup hierarchy",
	})
	memcgTruncatedSpec = spec("memcg", MetricSpec{
		Name: "memcg_walk_truncated", Type: Gauge,
		Help:   "1 if the walk of the memory cgroup hierarchy stopped at its bound (10000 cgroups, 32 levels) with cgroups left unseen, else 0.",
		Source: "the exporter's walk of the memory cgroup hierarchy",
	})
)

// memcgCollector exports the socket memory of limited memory cgroups.
type memcgCollector struct {
	procPath   string
	maxCgroups int
	logger     *slog.Logger

	newReader func(procPath, root string) (*memcg.Reader, error)
	root      string        // --collector.sockets.cgroup-root
	reader    *memcg.Reader // nil until a hierarchy is found
	logOnce   sync.Once

	tcpUsage, tcpLimit, tcpMaxUsage *prometheus.Desc
	sock, current, max, eventsMax   *prometheus.Desc
	skipped, truncated              *prometheus.Desc
}

func newMemcgCollector(cfg Config, logger *slog.Logger) *memcgCollector {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &memcgCollector{
		procPath: cfg.ProcPath, maxCgroups: cfg.Memcg.MaxCgroups, logger: logger, newReader: memcg.Open, root: cfg.Sockets.CgroupRoot,
		tcpUsage: memcgTCPUsageSpec.Desc(), tcpLimit: memcgTCPLimitSpec.Desc(), tcpMaxUsage: memcgTCPMaxUsageSpec.Desc(),
		sock: memcgSockSpec.Desc(), current: memcgCurrentSpec.Desc(), max: memcgMaxSpec.Desc(), eventsMax: memcgEventsMaxSpec.Desc(),
		skipped: memcgSkippedSpec.Desc(), truncated: memcgTruncatedSpec.Desc(),
	}
}

type memcgEntry struct {
	path  string
	stats memcg.Stats
	fill  float64 // how close to its limit, for the cap
}

func (c *memcgCollector) Update(ctx context.Context, ch chan<- prometheus.Metric) error {
	if c.reader == nil {
		r, err := c.newReader(c.procPath, c.root)
		if err != nil {
			c.logOnce.Do(func() {
				level := slog.LevelInfo
				if !errors.Is(err, memcg.ErrNoMemoryCgroup) {
					level = slog.LevelWarn
				}
				c.logger.Log(ctx, level, "no memory cgroup hierarchy; the memcg collector exports nothing until one is mounted", "err", err)
			})
			return nil
		}
		c.reader = r
		c.logger.Info("reading memory cgroups", "version", int(r.Version()))
	}
	var found []memcgEntry
	res, err := c.reader.Walk(ctx, memcgMaxVisit, func(path string, s memcg.Stats) error {
		found = append(found, memcgEntry{path: path, stats: s, fill: fill(s)})
		return nil
	})
	if err != nil {
		return fmt.Errorf("walking the memory cgroups: %w", err)
	}
	slices.SortFunc(found, func(a, b memcgEntry) int {
		return cmp.Or(cmp.Compare(b.fill, a.fill), cmp.Compare(a.path, b.path))
	})
	skipped := 0
	if len(found) > c.maxCgroups {
		skipped = len(found) - c.maxCgroups
		found = found[:c.maxCgroups]
	}
	gauge := func(d *prometheus.Desc, v memcg.Value, path string) {
		if v.OK {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v.V), path)
		}
	}
	for _, e := range found {
		s := e.stats
		if s.Version == memcg.V1 {
			gauge(c.tcpUsage, s.TCPUsage, e.path)
			gauge(c.tcpLimit, s.TCPLimit, e.path)
			gauge(c.tcpMaxUsage, s.TCPMaxUsage, e.path)
			continue
		}
		gauge(c.sock, s.Sock, e.path)
		gauge(c.current, s.Current, e.path)
		gauge(c.max, s.Max, e.path)
		if s.EventsMax.OK {
			ch <- prometheus.MustNewConstMetric(c.eventsMax, prometheus.CounterValue, float64(s.EventsMax.V), e.path)
		}
	}
	ch <- prometheus.MustNewConstMetric(c.skipped, prometheus.GaugeValue, float64(skipped), "max_cgroups")
	ch <- prometheus.MustNewConstMetric(c.skipped, prometheus.GaugeValue, float64(res.Unreadable), "unreadable")
	truncated := 0.0
	if res.Truncated {
		truncated = 1
	}
	ch <- prometheus.MustNewConstMetric(c.truncated, prometheus.GaugeValue, truncated)
	return nil
}

// fill is how close a cgroup is to its limit: v1 the greater of usage and peak over the TCP limit, v2
// memory.current over memory.max.
func fill(s memcg.Stats) float64 {
	ratio := func(v, limit memcg.Value) float64 {
		if !v.OK || !limit.OK || limit.V == 0 {
			return 0
		}
		return float64(v.V) / float64(limit.V)
	}
	if s.Version == memcg.V1 {
		return max(ratio(s.TCPUsage, s.TCPLimit), ratio(s.TCPMaxUsage, s.TCPLimit))
	}
	return ratio(s.Current, s.Max)
}

package collector

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockbuf/sockbuf_exporter/procnet"
)

func init() {
	registerCollector("sockstat", "TCP and UDP memory against tcp_mem and udp_mem, and TCP socket counts, from /proc/net/sockstat", true,
		func(cfg Config, _ *slog.Logger) (Collector, error) { return newSockstatCollector(cfg), nil })
}

// sockstatField is one exported value of /proc/net/sockstat.
type sockstatField struct {
	value procnet.SockstatValue
	pages bool // memory in pages, exported in bytes
	spec  MetricSpec
}

func sockstatGauge(v procnet.SockstatValue, metric, unit, help string) sockstatField {
	return sockstatField{value: v, pages: unit == "bytes", spec: spec("sockstat", MetricSpec{
		Name: metric, Type: Gauge, Unit: unit, Help: help,
		Source: fmt.Sprintf("/proc/net/sockstat %s %s", v.Proto(), v.Key()),
	})}
}

// sockstatFields are the sockstat values exported; inuse and tw are per network namespace, the rest
// host-wide (net/ipv4/proc.c, sockstat_seq_show).
var sockstatFields = []sockstatField{
	sockstatGauge(procnet.TCPInUse, "tcp_sockets_inuse", "",
		"TCP sockets in use (/proc/net/sockstat TCP inuse); this network namespace only."),
	sockstatGauge(procnet.TCPOrphan, "tcp_sockets_orphan", "",
		"Orphaned TCP sockets, closed but still holding memory (/proc/net/sockstat TCP orphan); host-wide."),
	sockstatGauge(procnet.TCPTimeWait, "tcp_sockets_time_wait", "",
		"TCP sockets in TIME-WAIT (/proc/net/sockstat TCP tw); this network namespace only."),
	sockstatGauge(procnet.TCPAlloc, "tcp_sockets_alloc", "",
		"TCP sockets allocated, any state but TIME-WAIT (/proc/net/sockstat TCP alloc); host-wide."),
	sockstatGauge(procnet.TCPMemPages, "tcp_memory_bytes", "bytes",
		"Memory charged to TCP sockets (/proc/net/sockstat TCP mem × page size); host-wide."),
	sockstatGauge(procnet.UDPMemPages, "udp_memory_bytes", "bytes",
		"Memory charged to UDP sockets (/proc/net/sockstat UDP mem × page size); host-wide."),
}

var (
	tcpMemThresholdSpec = spec("sockstat", MetricSpec{
		Name: "tcp_mem_threshold_bytes", Type: Gauge, Unit: "bytes", Labels: []string{"level"},
		Help:   "net.ipv4.tcp_mem × page size, host-wide: above pressure TCP shrinks buffers, at max it drops data.",
		Notes:  "Absent outside the host network namespace, where the file does not exist.",
		Source: "/proc/sys/net/ipv4/tcp_mem × page size",
	})
	udpMemThresholdSpec = spec("sockstat", MetricSpec{
		Name: "udp_mem_threshold_bytes", Type: Gauge, Unit: "bytes", Labels: []string{"level"},
		Help:   "net.ipv4.udp_mem × page size, host-wide.",
		Notes:  "Absent outside the host network namespace, where the file does not exist.",
		Source: "/proc/sys/net/ipv4/udp_mem × page size",
	})
	tcpMaxOrphansSpec = spec("sockstat", MetricSpec{
		Name: "tcp_max_orphans", Type: Gauge,
		Help:   "net.ipv4.tcp_max_orphans: orphans beyond it are reset.",
		Notes:  "Absent outside the host network namespace, where the file does not exist.",
		Source: "/proc/sys/net/ipv4/tcp_max_orphans",
	})
)

// memLevels are the label values of the tcp_mem and udp_mem thresholds, in the file's order.
var memLevels = [3]string{"min", "pressure", "max"}

// sockstatCollector exports socket counts and protocol memory from /proc/net/sockstat and compares them with
// the tcp_mem, udp_mem and tcp_max_orphans limits.
type sockstatCollector struct {
	fs                                     *procnet.FS
	pageSize                               float64
	descs                                  []*prometheus.Desc
	tcpMemDesc, udpMemDesc, maxOrphansDesc *prometheus.Desc
}

func newSockstatCollector(cfg Config) *sockstatCollector {
	c := &sockstatCollector{
		fs:             cfg.fs(),
		pageSize:       float64(os.Getpagesize()),
		tcpMemDesc:     tcpMemThresholdSpec.Desc(),
		udpMemDesc:     udpMemThresholdSpec.Desc(),
		maxOrphansDesc: tcpMaxOrphansSpec.Desc(),
	}
	for _, f := range sockstatFields {
		c.descs = append(c.descs, f.spec.Desc())
	}
	return c
}

func (c *sockstatCollector) Update(_ context.Context, ch chan<- prometheus.Metric) error {
	var s procnet.Sockstat
	if err := c.fs.Sockstat(&s); err != nil {
		return err
	}
	// The limits are read before anything is sent, so that a garbled one fails the collector whole.
	var limits [3]procnet.SysctlValue
	for i, k := range []procnet.Sysctl{procnet.TCPMem, procnet.UDPMem, procnet.TCPMaxOrphans} {
		v, err := c.fs.Sysctl(k)
		if err != nil {
			return err
		}
		limits[i] = v
	}
	for i, f := range sockstatFields {
		n, ok := s.Get(f.value)
		if !ok {
			continue
		}
		v := float64(n)
		if f.pages {
			v *= c.pageSize
		}
		ch <- prometheus.MustNewConstMetric(c.descs[i], prometheus.GaugeValue, v)
	}
	for i, d := range []*prometheus.Desc{c.tcpMemDesc, c.udpMemDesc} {
		if limits[i].OK {
			for j, level := range memLevels {
				ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(limits[i].Values[j])*c.pageSize, level)
			}
		}
	}
	if limits[2].OK {
		ch <- prometheus.MustNewConstMetric(c.maxOrphansDesc, prometheus.GaugeValue, float64(limits[2].Values[0]))
	}
	return nil
}

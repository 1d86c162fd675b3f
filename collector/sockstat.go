package collector

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
)

func init() {
	registerCollector("sockstat", "TCP and UDP memory against tcp_mem and udp_mem, and TCP socket counts, from /proc/net/sockstat", true,
		func(cfg Config, _ *slog.Logger) (Collector, error) { return newSockstatCollector(cfg), nil })
}

// sockstatField is one value of /proc/net/sockstat ("TCP: inuse 1 orphan 0 tw 1 alloc 1 mem 0").
type sockstatField struct {
	proto string
	key   string
	pages bool // memory in pages, exported in bytes
	spec  MetricSpec
}

func sockstatGauge(proto, key, metric, unit, help string) sockstatField {
	return sockstatField{proto: proto, key: key, pages: unit == "bytes", spec: spec("sockstat", MetricSpec{
		Name: metric, Type: Gauge, Unit: unit, Help: help,
		Source: fmt.Sprintf("/proc/net/sockstat %s %s", proto, key),
	})}
}

// sockstatFields are the sockstat values exported. Their scope differs (see net/ipv4/proc.c,
// sockstat_seq_show): inuse and tw are counted per network namespace, while orphan, alloc and mem are global.
var sockstatFields = []sockstatField{
	sockstatGauge("TCP", "inuse", "tcp_sockets_inuse", "",
		"TCP sockets in use (/proc/net/sockstat TCP inuse); this network namespace only."),
	sockstatGauge("TCP", "orphan", "tcp_sockets_orphan", "",
		"Orphaned TCP sockets, closed but still holding memory (/proc/net/sockstat TCP orphan); host-wide."),
	sockstatGauge("TCP", "tw", "tcp_sockets_time_wait", "",
		"TCP sockets in TIME-WAIT (/proc/net/sockstat TCP tw); this network namespace only."),
	sockstatGauge("TCP", "alloc", "tcp_sockets_alloc", "",
		"TCP sockets allocated, any state but TIME-WAIT (/proc/net/sockstat TCP alloc); host-wide."),
	sockstatGauge("TCP", "mem", "tcp_memory_bytes", "bytes",
		"Memory charged to TCP sockets (/proc/net/sockstat TCP mem × page size); host-wide."),
	sockstatGauge("UDP", "mem", "udp_memory_bytes", "bytes",
		"Memory charged to UDP sockets (/proc/net/sockstat UDP mem × page size); host-wide."),
}

const maxSockstatFields = 8

var sockstatWant = func() []protoFields {
	if len(sockstatFields) > maxSockstatFields {
		panic("sockstatFields has more than maxSockstatFields entries")
	}
	var want []protoFields
	for i, f := range sockstatFields {
		want = addWanted(want, f.proto, f.key, i)
	}
	return want
}()

var (
	tcpMemThresholdSpec = spec("sockstat", MetricSpec{
		Name: "tcp_mem_threshold_bytes", Type: Gauge, Unit: "bytes", Labels: []string{"level"},
		Help:   "net.ipv4.tcp_mem × page size, host-wide: above pressure TCP shrinks buffers, at max it drops data. Absent outside the host network namespace.",
		Source: "/proc/sys/net/ipv4/tcp_mem × page size",
	})
	udpMemThresholdSpec = spec("sockstat", MetricSpec{
		Name: "udp_mem_threshold_bytes", Type: Gauge, Unit: "bytes", Labels: []string{"level"},
		Help:   "net.ipv4.udp_mem × page size, host-wide. Absent outside the host network namespace.",
		Source: "/proc/sys/net/ipv4/udp_mem × page size",
	})
	tcpMaxOrphansSpec = spec("sockstat", MetricSpec{
		Name: "tcp_max_orphans", Type: Gauge,
		Help:   "net.ipv4.tcp_max_orphans: orphans beyond it are reset. Absent outside the host network namespace.",
		Source: "/proc/sys/net/ipv4/tcp_max_orphans",
	})
)

// memLevels are the label values of the tcp_mem and udp_mem thresholds, in the file's order.
var memLevels = [3]string{"min", "pressure", "max"}

// sockstatCollector exports socket counts and protocol memory from /proc/net/sockstat and compares them with
// the tcp_mem, udp_mem and tcp_max_orphans limits.
type sockstatCollector struct {
	pageSize                               float64
	sockstat, tcpMem, udpMem, maxOrphans   *procFile
	descs                                  []*prometheus.Desc
	tcpMemDesc, udpMemDesc, maxOrphansDesc *prometheus.Desc
}

func newSockstatCollector(cfg Config) *sockstatCollector {
	c := &sockstatCollector{
		pageSize:       float64(os.Getpagesize()),
		sockstat:       newProcFile(filepath.Join(cfg.ProcPath, "net", "sockstat")),
		tcpMem:         newProcFile(filepath.Join(cfg.ProcPath, "sys", "net", "ipv4", "tcp_mem")),
		udpMem:         newProcFile(filepath.Join(cfg.ProcPath, "sys", "net", "ipv4", "udp_mem")),
		maxOrphans:     newProcFile(filepath.Join(cfg.ProcPath, "sys", "net", "ipv4", "tcp_max_orphans")),
		tcpMemDesc:     tcpMemThresholdSpec.Desc(),
		udpMemDesc:     udpMemThresholdSpec.Desc(),
		maxOrphansDesc: tcpMaxOrphansSpec.Desc(),
	}
	for _, f := range sockstatFields {
		c.descs = append(c.descs, f.spec.Desc())
	}
	closeWhenUnreachable(c, c.sockstat, c.tcpMem, c.udpMem, c.maxOrphans)
	return c
}

func (c *sockstatCollector) Update(ch chan<- prometheus.Metric) error {
	var (
		vals [maxSockstatFields]uint64
		have [maxSockstatFields]bool
	)
	buf := getBuf()
	defer putBuf(buf)
	data, err := c.sockstat.read(buf)
	if err != nil {
		return err
	}
	if err := parseSockstat(data, sockstatWant, vals[:], have[:]); err != nil {
		return fmt.Errorf("parsing %s: %w", c.sockstat.path, err)
	}

	// The limits are read before anything is sent, so that a garbled one fails the collector whole.
	var tcpMem, udpMem [3]int64
	var maxOrphans [1]int64
	haveTCPMem, err := readSysctl(c.tcpMem, buf, tcpMem[:], false)
	if err != nil {
		return err
	}
	haveUDPMem, err := readSysctl(c.udpMem, buf, udpMem[:], false)
	if err != nil {
		return err
	}
	haveMaxOrphans, err := readSysctl(c.maxOrphans, buf, maxOrphans[:], false)
	if err != nil {
		return err
	}

	for i, f := range sockstatFields {
		if !have[i] {
			continue
		}
		v := float64(vals[i])
		if f.pages {
			v *= c.pageSize
		}
		ch <- prometheus.MustNewConstMetric(c.descs[i], prometheus.GaugeValue, v)
	}
	if haveTCPMem {
		for i, level := range memLevels {
			ch <- prometheus.MustNewConstMetric(c.tcpMemDesc, prometheus.GaugeValue, float64(tcpMem[i])*c.pageSize, level)
		}
	}
	if haveUDPMem {
		for i, level := range memLevels {
			ch <- prometheus.MustNewConstMetric(c.udpMemDesc, prometheus.GaugeValue, float64(udpMem[i])*c.pageSize, level)
		}
	}
	if haveMaxOrphans {
		ch <- prometheus.MustNewConstMetric(c.maxOrphansDesc, prometheus.GaugeValue, float64(maxOrphans[0]))
	}
	return nil
}

// parseSockstat parses /proc/net/sockstat, lines of "PROTO: key value key value ...". It stores the wanted
// values in vals and sets have; a TCP line is required, since every kernel has one.
func parseSockstat(data []byte, want []protoFields, vals []uint64, have []bool) error {
	sawTCP := false
	for len(data) > 0 {
		line, rest, err := nextLine(data)
		if err != nil {
			return err
		}
		data = rest
		proto, kvs, ok := cutProto(line)
		if !ok {
			return fmt.Errorf("line %.40q does not start with \"PROTO:\"", line)
		}
		if string(proto) == "TCP" {
			sawTCP = true
		}
		var wanted map[string]int
		for _, w := range want {
			if w.proto == string(proto) {
				wanted = w.fields
			}
		}
		if wanted == nil {
			continue
		}
		for {
			var key, value []byte
			key, kvs = nextField(kvs)
			if len(key) == 0 {
				break
			}
			value, kvs = nextField(kvs)
			if len(value) == 0 {
				return fmt.Errorf("%s: key %s without a value", proto, key)
			}
			idx, ok := wanted[string(key)]
			if !ok {
				continue
			}
			if have[idx] {
				return fmt.Errorf("%s: key %s appears twice", proto, key)
			}
			v, err := parseUint(value)
			if err != nil {
				return fmt.Errorf("%s %s: %w", proto, key, err)
			}
			vals[idx], have[idx] = v, true
		}
	}
	if !sawTCP {
		return errors.New("no TCP line")
	}
	return nil
}

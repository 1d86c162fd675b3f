package collector

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockbuf/sockbuf_exporter/procnet"
)

func init() {
	registerCollector("sysctl", "socket buffer and backlog sysctls from /proc/sys/net", true,
		func(cfg Config, _ *slog.Logger) (Collector, error) { return newSysctlCollector(cfg), nil })
}

// sysctlSetting is one exported setting. A setting with several values (tcp_rmem) becomes one series per
// value, labelled by the label values in values.
type sysctlSetting struct {
	sysctl procnet.Sysctl
	values []string // label values, one per number in the file; nil for a single number
	spec   MetricSpec
}

func sysctlGauge(s procnet.Sysctl, metric, unit, help string) sysctlSetting {
	return sysctlSetting{sysctl: s, spec: spec("sysctl", MetricSpec{
		Name: metric, Type: Gauge, Unit: unit, Help: help, Source: "/proc/sys/" + s.Path(),
	})}
}

func sysctlTriple(s procnet.Sysctl, metric, help string) sysctlSetting {
	return sysctlSetting{sysctl: s, values: []string{"min", "default", "max"}, spec: spec("sysctl", MetricSpec{
		Name: metric, Type: Gauge, Unit: "bytes", Labels: []string{"setting"}, Help: help, Source: "/proc/sys/" + s.Path(),
	})}
}

// sysctlSettings are the receive-path settings people tune. In a network namespace other than the host's,
// some of them do not exist; those are left out and the collector still succeeds.
var sysctlSettings = []sysctlSetting{
	sysctlGauge(procnet.RmemMax, "net_core_rmem_max_bytes", "bytes",
		"net.core.rmem_max: the largest SO_RCVBUF an application may set."),
	sysctlGauge(procnet.RmemDefault, "net_core_rmem_default_bytes", "bytes",
		"net.core.rmem_default: receive buffer of non-TCP sockets without SO_RCVBUF."),
	sysctlGauge(procnet.WmemMax, "net_core_wmem_max_bytes", "bytes",
		"net.core.wmem_max: the largest SO_SNDBUF an application may set."),
	sysctlGauge(procnet.WmemDefault, "net_core_wmem_default_bytes", "bytes",
		"net.core.wmem_default: send buffer of non-TCP sockets without SO_SNDBUF."),
	sysctlTriple(procnet.TCPRmem, "tcp_rmem_bytes",
		"net.ipv4.tcp_rmem: TCP receive buffer floor (min), initial size (default) and auto-tuning limit (max)."),
	sysctlTriple(procnet.TCPWmem, "tcp_wmem_bytes",
		"net.ipv4.tcp_wmem: TCP send buffer floor (min), initial size (default) and auto-tuning limit (max)."),
	sysctlGauge(procnet.NetdevMaxBacklog, "net_core_netdev_max_backlog", "",
		"net.core.netdev_max_backlog: per-CPU input queue length, host-wide."),
	sysctlGauge(procnet.Somaxconn, "net_core_somaxconn", "",
		"net.core.somaxconn: the largest accept queue a listen() gets."),
	sysctlGauge(procnet.TCPWindowScaling, "tcp_window_scaling", "",
		"net.ipv4.tcp_window_scaling: 1 if window scaling is on (else windows stop at 64 KiB)."),
	sysctlGauge(procnet.TCPModerateRcvbuf, "tcp_moderate_rcvbuf", "",
		"net.ipv4.tcp_moderate_rcvbuf: 1 if receive buffer auto-tuning is on."),
	sysctlGauge(procnet.TCPAdvWinScale, "tcp_adv_win_scale", "",
		"net.ipv4.tcp_adv_win_scale: share of the receive buffer kept as overhead, not window (unused since Linux 6.6)."),
}

type sysctlCollector struct {
	fs    *procnet.FS
	descs []*prometheus.Desc
}

func newSysctlCollector(cfg Config) *sysctlCollector {
	c := &sysctlCollector{fs: cfg.fs()}
	for _, s := range sysctlSettings {
		c.descs = append(c.descs, s.spec.Desc())
	}
	return c
}

func (c *sysctlCollector) Update(_ context.Context, ch chan<- prometheus.Metric) error {
	var all procnet.Sysctls
	if err := c.fs.Sysctls(&all); err != nil {
		return err
	}
	for i, s := range sysctlSettings {
		v := all[s.sysctl]
		if !v.OK {
			continue
		}
		if s.values == nil {
			ch <- prometheus.MustNewConstMetric(c.descs[i], prometheus.GaugeValue, float64(v.Values[0]))
			continue
		}
		for j, lv := range s.values {
			ch <- prometheus.MustNewConstMetric(c.descs[i], prometheus.GaugeValue, float64(v.Values[j]), lv)
		}
	}
	return nil
}

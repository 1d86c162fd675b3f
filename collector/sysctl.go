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
	registerCollector("sysctl", "socket buffer and backlog sysctls from /proc/sys/net", true,
		func(cfg Config, _ *slog.Logger) (Collector, error) { return newSysctlCollector(cfg), nil })
}

// sysctlSetting is one file under /proc/sys. A file with several values (tcp_rmem) becomes one series per
// value, labelled by the label values in values.
type sysctlSetting struct {
	path   string   // under <proc>/sys
	values []string // label values, one per number in the file; nil for a single number
	signed bool     // may be negative (tcp_adv_win_scale)
	spec   MetricSpec
}

func sysctlGauge(path, metric, unit, help string) sysctlSetting {
	return sysctlSetting{path: path, spec: spec("sysctl", MetricSpec{
		Name: metric, Type: Gauge, Unit: unit, Help: help, Source: "/proc/sys/" + path,
	})}
}

func sysctlTriple(path, metric, help string) sysctlSetting {
	return sysctlSetting{path: path, values: []string{"min", "default", "max"}, spec: spec("sysctl", MetricSpec{
		Name: metric, Type: Gauge, Unit: "bytes", Labels: []string{"setting"}, Help: help, Source: "/proc/sys/" + path,
	})}
}

// sysctlSettings are the receive-path settings people tune. In a network namespace other than the host's,
// some of them (net.core.netdev_max_backlog on current kernels) do not exist; those are left out and the
// collector still succeeds.
var sysctlSettings = []sysctlSetting{
	sysctlGauge("net/core/rmem_max", "net_core_rmem_max_bytes", "bytes",
		"net.core.rmem_max: the largest SO_RCVBUF an application may set."),
	sysctlGauge("net/core/rmem_default", "net_core_rmem_default_bytes", "bytes",
		"net.core.rmem_default: receive buffer of non-TCP sockets without SO_RCVBUF."),
	sysctlGauge("net/core/wmem_max", "net_core_wmem_max_bytes", "bytes",
		"net.core.wmem_max: the largest SO_SNDBUF an application may set."),
	sysctlGauge("net/core/wmem_default", "net_core_wmem_default_bytes", "bytes",
		"net.core.wmem_default: send buffer of non-TCP sockets without SO_SNDBUF."),
	sysctlTriple("net/ipv4/tcp_rmem", "tcp_rmem_bytes",
		"net.ipv4.tcp_rmem: TCP receive buffer floor (min), initial size (default) and auto-tuning limit (max)."),
	sysctlTriple("net/ipv4/tcp_wmem", "tcp_wmem_bytes",
		"net.ipv4.tcp_wmem: TCP send buffer floor (min), initial size (default) and auto-tuning limit (max)."),
	sysctlGauge("net/core/netdev_max_backlog", "net_core_netdev_max_backlog", "",
		"net.core.netdev_max_backlog: per-CPU input queue length. Absent outside the host network namespace."),
	sysctlGauge("net/core/somaxconn", "net_core_somaxconn", "",
		"net.core.somaxconn: the largest accept queue a listen() gets."),
	sysctlGauge("net/ipv4/tcp_window_scaling", "tcp_window_scaling", "",
		"net.ipv4.tcp_window_scaling: 1 if window scaling is on (else windows stop at 64 KiB)."),
	sysctlGauge("net/ipv4/tcp_moderate_rcvbuf", "tcp_moderate_rcvbuf", "",
		"net.ipv4.tcp_moderate_rcvbuf: 1 if receive buffer auto-tuning is on."),
	{path: "net/ipv4/tcp_adv_win_scale", signed: true, spec: spec("sysctl", MetricSpec{
		Name: "tcp_adv_win_scale", Type: Gauge,
		Help:   "net.ipv4.tcp_adv_win_scale: share of the receive buffer kept as overhead, not window (unused since Linux 6.6).",
		Source: "/proc/sys/net/ipv4/tcp_adv_win_scale",
	})},
}

// maxSysctlValues is the most numbers one sysctl file of ours holds; maxSysctlSettings bounds
// sysctlSettings. Both size arrays that a scrape keeps on the stack.
const (
	maxSysctlValues   = 3
	maxSysctlSettings = 16
)

type sysctlCollector struct {
	root  string // <proc>/sys
	files []*procFile
	descs []*prometheus.Desc
}

func newSysctlCollector(cfg Config) *sysctlCollector {
	if len(sysctlSettings) > maxSysctlSettings {
		panic("sysctlSettings has more than maxSysctlSettings entries")
	}
	c := &sysctlCollector{root: filepath.Join(cfg.ProcPath, "sys")}
	for _, s := range sysctlSettings {
		c.files = append(c.files, newProcFile(filepath.Join(c.root, s.path)))
		c.descs = append(c.descs, s.spec.Desc())
	}
	closeWhenUnreachable(c, c.files...)
	return c
}

func (c *sysctlCollector) Update(ch chan<- prometheus.Metric) error {
	var (
		vals  [maxSysctlSettings][maxSysctlValues]int64
		found [maxSysctlSettings]bool
		seen  bool
	)
	buf := getBuf()
	defer putBuf(buf)
	for i, s := range sysctlSettings {
		n := max(1, len(s.values))
		ok, err := readSysctl(c.files[i], buf, vals[i][:n], s.signed)
		if err != nil {
			return err
		}
		found[i] = ok
		seen = seen || ok
	}
	if !seen {
		// Every file missing means a wrong --path.procfs, not a namespace that lacks a few.
		return fmt.Errorf("none of the sysctl files exist under %s: %w", c.root, os.ErrNotExist)
	}
	for i, s := range sysctlSettings {
		if !found[i] {
			continue
		}
		if s.values == nil {
			ch <- prometheus.MustNewConstMetric(c.descs[i], prometheus.GaugeValue, float64(vals[i][0]))
			continue
		}
		for j, lv := range s.values {
			ch <- prometheus.MustNewConstMetric(c.descs[i], prometheus.GaugeValue, float64(vals[i][j]), lv)
		}
	}
	return nil
}

// readSysctl reads a /proc/sys file of len(out) integers. A missing file is not an error but reported as
// found=false: several of these files exist only in the host's network namespace.
func readSysctl(f *procFile, buf *[]byte, out []int64, signed bool) (found bool, err error) {
	data, err := f.read(buf)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := parseSysctl(data, out, signed); err != nil {
		return false, fmt.Errorf("parsing %s: %w", f.path, err)
	}
	return true, nil
}

// parseSysctl parses a one-line /proc/sys file holding exactly len(out) integers separated by tabs or
// spaces. Negative numbers are an error unless signed.
func parseSysctl(data []byte, out []int64, signed bool) error {
	line, rest, err := nextLine(data)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return errors.New("more than one line")
	}
	n := 0
	for {
		var f []byte
		f, line = nextField(line)
		if len(f) == 0 {
			break
		}
		if n == len(out) {
			return fmt.Errorf("more than %d values", len(out))
		}
		v, err := parseInt(f)
		if err != nil {
			return err
		}
		if v < 0 && !signed {
			return fmt.Errorf("%w: negative value %d", errNumber, v)
		}
		out[n] = v
		n++
	}
	if n != len(out) {
		return fmt.Errorf("%d values, want %d", n, len(out))
	}
	return nil
}

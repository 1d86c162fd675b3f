package collector

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

func init() {
	registerCollector("softnet", "per-CPU input queue drops and budget squeezes from /proc/net/softnet_stat", true,
		func(cfg Config, _ *slog.Logger) (Collector, error) { return newSoftnetCollector(cfg), nil })
}

// Both counters are 32 bits in the kernel; a wrap at 2^32 looks like a counter reset, which rate() handles.
var (
	softnetDroppedSpec = spec("softnet", MetricSpec{
		Name: "softnet_dropped_total", Type: Counter, Labels: []string{"cpu"},
		Help:   "Packets dropped because this CPU's input queue (netdev_max_backlog) was full (/proc/net/softnet_stat column 2, 32 bits).",
		Source: "/proc/net/softnet_stat column 2 (dropped)",
	})
	softnetSqueezedSpec = spec("softnet", MetricSpec{
		Name: "softnet_times_squeezed_total", Type: Counter, Labels: []string{"cpu"},
		Help:   "Times this CPU's receive softirq ran out of budget with packets left (/proc/net/softnet_stat column 3, 32 bits).",
		Source: "/proc/net/softnet_stat column 3 (time_squeeze)",
	})
)

// softnetCollector exports per-CPU backlog drops and squeezes. softnet_stat has one row per online CPU; newer
// kernels name the CPU in column 13, for older ones the row number is the best we have (wrong only when CPUs
// are offline).
type softnetCollector struct {
	file                      *procFile
	droppedDesc, squeezedDesc *prometheus.Desc
}

func newSoftnetCollector(cfg Config) *softnetCollector {
	c := &softnetCollector{
		file:         newProcFile(filepath.Join(cfg.ProcPath, "net", "softnet_stat")),
		droppedDesc:  softnetDroppedSpec.Desc(),
		squeezedDesc: softnetSqueezedSpec.Desc(),
	}
	closeWhenUnreachable(c, c.file)
	return c
}

// Update sends metrics while parsing; on an error the exporter discards what was sent.
func (c *softnetCollector) Update(ch chan<- prometheus.Metric) error {
	buf := getBuf()
	defer putBuf(buf)
	data, err := c.file.read(buf)
	if err != nil {
		return err
	}
	err = parseSoftnet(data, func(r softnetRow) {
		cpu := strconv.Itoa(r.cpu)
		ch <- prometheus.MustNewConstMetric(c.droppedDesc, prometheus.CounterValue, float64(r.dropped), cpu)
		ch <- prometheus.MustNewConstMetric(c.squeezedDesc, prometheus.CounterValue, float64(r.squeezed), cpu)
	})
	if err != nil {
		return fmt.Errorf("parsing %s: %w", c.file.path, err)
	}
	return nil
}

type softnetRow struct {
	cpu               int
	dropped, squeezed uint64
}

const (
	// softnetMinColumns is the width since Linux 2.6.23; older kernels are not supported.
	softnetMinColumns = 9
	// softnetCPUColumn (1-based) holds the CPU number on kernels that print at least 13 columns.
	softnetCPUColumn = 13
)

// parseSoftnet parses /proc/net/softnet_stat, rows of "%08x" columns, and calls fn for each row. Every row
// must have the same number of columns and every column must be hexadecimal.
func parseSoftnet(data []byte, fn func(softnetRow)) error {
	width := -1
	lastCPU := -1
	for row := 0; len(data) > 0; row++ {
		line, rest, err := nextLine(data)
		if err != nil {
			return err
		}
		data = rest
		var r softnetRow
		n := 0
		for {
			var f []byte
			f, line = nextField(line)
			if len(f) == 0 {
				break
			}
			n++
			// Every column is parsed, even those unused, so that garbage anywhere is found.
			v, err := parseHex(f)
			if err != nil {
				return fmt.Errorf("row %d column %d: %w", row+1, n, err)
			}
			switch n {
			case 2:
				r.dropped = v
			case 3:
				r.squeezed = v
			case softnetCPUColumn:
				if v > 1<<20 {
					return fmt.Errorf("row %d: cpu %d out of range", row+1, v)
				}
				r.cpu = int(v)
			}
		}
		if width < 0 {
			width = n
		}
		switch {
		case n < softnetMinColumns:
			return fmt.Errorf("row %d: %d columns, want at least %d", row+1, n, softnetMinColumns)
		case n != width:
			return fmt.Errorf("row %d: %d columns, row 1 has %d", row+1, n, width)
		case n < softnetCPUColumn:
			r.cpu = row
		}
		// The kernel prints online CPUs in increasing order; anything else would give duplicate series.
		if r.cpu <= lastCPU {
			return fmt.Errorf("row %d: cpu %d after cpu %d", row+1, r.cpu, lastCPU)
		}
		lastCPU = r.cpu
		fn(r)
	}
	return nil
}

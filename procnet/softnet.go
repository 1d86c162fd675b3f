package procnet

import (
	"bytes"
	"errors"
	"fmt"
)

// SoftnetRow is one CPU's line of /proc/net/softnet_stat. The counters are 32 bits in the kernel.
type SoftnetRow struct {
	CPU      int
	Dropped  uint64 // column 2: the CPU's input queue (netdev_max_backlog) was full
	Squeezed uint64 // column 3: the receive softirq ran out of budget with packets left
}

const (
	// softnetMinColumns is the width since Linux 2.6.23; older kernels are not supported.
	softnetMinColumns = 9
	// softnetCPUColumn (1-based) holds the CPU number on kernels that print at least 13 columns.
	softnetCPUColumn = 13
)

// ParseSoftnet parses /proc/net/softnet_stat, rows of "%08x" columns, and calls fn for each row. Every row
// must have the same number of columns and every column must be hexadecimal. Newer kernels name the CPU in
// column 13; for older ones the row number is the best there is (wrong only when CPUs are offline). The
// kernel prints a row per online CPU, so a row beyond maxCPUs (PossibleCPUs) or a CPU number not below it is
// an error: a file that is not softnet_stat must not turn into thousands of series.
func ParseSoftnet(data []byte, maxCPUs int, fn func(SoftnetRow)) error {
	if len(data) == 0 {
		// Every kernel prints a row per online CPU, and there is always one.
		return errors.New("no CPU rows")
	}
	width := -1
	lastCPU := -1
	for row := 0; len(data) > 0; row++ {
		if row == maxCPUs {
			return fmt.Errorf("more than %d rows, one per possible CPU", maxCPUs)
		}
		line, rest, err := NextLine(data)
		if err != nil {
			return err
		}
		data = rest
		var r SoftnetRow
		n := 0
		for f, more := NextField(line); len(f) > 0; f, more = NextField(more) {
			n++
			// Every column is parsed, even those unused, so that garbage anywhere is found.
			v, err := parseHex(f)
			if err != nil {
				return fmt.Errorf("row %d column %d: %w", row+1, n, err)
			}
			switch n {
			case 2:
				r.Dropped = v
			case 3:
				r.Squeezed = v
			case softnetCPUColumn:
				if v >= uint64(maxCPUs) {
					return fmt.Errorf("row %d: cpu %d out of range, %d CPUs are possible", row+1, v, maxCPUs)
				}
				r.CPU = int(v)
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
			r.CPU = row
		}
		// The kernel prints online CPUs in increasing order; anything else would give duplicate series.
		if r.CPU <= lastCPU {
			return fmt.Errorf("row %d: cpu %d after cpu %d", row+1, r.CPU, lastCPU)
		}
		lastCPU = r.CPU
		fn(r)
	}
	return nil
}

// MaxCPUs is the largest CPU count the kernel can be built for (NR_CPUS, arch/x86/Kconfig: 8192 with
// MAXSMP); PossibleCPUs falls back to it.
const MaxCPUs = 8192

// parseCPUList parses a kernel CPU list ("0-3,8\n", lib/bitmap-str.c) and returns the highest CPU plus one.
func parseCPUList(data []byte) (int, error) {
	line, rest, err := NextLine(data)
	if err != nil {
		return 0, err
	}
	if len(rest) != 0 {
		return 0, errors.New("more than one line")
	}
	highest := -1
	for len(line) > 0 {
		item := line
		if i := bytes.IndexByte(line, ','); i >= 0 {
			item, line = line[:i], line[i+1:]
		} else {
			line = nil
		}
		if i := bytes.IndexByte(item, '-'); i >= 0 {
			item = item[i+1:]
		}
		v, err := ParseUint(item)
		if err != nil {
			return 0, err
		}
		if v >= MaxCPUs {
			return 0, fmt.Errorf("cpu %d beyond %d", v, MaxCPUs)
		}
		highest = max(highest, int(v))
	}
	if highest < 0 {
		return 0, errors.New("no CPUs")
	}
	return highest + 1, nil
}

package procnet

import (
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
// column 13; for older ones the row number is the best there is (wrong only when CPUs are offline).
func ParseSoftnet(data []byte, fn func(SoftnetRow)) error {
	if len(data) == 0 {
		// Every kernel prints a row per online CPU, and there is always one.
		return errors.New("no CPU rows")
	}
	width := -1
	lastCPU := -1
	for row := 0; len(data) > 0; row++ {
		line, rest, err := NextLine(data)
		if err != nil {
			return err
		}
		data = rest
		var r SoftnetRow
		n := 0
		for {
			var f []byte
			f, line = NextField(line)
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
				r.Dropped = v
			case 3:
				r.Squeezed = v
			case softnetCPUColumn:
				if v > 1<<20 {
					return fmt.Errorf("row %d: cpu %d out of range", row+1, v)
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

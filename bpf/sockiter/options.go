package sockiter

import (
	"errors"
	"fmt"
	"math"
)

// Options configure an Engine.
type Options struct {
	// States selects the non-listening sockets to fold into groups: bit 1<<state, in the numbering of
	// sockdiag (StateEstablished = 1, ...); TCP_NEW_SYN_RECV request sockets count as SYN_RECV (3), as
	// inet_diag selects them. 0 means sockdiag.DefaultStates: every state that holds buffers. LISTEN
	// sockets are always recorded (for roles and Result.Listeners) and never folded into groups.
	States uint32
	// FullRatio: a socket is full when rmem_alloc >= FullRatio * rcvbuf. 0 means 0.9. Kept to 1e-6.
	FullRatio float64
	// FillBounds and RcvbufBounds are the upper bounds of Result.Fill, Result.Size and the per-group
	// RcvbufLockedHist; at most MaxBounds each, ascending. FillBounds must be multiples of 1e-6 (the kernel
	// compares rmem_alloc*1e6 <= bound*1e6*rcvbuf in integers, which gives what float64 division gives).
	FillBounds   []float64
	RcvbufBounds []float64
	// Cgroups keys groups by the owning cgroup's id; otherwise every group has CgroupID 0.
	Cgroups bool
	// Drops counts per group the sk_drops each socket added since the walk that last saw it, remembered
	// per socket in BPF socket storage (freed with the socket, and with the Engine).
	Drops bool
	// MaxGroups sizes the groups map; beyond it sockets go to Result.Overflow. 0 means 16384.
	MaxGroups int
	// IterateOnly, for benchmarks, walks the same sockets without looking at them: Result has only
	// Visited, and the walk costs what the kernel's iterator itself costs.
	IterateOnly bool
}

const defaultStates = 1<<1 | 1<<2 | 1<<4 | 1<<5 | 1<<7 | 1<<8 | 1<<9 | 1<<10 | 1<<11 // sockdiag.DefaultStates

// yieldEvery is how many sockets the program visits between two bytes it writes, so that each read(2) of
// the iterator returns and Walk can check its context. A power of two.
const yieldEvery = 1 << 16

// ErrUnavailable is wrapped by Open's errors when this kernel or process cannot run the iterator (no
// privileges, no BTF, no iter/tcp), as opposed to a bad Options.
var ErrUnavailable = errors.New("BPF socket iterator unavailable")

func b2u8(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

func checkAscending(b []float64) error {
	if len(b) > MaxBounds {
		return fmt.Errorf("%d bounds, at most %d", len(b), MaxBounds)
	}
	for i := range b {
		if i > 0 && b[i] <= b[i-1] {
			return fmt.Errorf("bounds not ascending at %g", b[i])
		}
		if b[i] < 0 {
			return fmt.Errorf("negative bound %g", b[i])
		}
	}
	return nil
}

func ppmBounds(b []float64) ([]uint64, error) {
	if err := checkAscending(b); err != nil {
		return nil, err
	}
	out := make([]uint64, len(b))
	for i, v := range b {
		p := math.Round(v * 1e6)
		if math.Abs(p-v*1e6) > 1e-6 || p > 1e12 {
			return nil, fmt.Errorf("bound %g is not a multiple of 1e-6", v)
		}
		out[i] = uint64(p)
	}
	return out, nil
}

func intBounds(b []float64) ([]uint64, error) {
	if err := checkAscending(b); err != nil {
		return nil, err
	}
	out := make([]uint64, len(b))
	for i, v := range b {
		if v != math.Trunc(v) || v > 1<<40 {
			return nil, fmt.Errorf("bound %g is not a whole number of bytes", v)
		}
		out[i] = uint64(v)
	}
	return out, nil
}

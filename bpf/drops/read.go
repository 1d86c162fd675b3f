//go:build linux

package drops

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// Read returns the counters since Open, summed over CPUs: one batch lookup per map and 1024 entries.
// It allocates the result's slices and nothing per entry.
func (t *Tracer) Read() (Snapshot, error) {
	if t.coll == nil {
		return Snapshot{}, errors.New("reading a closed tracer")
	}
	var s Snapshot
	err := readPerCPU(t.drops, t.dropKeys, t.values, t.ncpu, func(k dropsDropKey, n uint64) {
		s.Drops = append(s.Drops, Drop{
			Reason: t.ReasonName(k.Reason), ReasonCode: k.Reason,
			Role: Role(k.Role), Port: k.Port, CgroupID: k.Cgroup, RcvbufLocked: k.RcvbufLocked != 0,
			Packets: n,
		})
	})
	if err != nil {
		return s, fmt.Errorf("reading attributed drops: %w", err)
	}
	err = readPerCPU(t.unattributed, t.u32Keys, t.values, t.ncpu, func(k uint32, n uint64) {
		s.Unattributed = append(s.Unattributed, UnattributedDrop{Reason: t.ReasonName(k), ReasonCode: k, Packets: n})
	})
	if err != nil {
		return s, fmt.Errorf("reading unattributed drops: %w", err)
	}
	err = readPerCPU(t.grows, t.growKeys, t.values, t.ncpu, func(k dropsGrowKey, n uint64) {
		s.RcvbufGrow = append(s.RcvbufGrow, RcvbufGrow{
			Role: Role(k.Role), Port: k.Port, CgroupID: k.Cgroup, RcvbufLocked: k.RcvbufLocked != 0, Count: n,
		})
	})
	if err != nil {
		return s, fmt.Errorf("reading receive buffer growth: %w", err)
	}
	err = readPerCPU(t.limits, t.limitKeys, t.values, t.ncpu, func(k dropsLimitKey, n uint64) {
		s.MemoryLimit = append(s.MemoryLimit, MemoryLimitHit{Kind: MemoryKind(k.Kind), CgroupID: k.Cgroup, Count: n})
	})
	if err != nil {
		return s, fmt.Errorf("reading memory limit hits: %w", err)
	}
	lost := [...]*uint64{&s.Lost.Drops, &s.Lost.Unattributed, &s.Lost.RcvbufGrow, &s.Lost.MemoryLimit}
	perCPU := t.values[:t.ncpu]
	for i, dst := range lost {
		if err := t.lost.Lookup(uint32(i), perCPU); err != nil {
			return s, fmt.Errorf("reading lost counts: %w", err)
		}
		for _, v := range perCPU {
			*dst += v
		}
	}
	for _, p := range t.progs {
		st, err := p.Stats()
		if err != nil {
			return s, fmt.Errorf("reading program statistics: %w", err)
		}
		s.Missed += st.RecursionMisses
	}
	return s, nil
}

// readPerCPU hands fn every key of a per-CPU map with its values summed over CPUs, reading len(keys)
// entries per batch lookup into the caller's buffers (values holds len(keys)*ncpu).
func readPerCPU[K any](m *ebpf.Map, keys []K, values []uint64, ncpu int, fn func(K, uint64)) error {
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, keys, values, nil)
		for i := range n {
			var sum uint64
			for _, v := range values[i*ncpu : (i+1)*ncpu] {
				sum += v
			}
			fn(keys[i], sum)
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

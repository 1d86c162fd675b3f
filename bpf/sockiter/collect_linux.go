//go:build linux

package sockiter

import (
	"errors"
	"fmt"
	"math"

	"github.com/cilium/ebpf"
)

// drainFailed empties the groups map after a walk that did not finish (or a first pass that is walked
// again), keeping the drops it counted: the per-socket storage already took them as seen.
func (e *Engine) drainFailed() error {
	err := e.drainGroups(func(k Key, s *sockiterGroupVal) {
		if s.Drops > 0 {
			e.carry[k] += s.Drops
		}
	})
	if err != nil {
		return err
	}
	for r := uint32(0); r < 2; r++ {
		var v sockiterGroupVal
		if err := e.objs.Overflow.Lookup(r, &v); err == nil && v.Drops > 0 {
			e.carry[Key{Role: Role(r), Port: 0, CgroupID: math.MaxUint64}] += v.Drops
		}
	}
	if err := e.drainListeners(false); err != nil {
		return err
	}
	e.dirty = false
	return nil
}

func (e *Engine) drainGroups(fn func(Key, *sockiterGroupVal)) error {
	var cursor ebpf.MapBatchCursor
	for {
		n, err := e.objs.Groups.BatchLookupAndDelete(&cursor, e.keys, e.vals, nil)
		for i := range n {
			k := &e.keys[i]
			fn(Key{CgroupID: k.CgroupId, Port: k.Port, Role: Role(k.Role)}, &e.vals[i])
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("sockiter: reading groups: %w", err)
		}
	}
}

func (e *Engine) drainListeners(keep bool) error {
	if keep {
		e.res.Listeners = e.res.Listeners[:0]
	}
	var cursor ebpf.MapBatchCursor
	for {
		n, err := e.objs.Listeners.BatchLookupAndDelete(&cursor, e.lkeys, e.lvals, nil)
		if keep {
			for i := range n {
				v := &e.lvals[i]
				e.res.Listeners = append(e.res.Listeners, Listener{Port: e.lkeys[i], Length: v.Length, Limit: v.Limit, Sockets: v.Sockets})
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("sockiter: reading listeners: %w", err)
		}
	}
}

func toStats(s *Stats, v *sockiterGroupVal) {
	*s = Stats{
		Sockets: v.Sockets, RecvQueue: v.RecvQ, RecvQueueMax: v.RecvQ_max, SendQueue: v.SendQ,
		RmemAlloc: v.RmemAlloc, Rcvbuf: v.Rcvbuf, Full: v.Full, ZeroWindow: v.ZeroWnd, Drops: v.Drops,
		RcvbufLocked: v.Locked, RcvbufLockedSum: v.LockedSum, RcvbufLockedHist: v.LockedHist,
	}
}

// collect turns the maps into e.res and empties them.
func (e *Engine) collect() error {
	r := &e.res
	r.Groups = r.Groups[:0]
	err := e.drainGroups(func(k Key, v *sockiterGroupVal) {
		r.Groups = append(r.Groups, Group{Key: k})
		toStats(&r.Groups[len(r.Groups)-1].Stats, v)
	})
	if err != nil {
		return err
	}
	for i := range r.Overflow {
		var v sockiterGroupVal
		if err := e.objs.Overflow.Lookup(uint32(i), &v); err != nil {
			return fmt.Errorf("sockiter: reading overflow: %w", err)
		}
		toStats(&r.Overflow[i], &v)
	}
	if len(e.carry) > 0 {
		e.applyCarry()
	}
	if err := e.drainListeners(true); err != nil {
		return err
	}
	t := &e.totals
	r.OverflowSockets, r.ListenOverflow = t.OverflowSockets, t.ListenOverflow
	r.States = t.States
	r.Visited, r.LateListeners, r.DropsUntracked = t.Visited, t.LateListeners, t.DropsUntracked
	copy(r.Fill.Counts, t.FillHist[:len(r.Fill.Counts)-1])
	r.Fill.Counts[len(r.Fill.Counts)-1] = sum(t.FillHist[len(r.Fill.Counts)-1:])
	r.Fill.Count = t.FillCount
	r.Fill.Sum = float64(t.FillSum) / (1 << 24)
	copy(r.Size.Counts, t.SizeHist[:len(r.Size.Counts)-1])
	r.Size.Counts[len(r.Size.Counts)-1] = sum(t.SizeHist[len(r.Size.Counts)-1:])
	r.Size.Count = t.SizeCount
	r.Size.Sum = float64(t.SizeSum)
	return nil
}

// applyCarry adds the drops of failed walks to this walk's groups (or to its role's overflow when the
// group has no socket left), so that no drop is lost with a walk that was cut short.
func (e *Engine) applyCarry() {
	r := &e.res
	for i := range r.Groups {
		g := &r.Groups[i]
		if d, ok := e.carry[g.Key]; ok {
			g.Drops += d
			delete(e.carry, g.Key)
		}
	}
	for k, d := range e.carry {
		r.Overflow[k.Role&1].Drops += d
	}
	clear(e.carry)
}

func sum(v []uint64) uint64 {
	var n uint64
	for _, x := range v {
		n += x
	}
	return n
}

package sockagg

import (
	"fmt"
	"slices"

	"github.com/sockbuf/sockbuf_exporter/sockdiag"
)

// A socket engine that folds sockets itself (the BPF iterator sums per group inside the kernel) feeds the
// Aggregator values instead of sockets, between Begin and Finish: AddGroup, AddOverflow, AddListenerValues,
// AddStates and the histograms' AddCounts. Finish then names, merges, caps and folds those groups and keeps
// their drops counters exactly as it does for the groups Add builds, so the two engines share every rule
// after the per-socket step. The engine must have used FillBounds and SizeBounds for its histograms.

// AddGroup adds the sums of one group of non-listening sockets. s.Drops are the drops the group's sockets
// added since the previous scrape (deltas, as Add computes them per socket); s.RcvbufLocked and
// s.RcvbufLockedBytes are exported by the caller when its engine knows them. process is as Add's.
func (a *Aggregator) AddGroup(role Role, port uint16, cgroupID uint64, process int32, s *Stats) {
	k := groupKey{process: process, role: role & 1, port: port}
	if a.cgroups {
		k.cgroupID = cgroupID
	}
	a.groups[a.lookup(k)].stats.Merge(s)
}

// AddOverflow adds the sums of sockets of a role whose group the engine could not keep apart (its table
// was full). They go to the role's port="other" group and count as one folded group; their drops go to the
// "other" counter only, since their own groups are unknown.
func (a *Aggregator) AddOverflow(role Role, s *Stats) {
	a.overflow[role&1].Merge(s)
}

// AddListenerValues records the fullest LISTEN socket of a port: the accept queue's length and limit.
// Calling it again for a port keeps the fuller of the two. It does not count LISTEN sockets: AddStates does.
func (a *Aggregator) AddListenerValues(port uint16, length, limit uint64) {
	a.listening[port/64] |= 1 << (port % 64)
	this := Listener{Port: port, Length: length, Limit: limit}
	i, ok := a.listeners[port]
	if !ok {
		a.listeners[port] = len(a.listen)
		a.listen = append(a.listen, this)
		return
	}
	a.listen[i].takeFullest(&this)
}

// AddStates adds socket counts by idiag_state (include/net/tcp_states.h numbering). Only the states of mask
// are taken; TCP_NEW_SYN_RECV (12, request sockets) counts as SYN_RECV, as inet_diag reports them.
func (a *Aggregator) AddStates(states *[16]uint64, mask uint32) {
	for st, n := range states {
		if st == int(sockdiag.StateNewSynRecv) {
			st = int(sockdiag.StateSynRecv)
		}
		if mask&(1<<st) != 0 {
			a.states[st] += n
		}
	}
}

// FillBounds are the upper bounds of the Fill histogram; an engine that fills it must use them.
func (a *Aggregator) FillBounds() []float64 { return slices.Clone(a.fill.bounds) }

// SizeBounds are the upper bounds of the Size and Locked histograms.
func (a *Aggregator) SizeBounds() []float64 { return slices.Clone(a.size.bounds) }

// AddCounts adds an engine's histogram over the same bounds: counts per bucket, not cumulative, with one more
// entry than the bounds for the observations above every bound (a longer counts is summed into that one).
func (h *Histogram) AddCounts(counts []uint64, count uint64, sum float64) error {
	if len(counts) < len(h.counts) {
		return fmt.Errorf("histogram of %d buckets, want %d", len(counts), len(h.counts))
	}
	for i, n := range counts {
		h.counts[min(i, len(h.counts)-1)] += n
	}
	h.count += count
	h.sum += sum
	return nil
}

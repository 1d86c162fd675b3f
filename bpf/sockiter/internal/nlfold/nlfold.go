//go:build linux

// Package nlfold is the reference the sockiter engine is checked and timed against: the sockets collector's
// netlink path written out plainly (a LISTEN dump for the roles, then one dump of the selected states with
// skmeminfo and tcp_info, folded per (role, port, cgroup id) with the collector's rules), producing a
// sockiter.Result so the two compare field by field. It has no SO_RCVBUF lock information (netlink has
// none), so RcvbufLocked stays 0.
package nlfold

import (
	"context"
	"fmt"
	"slices"

	"github.com/sockbuf/sockbuf_exporter/bpf/sockiter"
	"github.com/sockbuf/sockbuf_exporter/sockdiag"
)

// Folder folds netlink dumps; it reuses its maps between calls.
type Folder struct {
	Client       *sockdiag.Client
	States       uint32 // as sockiter.Options.States; 0: sockdiag.DefaultStates
	FullRatio    float64
	FillBounds   []float64
	RcvbufBounds []float64
	Cgroups      bool
	TCPInfo      bool // also ask for tcp_info, for ZeroWindow (the collector's --collector.sockets.tcp-info)

	listening [1024]uint64
	index     map[sockiter.Key]int
	lindex    map[uint16]int
	res       sockiter.Result
	attempt   int
}

// Fold dumps and folds; the Result is valid until the next Fold.
func (f *Folder) Fold(ctx context.Context) (*sockiter.Result, error) {
	if f.index == nil {
		f.index, f.lindex = map[sockiter.Key]int{}, map[uint16]int{}
		f.res.Fill = sockiter.Histogram{Bounds: f.FillBounds, Counts: make([]uint64, len(f.FillBounds)+1)}
		f.res.Size = sockiter.Histogram{Bounds: f.RcvbufBounds, Counts: make([]uint64, len(f.RcvbufBounds)+1)}
	}
	states := f.States
	if states == 0 {
		states = sockdiag.DefaultStates
	}
	if states&(1<<sockdiag.StateSynRecv) != 0 {
		states |= 1 << sockdiag.StateNewSynRecv
	}
	r := &f.res
	resetListeners := func() {
		clear(f.listening[:])
		clear(f.lindex)
		r.Listeners = r.Listeners[:0]
		r.States[sockdiag.StateListen] = 0
	}
	resetListeners()
	f.attempt = 0
	_, err := f.Client.DumpContext(ctx, sockdiag.Request{States: 1 << sockdiag.StateListen}, func(s *sockdiag.Socket) error {
		if s.Attempt != f.attempt {
			f.attempt = s.Attempt
			resetListeners()
		}
		if !s.IsListen() {
			return nil
		}
		r.States[sockdiag.StateListen]++
		p := s.Src.Port()
		f.listening[p/64] |= 1 << (p % 64)
		this := sockiter.Listener{Port: p, Length: s.AcceptQueue(), Limit: s.AcceptQueueLimit(), Sockets: 1}
		i, ok := f.lindex[p]
		if !ok {
			f.lindex[p] = len(r.Listeners)
			r.Listeners = append(r.Listeners, this)
			return nil
		}
		l := &r.Listeners[i]
		l.Sockets++
		if Fuller(this, *l) {
			l.Length, l.Limit = this.Length, this.Limit
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dumping LISTEN sockets: %w", err)
	}
	resetSockets := func() {
		listen := r.States[sockdiag.StateListen]
		clear(r.States[:])
		r.States[sockdiag.StateListen] = listen
		clear(f.index)
		r.Groups = r.Groups[:0]
		clear(r.Fill.Counts)
		clear(r.Size.Counts)
		r.Fill.Count, r.Fill.Sum, r.Size.Count, r.Size.Sum = 0, 0, 0, 0
	}
	resetSockets()
	f.attempt = 0
	req := sockdiag.Request{States: states &^ (1 << sockdiag.StateListen), Extensions: sockdiag.ExtSKMemInfo}
	if f.TCPInfo {
		req.Extensions |= sockdiag.ExtInfo
	}
	_, err = f.Client.DumpContext(ctx, req, func(s *sockdiag.Socket) error {
		if s.Attempt != f.attempt {
			f.attempt = s.Attempt
			resetSockets()
		}
		if !s.IsListen() {
			f.add(s)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dumping TCP sockets: %w", err)
	}
	r.Visited = 0
	for _, n := range r.States {
		r.Visited += n
	}
	return r, nil
}

func (f *Folder) add(s *sockdiag.Socket) {
	r := &f.res
	r.States[s.State&15]++
	k := sockiter.Key{Role: sockiter.RoleClient, Port: s.Dst.Port()}
	if lp := s.Src.Port(); f.listening[lp/64]&(1<<(lp%64)) != 0 {
		k.Role, k.Port = sockiter.RoleServer, lp
	}
	if f.Cgroups && s.HasCgroupID {
		k.CgroupID = s.CgroupID
	}
	i, ok := f.index[k]
	if !ok {
		i = len(r.Groups)
		f.index[k] = i
		r.Groups = append(r.Groups, sockiter.Group{Key: k})
	}
	g := &r.Groups[i].Stats
	g.Sockets++
	rq := uint64(s.RQueue)
	g.RecvQueue += rq
	g.RecvQueueMax = max(g.RecvQueueMax, rq)
	g.SendQueue += uint64(s.WQueue)
	if s.State == sockdiag.StateEstablished && s.HasRcvWnd() && s.TCPInfo.RcvWnd == 0 {
		g.ZeroWindow++
	}
	if !s.HasSKMemInfo {
		return
	}
	m := &s.SKMemInfo
	g.RmemAlloc += uint64(m.RmemAlloc)
	g.Rcvbuf += uint64(m.Rcvbuf)
	g.Drops += uint64(m.Drops)
	if m.Rcvbuf != 0 {
		fill := float64(m.RmemAlloc) / float64(m.Rcvbuf)
		if fill >= f.FullRatio {
			g.Full++
		}
		observe(&r.Fill, fill)
	}
	if s.State == sockdiag.StateEstablished {
		observe(&r.Size, float64(m.Rcvbuf))
	}
}

func observe(h *sockiter.Histogram, v float64) {
	i := 0
	for i < len(h.Bounds) && v > h.Bounds[i] {
		i++
	}
	h.Counts[i]++
	h.Count++
	h.Sum += v
}

// Fuller reports whether listener a is fuller than b: by length/limit, then length, then the smaller limit
// (the collector's compareFullness).
func Fuller(a, b sockiter.Listener) bool {
	fill := func(l sockiter.Listener) float64 {
		if l.Limit == 0 {
			if l.Length == 0 {
				return 0
			}
			return 1e300
		}
		return float64(l.Length) / float64(l.Limit)
	}
	if fa, fb := fill(a), fill(b); fa != fb {
		return fa > fb
	}
	if a.Length != b.Length {
		return a.Length > b.Length
	}
	return a.Limit < b.Limit
}

// Sorted returns r's groups and listeners sorted, for comparisons (it sorts r in place).
func Sorted(r *sockiter.Result) *sockiter.Result {
	slices.SortFunc(r.Groups, func(a, b sockiter.Group) int {
		if a.Role != b.Role {
			return int(a.Role) - int(b.Role)
		}
		if a.Port != b.Port {
			return int(a.Port) - int(b.Port)
		}
		switch {
		case a.CgroupID < b.CgroupID:
			return -1
		case a.CgroupID > b.CgroupID:
			return 1
		}
		return 0
	})
	slices.SortFunc(r.Listeners, func(a, b sockiter.Listener) int { return int(a.Port) - int(b.Port) })
	return r
}

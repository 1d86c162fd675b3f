package diagnose

// analysis is what several rules derive from the same evidence, computed once.
type analysis struct {
	ev  *Evidence
	win float64 // window in seconds, 0 when unknown

	// loss is the namespace's receive data dropped for lack of memory over the window: TCPRcvQDrop +
	// TCPOFODrop + OfoPruned (each OfoPruned is at least one segment thrown away); lossKnown when at least one
	// of them is known.
	loss      uint64
	lossKnown bool
	collapse  Value // TCPRcvCollapsed
	// harm: the kernel collapsed or dropped receive data in the window.
	harm bool

	pressure      bool // TCP memory at or over tcp_mem pressure during the window
	pressureKnown bool // sockstat and tcp_mem, or the pressure counters, were readable

	groups []*groupView
	bpf    map[bpfKey]*bpfGroup
}

type bpfKey struct{ role, port, cgroup string }

// bpfGroup is the bpf evidence of one (role, port, cgroup), shared by the groups that differ only by process.
type bpfGroup struct {
	overflowLocked, overflowUnlocked uint64 // proto_mem and tcp_ofo_queue_prune
	backlogLocked, backlogUnlocked   uint64 // socket_backlog
	zeroWindow                       uint64 // tcp_zerowindow
	other                            uint64 // old data, window probes, out-of-window, ...
	grow                             Value  // tcp_rcvbuf_grow
}

func (b *bpfGroup) overflow() uint64 { return addSat(b.overflowLocked, b.overflowUnlocked) }

// Reason classes of skb_drop_reason for TCP receive drops, from where net/ipv4/tcp_input.c uses them.
const (
	reasonOverflow   = iota // tcp_data_queue and tcp_data_queue_ofo: PROTO_MEM; tcp_prune_ofo_queue: TCP_OFO_QUEUE_PRUNE
	reasonBacklog           // tcp_add_backlog (net/ipv4/tcp_ipv4.c): SOCKET_BACKLOG
	reasonZeroWindow        // tcp_data_queue: in-sequence data arriving on a closed window, TCP_ZEROWINDOW
	reasonOther             // TCP_OFO_DROP (tcp_ofo_queue: data already received), OLD_DATA, window probes, ...
)

func reasonClass(reason string) int {
	switch reason {
	case "proto_mem", "tcp_ofo_queue_prune":
		return reasonOverflow
	case "socket_backlog":
		return reasonBacklog
	case "tcp_zerowindow":
		return reasonZeroWindow
	}
	return reasonOther
}

// groupView is one group's samples reduced to what the buffer rules ask.
type groupView struct {
	g *Group
	n int // samples the group could have appeared in

	fullSamples int
	maxFull     uint64
	maxSockets  uint64
	persistent  bool // full in at least half of the samples

	zeroKnown   bool
	zeroSamples int
	maxZero     uint64

	locked Value // most sockets with the SO_RCVBUF lock in one sample
	atMax  Value // most sockets at tcp_rmem[2] in one sample
	capped Value // most sockets at exactly 2 × rmem_max in one sample

	firstAvg, lastAvg float64 // rcvbuf per socket in the first and the last sample with sockets
	grew              bool    // rcvbuf grew over the window (or bpf saw tcp_rcvbuf_grow)
	constant          bool    // every socket of every sample had the same rcvbuf
	value             uint64  // that rcvbuf, when constant
	maxRcvbuf         uint64
	maxFill           float64 // highest rmem_alloc / rcvbuf of the group's sums over the samples

	bpf *bpfGroup
}

func newAnalysis(ev *Evidence) *analysis {
	a := &analysis{ev: ev, win: windowSeconds(ev.Window, 0)}
	ns := &ev.Netstat
	for _, v := range []Value{ns.RcvQDrop, ns.OFODrop, ns.OfoPruned} {
		if v.Known {
			a.loss = addSat(a.loss, v.V)
			a.lossKnown = true
		}
	}
	a.collapse = ns.RcvCollapsed
	a.harm = a.loss > 0 || a.collapse.V > 0

	m := &ev.Memory
	if m.TCPPagesMax.Known && m.TCPMem[1].Known && m.TCPMem[1].V > 0 {
		a.pressureKnown = true
		a.pressure = m.TCPPagesMax.V >= m.TCPMem[1].V
	}
	for _, v := range []Value{ns.MemoryPressures, ns.MemoryPressuresChronoMs} {
		if v.Known {
			a.pressureKnown = true
			a.pressure = a.pressure || v.V > 0
		}
	}

	if ev.BPF != nil {
		a.bpf = map[bpfKey]*bpfGroup{}
		get := func(k bpfKey) *bpfGroup {
			b := a.bpf[k]
			if b == nil {
				b = &bpfGroup{}
				a.bpf[k] = b
			}
			return b
		}
		for _, d := range ev.BPF.Drops {
			b := get(bpfKey{d.Role, d.Port, d.Cgroup})
			switch reasonClass(d.Reason) {
			case reasonOverflow:
				if d.RcvbufLocked {
					b.overflowLocked = addSat(b.overflowLocked, d.Count)
				} else {
					b.overflowUnlocked = addSat(b.overflowUnlocked, d.Count)
				}
			case reasonBacklog:
				if d.RcvbufLocked {
					b.backlogLocked = addSat(b.backlogLocked, d.Count)
				} else {
					b.backlogUnlocked = addSat(b.backlogUnlocked, d.Count)
				}
			case reasonZeroWindow:
				b.zeroWindow = addSat(b.zeroWindow, d.Count)
			default:
				b.other = addSat(b.other, d.Count)
			}
		}
		for _, gr := range ev.BPF.Growth {
			b := get(bpfKey{gr.Role, gr.Port, gr.Cgroup})
			b.grow = Val(addSat(b.grow.V, gr.Count))
		}
	}

	for i := range ev.Groups {
		a.groups = append(a.groups, a.view(&ev.Groups[i]))
	}
	return a
}

func (a *analysis) view(g *Group) *groupView {
	v := &groupView{g: g, n: max(a.ev.Samples, len(g.Samples))}
	if a.bpf != nil {
		v.bpf = a.bpf[bpfKey{g.Key.Role, g.Key.Port, g.Key.Cgroup}]
	}
	first := true
	v.constant = true
	for _, s := range g.Samples {
		v.maxSockets = max(v.maxSockets, s.Sockets)
		if s.Full > 0 {
			v.fullSamples++
			v.maxFull = max(v.maxFull, s.Full)
		}
		if s.ZeroWindow.Known {
			v.zeroKnown = true
			if s.ZeroWindow.V > 0 {
				v.zeroSamples++
				v.maxZero = max(v.maxZero, s.ZeroWindow.V)
			}
		}
		v.locked = maxValue(v.locked, s.Locked)
		v.atMax = maxValue(v.atMax, s.AtTCPRmemMax)
		v.capped = maxValue(v.capped, s.AtRmemMaxCap)
		if s.Rcvbuf > 0 {
			v.maxFill = max(v.maxFill, float64(s.RmemAlloc)/float64(s.Rcvbuf))
		}
		if s.Sockets == 0 {
			continue
		}
		avg := float64(s.Rcvbuf) / float64(s.Sockets)
		if first {
			v.firstAvg, v.value = avg, s.RcvbufMin
			first = false
		}
		v.lastAvg = avg
		v.maxRcvbuf = max(v.maxRcvbuf, s.RcvbufMax)
		if s.RcvbufMin != s.RcvbufMax || s.RcvbufMin != v.value {
			v.constant = false
		}
	}
	if first {
		v.constant = false
	}
	v.persistent = v.fullSamples > 0 && 2*v.fullSamples >= v.n
	v.grew = v.lastAvg > v.firstAvg*1.01 || (v.bpf != nil && v.bpf.grow.V > 0)
	return v
}

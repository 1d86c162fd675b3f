package diagnose

import "math"

// DefaultFullRatio is the fill (rmem_alloc / rcvbuf) at which a socket counts as full when SampleOptions
// does not say otherwise; it should be the sockets collector's --collector.sockets.full-ratio.
const DefaultFullRatio = 0.9

// SampleOptions say how one dump's sockets are counted into GroupSamples.
type SampleOptions struct {
	FullRatio float64 // 0: DefaultFullRatio
	// TCPInfo: tcp_info was read for (at least) every full socket, so SocketReading.ZeroWindow is meaningful.
	TCPInfo bool
	// LockBit: the SO_RCVBUF lock bit was read for every socket, so SocketReading.Locked is meaningful.
	LockBit bool
	// Sysctl gives tcp_rmem[2] and rmem_max for AtTCPRmemMax and AtRmemMaxCap (unknown when they are).
	Sysctl Sysctl
}

// SocketReading is what one non-listening socket of a dump contributes to its group's sample.
type SocketReading struct {
	RecvQ     uint64 // idiag_rqueue
	RmemAlloc uint64 // skmeminfo rmem_alloc
	Rcvbuf    uint64 // skmeminfo rcvbuf
	// ZeroWindow: tcp_info tcpi_rcv_wnd is 0 (an ESTABLISHED socket advertising a closed window).
	ZeroWindow bool
	// Locked: sk_userlocks & SOCK_RCVBUF_LOCK.
	Locked bool
}

// Add counts one socket into s. Call it for every socket of the group in one dump, and append s to the
// group's Samples once the dump is over (a group absent from a dump simply has no sample for it).
func (s *GroupSample) Add(r SocketReading, o *SampleOptions) {
	ratio := o.FullRatio
	if !(ratio > 0) || math.IsInf(ratio, 0) {
		ratio = DefaultFullRatio
	}
	if s.Sockets == 0 || r.Rcvbuf < s.RcvbufMin {
		s.RcvbufMin = r.Rcvbuf
	}
	s.RcvbufMax = max(s.RcvbufMax, r.Rcvbuf)
	s.Sockets = addSat(s.Sockets, 1)
	s.RecvQ = addSat(s.RecvQ, r.RecvQ)
	s.RmemAlloc = addSat(s.RmemAlloc, r.RmemAlloc)
	s.Rcvbuf = addSat(s.Rcvbuf, r.Rcvbuf)
	if r.Rcvbuf > 0 && float64(r.RmemAlloc) >= ratio*float64(r.Rcvbuf) {
		s.Full++
	}
	count := func(v *Value, known, yes bool) {
		if known {
			v.Known = true
			if yes {
				v.V++
			}
		}
	}
	count(&s.ZeroWindow, o.TCPInfo, r.ZeroWindow)
	count(&s.Locked, o.LockBit, r.Locked)
	rmem2, rmemMax := o.Sysctl.TCPRmem[2], o.Sysctl.RmemMax
	count(&s.AtTCPRmemMax, rmem2.Known, rmem2.Known && r.Rcvbuf >= rmem2.V)
	count(&s.AtRmemMaxCap, rmemMax.Known, rmemMax.Known && rmemMax.V > 0 && rmemMax.V <= math.MaxUint64/2 && r.Rcvbuf == 2*rmemMax.V)
}

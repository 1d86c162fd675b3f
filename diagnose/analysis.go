package diagnose

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

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

// overflowing says whether the group's sockets are where the namespace's collapse or loss happened, and how
// sure that is: exact with bpf drops of the group, inferred from full sockets otherwise.
func (a *analysis) overflowing(v *groupView) (yes bool, conf Confidence, why string) {
	if v.bpf != nil && v.bpf.overflowLocked+v.bpf.overflowUnlocked > 0 {
		return true, High, ""
	}
	if !a.harm || v.fullSamples == 0 {
		return false, Low, ""
	}
	if a.bpfDrops() {
		// The bpf collector counted every drop by group: a group without overflow drops lost nothing. The
		// namespace's collapse goes to the dropping groups when there are any, to full groups otherwise.
		if a.bpfOverflowAnywhere() || a.collapse.V == 0 {
			return false, Low, ""
		}
		return true, Medium, "bpf saw no drop; the namespace's collapse counter cannot be split by socket group and is put on this group because its sockets were full"
	}
	conf = Medium
	why = "without the bpf collector the namespace's collapse and drop counters cannot be split by socket group; " +
		"they are put on this group because its sockets were full"
	if others := a.fullGroups(); others > 1 {
		conf = Low
		why = fmt.Sprintf("%d socket groups were full in the window and the namespace's counters cannot be split "+
			"between them without the bpf collector", others)
	} else if !v.persistent {
		conf = Low
		why = fmt.Sprintf("its sockets were full in only %d of %d samples", v.fullSamples, v.n)
	}
	return true, conf, why
}

// bpfDrops: the bpf collector counted receive drops by group over the window.
func (a *analysis) bpfDrops() bool { return a.ev.BPF != nil && a.ev.Sources.BPFDrops }

func (a *analysis) bpfOverflowAnywhere() bool {
	for _, b := range a.bpf {
		if b.overflowLocked+b.overflowUnlocked > 0 {
			return true
		}
	}
	return false
}

func (a *analysis) fullGroups() int {
	n := 0
	for _, v := range a.groups {
		if v.fullSamples > 0 {
			n++
		}
	}
	return n
}

// Lock states of a group's sockets.
const (
	lockUnknown = iota
	lockYes
	lockNo
)

// lockState tells whether the group's sockets have SO_RCVBUF set: exact from bpf or the lock bit, else
// inferred from rcvbuf not moving while the kernel had to make room. tcp_clamp_window (net/ipv4/tcp_input.c)
// raises sk_rcvbuf toward tcp_rmem[2] for every socket without SOCK_RCVBUF_LOCK that hits its rcvbuf, unless
// TCP is under memory pressure; tcp_rcv_space_adjust grows only unlocked sockets too.
func (a *analysis) lockState(v *groupView) (state int, conf Confidence, why string) {
	if b := v.bpf; b != nil && b.overflowLocked+b.overflowUnlocked > 0 {
		if b.overflowLocked > 0 {
			return lockYes, High, fmt.Sprintf("bpf: %d of the group's receive drops were on sockets with rcvbuf_locked=true", b.overflowLocked)
		}
		return lockNo, High, "bpf: the group's receive drops were all on sockets with rcvbuf_locked=false"
	}
	if v.locked.Known {
		if v.locked.V > 0 {
			return lockYes, High, fmt.Sprintf("%d of the group's sockets had SO_RCVBUF set (SOCK_RCVBUF_LOCK)", v.locked.V)
		}
		return lockNo, High, "none of the group's sockets had SO_RCVBUF set (SOCK_RCVBUF_LOCK)"
	}
	rmem2 := a.ev.Sysctl.TCPRmem[2]
	if v.grew {
		return lockNo, Medium, fmt.Sprintf("rcvbuf grew from %s to %s per socket over the window: autotuned, not pinned",
			bytesStr(uint64(v.firstAvg)), bytesStr(uint64(v.lastAvg)))
	}
	if v.constant && len(v.g.Samples) >= 2 && rmem2.Known && v.value < rmem2.V {
		conf = Medium
		if !a.pressureKnown || a.pressure {
			conf = Low
		}
		return lockYes, conf, fmt.Sprintf("without the bpf collector the SO_RCVBUF lock bit cannot be read; pinning is inferred "+
			"from every socket's rcvbuf staying at %s in each of its %d samples while the kernel had to make room, "+
			"which tcp_clamp_window would have grown toward tcp_rmem[2] (%s) on an unlocked socket",
			bytesStr(v.value), len(v.g.Samples), bytesStr(rmem2.V))
	}
	return lockUnknown, Low, ""
}

// isCapped: the rcvbuf is what SO_RCVBUF gives for a request at or above net.core.rmem_max. sk_setsockopt
// (net/core/sock.c) caps the request at rmem_max and __sock_set_rcvbuf stores twice it.
func (a *analysis) isCapped(v *groupView) bool {
	if v.capped.Known && v.capped.V > 0 {
		return true
	}
	rm := a.ev.Sysctl.RmemMax
	return rm.Known && rm.V > 0 && rm.V <= math.MaxUint64/2 && v.constant && v.value == 2*rm.V
}

// slowReaderEvidence: the group's queues stay full and its window closes while its buffers do not grow.
func (a *analysis) slowReaderEvidence(v *groupView) (yes bool, conf Confidence, why string) {
	if !v.persistent || v.grew {
		return false, Low, ""
	}
	ns := &a.ev.Netstat
	switch {
	case v.zeroKnown && v.zeroSamples > 0:
		if 2*v.zeroSamples >= v.n {
			return true, High, ""
		}
		return true, Medium, fmt.Sprintf("its sockets advertised a zero window in only %d of %d samples", v.zeroSamples, v.n)
	case v.zeroKnown:
		return false, Low, ""
	case ns.ToZeroWindowAdv.Known && ns.ToZeroWindowAdv.V > 0:
		return true, Medium, "zero windows are counted for the whole namespace (TCPToZeroWindowAdv); without tcp_info " +
			"it cannot be told that these sockets are the ones advertising them"
	case ns.ToZeroWindowAdv.Known:
		return false, Low, ""
	}
	return true, Low, "neither tcp_info nor the zero-window counters were available: a closed window could not be seen"
}

// addSat adds without wrapping: a sum of huge counters stays huge.
func addSat(a, b uint64) uint64 {
	if a > math.MaxUint64-b {
		return math.MaxUint64
	}
	return a + b
}

func maxValue(a, b Value) Value {
	if !b.Known {
		return a
	}
	if !a.Known || b.V > a.V {
		return b
	}
	return a
}

// bytesStr prints a byte count with its binary size when that helps: "131072 bytes (128 KiB)".
func bytesStr(v uint64) string {
	s := strconv.FormatUint(v, 10) + " bytes"
	units := []string{"KiB", "MiB", "GiB", "TiB"}
	f := float64(v)
	u := -1
	for f >= 1024 && u < len(units)-1 {
		f /= 1024
		u++
	}
	if u < 0 {
		return s
	}
	return fmt.Sprintf("%s (%s %s)", s, strconv.FormatFloat(math.Round(f*10)/10, 'f', -1, 64), units[u])
}

// rateStr is "N (x/s)" over the window, or "N" when the window is unknown.
func (a *analysis) rateStr(n uint64) string {
	if a.win <= 0 {
		return strconv.FormatUint(n, 10)
	}
	return fmt.Sprintf("%d (%s/s)", n, fmtFloat(float64(n)/a.win))
}

func fmtFloat(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "?"
	}
	switch {
	case f >= 100:
		return strconv.FormatFloat(math.Round(f), 'f', -1, 64)
	case f >= 1:
		return strconv.FormatFloat(math.Round(f*10)/10, 'f', -1, 64)
	}
	return strconv.FormatFloat(f, 'g', 2, 64)
}

// perSegs is ", x per 1000 segments received" when InSegs is known and not 0.
func (a *analysis) perSegs(n uint64) string {
	in := a.ev.Netstat.InSegs
	if !in.Known || in.V == 0 {
		return ""
	}
	return fmt.Sprintf(", %s per 1000 segments received", fmtFloat(float64(n)*1000/float64(in.V)))
}

// matchers renders PromQL label matchers for the given label pairs, skipping empty values.
func matchers(pairs ...string) string {
	var b strings.Builder
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(pairs[i])
		b.WriteByte('=')
		b.WriteString(strconv.Quote(pairs[i+1]))
	}
	if b.Len() == 0 {
		return ""
	}
	return "{" + b.String() + "}"
}

// groupMatchers selects a group's series of the sockets collector's metrics.
func groupMatchers(k GroupKey) string {
	return matchers("role", k.Role, "port", k.Port, "cgroup", k.Cgroup, "process", k.Process)
}

// describe names a group for a person.
func describe(k GroupKey) string {
	var s string
	switch k.Role {
	case "server":
		s = "server sockets on local port " + k.Port
	case "client":
		s = "client sockets to remote port " + k.Port
	default:
		s = "sockets of port " + k.Port
	}
	if k.Process != "" {
		s += " of process " + k.Process
	}
	if k.Cgroup != "" {
		s += " in cgroup " + k.Cgroup
	}
	return s
}

func scopeOf(k GroupKey) Scope {
	return Scope(k)
}

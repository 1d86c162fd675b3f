package diagnose

import (
	"fmt"
	"math"
)

// Lock states of a group's sockets.
const (
	lockUnknown = iota
	lockYes
	lockNo
)

// overflowing says whether the group's sockets are where the namespace's collapse or loss happened, and how
// sure that is: exact with bpf drops of the group, inferred from full sockets otherwise.
func (a *analysis) overflowing(v *groupView) (yes bool, conf Confidence, why string) {
	if v.bpf != nil && v.bpf.overflow() > 0 {
		// bpf labels drops by role, port and cgroup, not by process: of the groups sharing those, the ones
		// seen full are the ones dropping.
		if v.fullSamples > 0 || !a.siblingFull(v) {
			return true, High, ""
		}
		return false, Low, ""
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
		if b.overflow() > 0 {
			return true
		}
	}
	return false
}

// siblingFull: another group with the same role, port and cgroup (another process) was full.
func (a *analysis) siblingFull(v *groupView) bool {
	k := v.g.Key
	for _, o := range a.groups {
		ok := o.g.Key
		if o != v && o.fullSamples > 0 && ok.Role == k.Role && ok.Port == k.Port && ok.Cgroup == k.Cgroup && ok.Process != k.Process {
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

// lockState tells whether the group's sockets have SO_RCVBUF set: exact from bpf or the lock bit, else
// inferred from rcvbuf not moving while the kernel had to make room. tcp_clamp_window (net/ipv4/tcp_input.c)
// raises sk_rcvbuf toward tcp_rmem[2] for every socket without SOCK_RCVBUF_LOCK that hits its rcvbuf, unless
// TCP is under memory pressure; tcp_rcv_space_adjust grows only unlocked sockets too.
func (a *analysis) lockState(v *groupView) (state int, conf Confidence, why string) {
	if b := v.bpf; b != nil && b.overflow() > 0 {
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

// groupClass is the buffer cause of one group, if any.
type groupClass struct {
	cause   string
	conf    Confidence
	reasons []string // why the confidence is not high, or how the cause was told
	harm    Harm
	weight  float64
}

// classify names the buffer cause of a group: pinned or capped (overflowing with SO_RCVBUF set), a slow
// reader, or tcp_rmem max too low (overflowing unlocked at the max). At most one per group, so that the fix
// is not contradicted by another finding on the same sockets.
func (a *analysis) classify(v *groupView) groupClass {
	over, oconf, owhy := a.overflowing(v)
	lock, lconf, lwhy := lockUnknown, Low, ""
	if over {
		lock, lconf, lwhy = a.lockState(v)
		if lock == lockYes && lconf != High && a.cgroupPressure(v) {
			lconf = Low
			lwhy += "; but the cgroup was at its memory limit, under which the kernel does not grow unlocked buffers either"
		}
	}
	harm, weight := a.groupHarm(v)
	if over && lock == lockYes {
		c := groupClass{cause: CauseRcvbufPinned, conf: minConf(oconf, lconf), harm: harm, weight: weight}
		if a.isCapped(v) {
			c.cause = CauseRcvbufCappedByRmemMax
		}
		c.reasons = nonEmpty(lwhy, owhy)
		return c
	}
	if slow, sconf, swhy := a.slowReaderEvidence(v); slow {
		return groupClass{cause: CauseSlowReader, conf: sconf, reasons: nonEmpty(swhy), harm: HarmStall, weight: float64(v.maxFull)}
	}
	if !over {
		return groupClass{}
	}
	rmem2 := a.ev.Sysctl.TCPRmem[2]
	atMax := (v.atMax.Known && v.atMax.V > 0) || (rmem2.Known && rmem2.V > 0 && v.maxRcvbuf >= rmem2.V)
	if !atMax || a.pressure || a.cgroupPressure(v) {
		return groupClass{}
	}
	conf := oconf
	var reasons []string
	if lock != lockNo {
		conf = minConf(conf, Medium)
		reasons = append(reasons, "whether these sockets have SO_RCVBUF set could not be read (no bpf collector); "+
			"at tcp_rmem[2] a pinned and an autotuned socket look alike")
	} else {
		reasons = append(reasons, lwhy)
	}
	if !v.zeroKnown {
		conf = minConf(conf, Medium)
		reasons = append(reasons, "without tcp_info it could not be told whether the reader keeps up (zero windows)")
	}
	return groupClass{cause: CauseTCPRmemMaxLow, conf: conf, reasons: nonEmpty(append(reasons, owhy)...), harm: harm, weight: weight}
}

// groupHarm is how bad the group's overflow is: data lost when bpf saw it drop or the namespace lost data,
// CPU when it only collapsed.
func (a *analysis) groupHarm(v *groupView) (Harm, float64) {
	if v.bpf != nil && v.bpf.overflow() > 0 {
		return HarmDataLost, float64(v.bpf.overflow())
	}
	if !a.bpfDrops() && a.loss > 0 {
		return HarmDataLost, float64(a.loss)
	}
	return HarmCPU, float64(a.collapse.V)
}

// groupRule builds one finding per group classified as cause.
func groupRule(a *analysis, cause string, build func(*groupView, groupClass) Finding) []Finding {
	var out []Finding
	for _, v := range a.groups {
		c := a.classify(v)
		if c.cause != cause {
			continue
		}
		f := build(v, c)
		f.Cause, f.Confidence, f.Scope, f.Harm, f.Weight = cause, c.conf, scopeOf(v.g.Key), c.harm, c.weight
		for _, r := range c.reasons {
			f.Evidence = append(f.Evidence, fmt.Sprintf("confidence %s: %s", c.conf, r))
		}
		out = append(out, f)
	}
	return out
}

package diagnose

import (
	"fmt"
	"math"
)

// ruleTCPMemPressure: all TCP memory reached net.ipv4.tcp_mem's pressure or max level. Under pressure
// (tcp_under_memory_pressure) tcp_clamp_window and tcp_grow_window stop growing buffers and tcp_prune_queue
// shrinks the window; at max, sk_rmem_schedule fails (__sk_mem_raise_allocated, net/core/sock.c), so
// tcp_data_queue drops with TCPRcvQDrop and connections are reset (TCPAbortOnMemory). tcp_mem is host-wide,
// but the pressure counters are counted in the namespace of the socket that crossed the level.
func ruleTCPMemPressure(a *analysis) []Finding {
	ev := a.ev
	ns, m := &ev.Netstat, &ev.Memory
	var evidence []string
	atMax := false
	if m.TCPPagesMax.Known && m.TCPMem[1].Known && m.TCPMem[1].V > 0 {
		s := fmt.Sprintf("TCP memory reached %s (sockstat, host-wide) against tcp_mem pressure %s and max %s",
			a.pagesStr(m.TCPPagesMax.V), a.pagesStr(m.TCPMem[1].V), a.pagesStr(m.TCPMem[2].V))
		if m.TCPPagesMax.V >= m.TCPMem[1].V {
			evidence = append(evidence, s)
		}
		if m.TCPMem[2].Known && m.TCPMem[2].V > 0 && m.TCPPagesMax.V >= m.TCPMem[2].V {
			atMax = true
		}
	}
	if ns.MemoryPressures.Known && ns.MemoryPressures.V > 0 {
		evidence = append(evidence, fmt.Sprintf("namespace: TCPMemoryPressures %s: TCP crossed the pressure level", a.rateStr(ns.MemoryPressures.V)))
	}
	if ns.MemoryPressuresChronoMs.Known && ns.MemoryPressuresChronoMs.V > 0 {
		evidence = append(evidence, fmt.Sprintf("namespace: %s s under memory pressure (TCPMemoryPressuresChrono) in a %s s window",
			fmtFloat(float64(ns.MemoryPressuresChronoMs.V)/1000), fmtFloat(a.win)))
	}
	if ns.AbortOnMemory.Known && ns.AbortOnMemory.V > 0 {
		atMax = true
		evidence = append(evidence, fmt.Sprintf("namespace: TCPAbortOnMemory %s: connections reset for lack of TCP memory", a.rateStr(ns.AbortOnMemory.V)))
	}
	if len(evidence) == 0 {
		return nil
	}
	harm, weight := HarmStall, float64(ns.MemoryPressuresChronoMs.V)
	if atMax || a.loss > 0 {
		harm, weight = HarmDataLost, float64(addSat(a.loss, ns.AbortOnMemory.V))
		evidence = append(evidence, a.hostHarmEvidence())
	}
	if !ev.Sources.HostNetns {
		evidence = append(evidence, "tcp_mem is shared by every network namespace of the host: the sockets using it may be in other pods or containers")
	}
	fix := []string{
		"Find the sockets holding the memory: sort by rmem_alloc in ss -tmn (skmem r), or by sockbuf_rmem_alloc_bytes per group; " +
			"full buffers of slow readers and many pinned large SO_RCVBUF sockets are the usual holders.",
	}
	if m.TCPMem[0].Known && m.TCPMem[1].Known && m.TCPMem[2].Known {
		fix = append(fix, fmt.Sprintf("If the host has memory to spare, raise the limits (pages of %d bytes): sysctl -w net.ipv4.tcp_mem=\"%d %d %d\" (now \"%d %d %d\"), and persist it in /etc/sysctl.d/.",
			max(m.PageSize, 1), mulSat(2, m.TCPMem[0].V), mulSat(2, m.TCPMem[1].V), mulSat(2, m.TCPMem[2].V), m.TCPMem[0].V, m.TCPMem[1].V, m.TCPMem[2].V))
	} else {
		fix = append(fix, "If the host has memory to spare, raise net.ipv4.tcp_mem (pages) in the host's namespace, and persist it in /etc/sysctl.d/.")
	}
	fix = append(fix, "Otherwise cap what one socket may hold: lower net.ipv4.tcp_rmem max, so that many connections cannot exhaust tcp_mem together.")
	return []Finding{{
		Cause: CauseTCPMemPressure, Confidence: High, Harm: harm, Weight: weight,
		Evidence: evidence, Fix: fix,
		Verify: "rate(sockbuf_tcp_memory_pressure_seconds_total[5m])",
	}}
}

// pagesStr prints pages, as bytes when the page size is known.
func (a *analysis) pagesStr(pages uint64) string {
	if ps := a.ev.Memory.PageSize; ps > 0 {
		return fmt.Sprintf("%d pages = %s", pages, bytesStr(mulSat(pages, ps)))
	}
	return fmt.Sprintf("%d pages", pages)
}

// cgroupPressure: the cgroup's memory hit memory.max in the window. Socket buffers are charged to the
// cgroup (mem_cgroup_charge_skmem); when the charge fails the socket cannot queue what arrives, and
// tcp_under_memory_pressure is true for the cgroup's sockets, so their buffers stop growing.
func (a *analysis) cgroupPressure(name string) bool {
	if name == "" {
		return false
	}
	for i := range a.ev.Cgroups {
		c := &a.ev.Cgroups[i]
		if c.Cgroup == name && c.EventsMax.Known && c.EventsMax.V > 0 {
			return true
		}
	}
	return false
}

// ruleCgroupMemoryPressure: socket memory charged to a cgroup at its limit. It needs a receive-side sign that
// sockets suffered (bpf memory limit hits of kind recv for the cgroup, bpf drops of its sockets, or the
// namespace's drops while the cgroup's sockets were full), not only a cgroup near its limit.
func ruleCgroupMemoryPressure(a *analysis) []Finding {
	var out []Finding
	for i := range a.ev.Cgroups {
		c := &a.ev.Cgroups[i]
		if c.Cgroup == "" {
			continue
		}
		var hits, drops uint64
		if b := a.ev.BPF; b != nil {
			for _, h := range b.LimitHits {
				if h.Cgroup == c.Cgroup && h.Kind == "recv" {
					hits = addSat(hits, h.Count)
				}
			}
			for _, d := range b.Drops {
				if d.Cgroup == c.Cgroup && reasonClass(d.Reason) == reasonOverflow {
					drops = addSat(drops, d.Count)
				}
			}
		}
		limitHit := c.EventsMax.Known && c.EventsMax.V > 0
		full := false
		for _, v := range a.groups {
			if v.g.Key.Cgroup == c.Cgroup && v.fullSamples > 0 {
				full = true
			}
		}
		var conf Confidence
		var why string
		switch {
		case hits > 0 && a.pressureKnown && !a.pressure:
			conf = High
		case hits > 0:
			conf, why = Medium, "sock_exceed_buf_limit fires for tcp_mem as well as for the cgroup's limit, and tcp_mem pressure could not be ruled out"
		case limitHit && drops > 0:
			conf = High
		case limitHit && full && a.loss > 0:
			conf, why = Medium, "without the bpf collector the namespace's drops cannot be tied to this cgroup's sockets"
		default:
			continue
		}
		ev := []string{fmt.Sprintf("cgroup %s: memory.current up to %s of memory.max %s; socket buffers (memory.stat sock) up to %s",
			c.Cgroup, optBytes(c.CurrentMax), optBytes(c.Max), optBytes(c.SockMax))}
		if limitHit {
			ev = append(ev, fmt.Sprintf("memory.events max rose by %d (high %s, oom %s): allocations hit memory.max", c.EventsMax.V, valueStr(c.EventsHigh), valueStr(c.EventsOOM)))
		}
		if hits > 0 {
			ev = append(ev, fmt.Sprintf("bpf: %s receive allocations of the cgroup's sockets refused (sock_exceed_buf_limit, kind recv)", a.rateStr(hits)))
		}
		if drops > 0 {
			ev = append(ev, fmt.Sprintf("bpf: %s packets of the cgroup's sockets dropped for lack of receive memory", a.rateStr(drops)))
		} else {
			ev = append(ev, a.hostHarmEvidence())
		}
		if why != "" {
			ev = append(ev, fmt.Sprintf("confidence %s: %s", conf, why))
		}
		harm, weight := HarmStall, float64(hits)
		if drops > 0 || a.loss > 0 {
			harm, weight = HarmDataLost, float64(max(drops, a.loss))
		}
		verify := "rate(sockbuf_tcp_rcvq_drop_total[5m]) + rate(sockbuf_tcp_ofo_drop_total[5m])"
		if a.ev.Sources.BPFLimits {
			verify = "sum(rate(sockbuf_socket_memory_limit_hits_total" + matchers("kind", "recv", "cgroup", c.Cgroup) + "[5m]))"
		}
		out = append(out, Finding{
			Cause: CauseCgroupMemoryPressure, Confidence: conf, Scope: Scope{Cgroup: c.Cgroup}, Harm: harm, Weight: weight,
			Evidence: ev,
			Fix: []string{
				"Raise the cgroup's memory limit, which socket buffers count against: resources.limits.memory of the Kubernetes container, MemoryMax= of the systemd unit, or memory.max of the cgroup.",
				"Or make its sockets hold less: read them faster (full buffers of slow readers are charged to the cgroup), and do not pin large SO_RCVBUF sizes.",
			},
			Verify: verify,
		})
	}
	return out
}

func optBytes(v Value) string {
	if !v.Known {
		return "n/a"
	}
	if v.V == math.MaxUint64 {
		return "max"
	}
	return bytesStr(v.V)
}

package diagnose

import (
	"cmp"
	"fmt"
	"math"
	"slices"
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

// cgroupPressure: the memory cgroup of a group's sockets hit its limit in the window. Socket buffers are
// charged to the cgroup (mem_cgroup_charge_skmem); when the charge fails the socket cannot queue what arrives,
// and tcp_under_memory_pressure is true for the cgroup's sockets, so their buffers stop growing.
func (a *analysis) cgroupPressure(v *groupView) bool {
	for i := range a.ev.Cgroups {
		c := &a.ev.Cgroups[i]
		if c.Cgroup != "" && inMemcg(v.g, c) && limitHit(c) {
			return true
		}
	}
	return false
}

// inMemcg: the group's sockets are charged to the memory cgroup c. A group whose memory cgroup was not found
// belongs to the cgroup named by its cgroup label (the unified hierarchy, where they are the same cgroup).
func inMemcg(g *Group, c *CgroupMemory) bool {
	if g.MemoryCgroup != "" {
		return g.MemoryCgroup == c.Cgroup
	}
	return !c.V1 && g.Key.Cgroup == c.Cgroup
}

// limitHit: the cgroup's memory reached its limit in the window. v2: memory.events max rose while socket
// memory was charged. v1: TCP memory sampled at its limit, or its high-water mark rose to the limit, or the
// failure count rose (the kernel may charge past the limit where it must, so usage can exceed it).
func limitHit(c *CgroupMemory) bool {
	if !c.V1 {
		return c.EventsMax.Known && c.EventsMax.V > 0 && !(c.SockMax.Known && c.SockMax.V == 0)
	}
	if !c.TCPLimit.Known {
		return false
	}
	return (c.TCPUsageMax.Known && c.TCPUsageMax.V >= c.TCPLimit.V) ||
		(c.TCPMaxUsageRise.Known && c.TCPMaxUsageRise.V > 0 && c.TCPMaxUsage.V >= c.TCPLimit.V) ||
		(c.TCPFailcnt.Known && c.TCPFailcnt.V > 0)
}

// ruleCgroupMemoryPressure: socket memory charged to a cgroup at its limit. It needs a receive-side sign that
// sockets suffered (bpf memory limit hits of kind recv for the cgroup, bpf drops of its sockets, or the
// namespace's drops while the cgroup held sockets), not only a cgroup near its limit.
func ruleCgroupMemoryPressure(a *analysis) []Finding {
	var out []Finding
	for i := range a.ev.Cgroups {
		c := &a.ev.Cgroups[i]
		if c.Cgroup == "" {
			continue
		}
		// The groups charged to it, the one holding the most unread data first: it names the scope.
		var members []*groupView
		for _, v := range a.groups {
			if inMemcg(v.g, c) {
				members = append(members, v)
			}
		}
		slices.SortFunc(members, func(x, y *groupView) int {
			kx, ky := x.g.Key, y.g.Key
			return cmp.Or(-cmp.Compare(maxRecvQ(x.g), maxRecvQ(y.g)), cmp.Compare(kx.Role, ky.Role), cmp.Compare(kx.Port, ky.Port),
				cmp.Compare(kx.Cgroup, ky.Cgroup), cmp.Compare(kx.Process, ky.Process))
		})
		var hits, drops uint64
		if b := a.ev.BPF; b != nil {
			// The bpf counts carry the sockets' cgroup v2 name; on v1 that is not the memory cgroup, and
			// only the drops of the member groups' (role, port, cgroup) are this cgroup's.
			if !c.V1 {
				for _, h := range b.LimitHits {
					if h.Cgroup == c.Cgroup && h.Kind == "recv" {
						hits = addSat(hits, h.Count)
					}
				}
			}
			for _, d := range b.Drops {
				if reasonClass(d.Reason) != reasonOverflow {
					continue
				}
				if !c.V1 && d.Cgroup == c.Cgroup {
					drops = addSat(drops, d.Count)
					continue
				}
				for _, v := range members {
					if d.Role == v.g.Key.Role && d.Port == v.g.Key.Port && d.Cgroup == v.g.Key.Cgroup {
						drops = addSat(drops, d.Count)
						break
					}
				}
			}
		}
		hit := limitHit(c)
		var conf Confidence
		var why string
		switch {
		case hits > 0 && a.pressureKnown && !a.pressure:
			conf = High
		case hits > 0:
			conf, why = Medium, "sock_exceed_buf_limit fires for tcp_mem as well as for the cgroup's limit, and tcp_mem pressure could not be ruled out"
		case hit && drops > 0:
			conf = High
		case hit && len(members) > 0 && a.loss > 0:
			conf, why = Medium, "without the bpf collector the namespace's drops cannot be tied to this cgroup's sockets"
		default:
			continue
		}
		var ev []string
		if c.V1 {
			ev = append(ev, fmt.Sprintf("memory cgroup %s (v1): TCP memory (memory.kmem.tcp.usage_in_bytes) up to %s of its limit %s; high-water mark %s (rose by %s in the window)",
				c.Cgroup, optBytes(c.TCPUsageMax), optBytes(c.TCPLimit), optBytes(c.TCPMaxUsage), optBytes(c.TCPMaxUsageRise)))
		} else {
			ev = append(ev, fmt.Sprintf("cgroup %s: memory.current up to %s of memory.max %s; socket buffers (memory.stat sock) up to %s",
				c.Cgroup, optBytes(c.CurrentMax), optBytes(c.Max), optBytes(c.SockMax)))
			if hit {
				ev = append(ev, fmt.Sprintf("memory.events max rose by %d (high %s, oom %s): allocations hit memory.max", c.EventsMax.V, valueStr(c.EventsHigh), valueStr(c.EventsOOM)))
			}
		}
		if hits > 0 {
			ev = append(ev, fmt.Sprintf("bpf: %s receive allocations of the cgroup's sockets refused (sock_exceed_buf_limit, kind recv)", a.rateStr(hits)))
		}
		if drops > 0 {
			ev = append(ev, fmt.Sprintf("bpf: %s packets of the cgroup's sockets dropped for lack of receive memory", a.rateStr(drops)))
		} else {
			ev = append(ev, a.hostHarmEvidence())
		}
		scope := Scope{Cgroup: c.Cgroup}
		if len(members) > 0 {
			k := members[0].g.Key
			ev = append(ev, fmt.Sprintf("%d socket group(s) charged to it; the one with the most unread data: %s, up to %s unread",
				len(members), describe(k), bytesStr(maxRecvQ(members[0].g))))
			scope.Role, scope.Port, scope.Process = k.Role, k.Port, k.Process
		}
		if why != "" {
			ev = append(ev, fmt.Sprintf("confidence %s: %s", conf, why))
		}
		harm, weight := HarmStall, float64(hits)
		if drops > 0 || a.loss > 0 {
			harm, weight = HarmDataLost, float64(max(drops, a.loss))
		}
		verify := "rate(sockbuf_tcp_rcvq_drop_total[5m]) + rate(sockbuf_tcp_ofo_drop_total[5m])"
		if a.ev.Sources.BPFLimits && !c.V1 {
			verify = "sum(rate(sockbuf_socket_memory_limit_hits_total" + matchers("kind", "recv", "cgroup", c.Cgroup) + "[5m]))"
		}
		if c.V1 {
			// The memcg collector's peak over the limit: at or over 1 while the limit bites, far below once
			// it is raised.
			m := matchers("cgroup", c.Cgroup)
			verify = "sockbuf_memcg_tcp_memory_max_usage_bytes" + m + " / sockbuf_memcg_tcp_memory_limit_bytes" + m
		}
		fix := []string{
			"Raise the cgroup's memory limit, which socket buffers count against: resources.limits.memory of the Kubernetes container, MemoryMax= of the systemd unit, or memory.max of the cgroup.",
			"Or make its sockets hold less: read them faster (full buffers of slow readers are charged to the cgroup), and do not pin large SO_RCVBUF sizes.",
		}
		if c.V1 {
			fix[0] = "Raise the cgroup's TCP memory limit (cgroup v1 memory.kmem.tcp.limit_in_bytes of " + c.Cgroup +
				", set by whatever manages the cgroup): received data beyond it is dropped rather than queued; on cgroup v2 socket memory counts against memory.max instead."
		}
		out = append(out, Finding{
			Cause: CauseCgroupMemoryPressure, Confidence: conf, Scope: scope, Harm: harm, Weight: weight,
			Evidence: ev, Fix: fix, Verify: verify,
		})
	}
	return out
}

// maxRecvQ is the most unread data of a group in one sample.
func maxRecvQ(g *Group) uint64 {
	var m uint64
	for _, s := range g.Samples {
		m = max(m, s.RecvQ)
	}
	return m
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

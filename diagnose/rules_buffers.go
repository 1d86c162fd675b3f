package diagnose

import (
	"fmt"
	"slices"
	"strings"
)

// The receive-buffer rules. Their ground truth is net/ipv4/tcp_input.c:
//   - tcp_data_queue and tcp_data_queue_ofo call tcp_try_rmem_schedule when rmem_alloc is over sk_rcvbuf or
//     the memory cannot be charged; it calls tcp_prune_queue.
//   - tcp_prune_queue counts PruneCalled on entry. When rmem_alloc >= sk_rcvbuf it calls tcp_clamp_window,
//     which, for a socket without SOCK_RCVBUF_LOCK and with TCP not under memory pressure, raises sk_rcvbuf
//     to rmem_alloc (at most tcp_rmem[2]). If that made room, it returns: nothing collapsed, nothing lost.
//   - Otherwise tcp_collapse_ofo_queue and tcp_collapse copy the queues into compact buffers, counting
//     TCPRcvCollapsed per buffer freed (tcp_collapse_one); then tcp_prune_ofo_queue throws out-of-order data
//     away (OfoPruned, drop reason tcp_ofo_queue_prune); if still over, RcvPruned and the segment is dropped:
//     tcp_data_queue counts TCPRcvQDrop, tcp_data_queue_ofo TCPOFODrop, both with drop reason proto_mem.
//   - tcp_rcv_space_adjust (autotuning) grows an unlocked socket's rcvbuf from what the application copied in
//     the last RTT: a reader that does not read never gets a bigger buffer, and the sender is stopped by a
//     zero window instead (TCPToZeroWindowAdv), which loses nothing.

// rulePinned: the application set SO_RCVBUF and its sockets overflow. A locked socket is never grown by
// tcp_clamp_window or tcp_rcv_space_adjust, so every burst beyond its fixed rcvbuf is collapsed (CPU) and,
// when that is not enough, dropped.
func rulePinned(a *analysis) []Finding {
	return groupRule(a, CauseRcvbufPinned, func(v *groupView, c groupClass) Finding {
		return Finding{
			Evidence: a.overflowEvidence(v),
			Fix:      pinnedFix(a, v),
			Verify:   a.overflowVerify(v),
		}
	})
}

// ruleCapped: the application asked SO_RCVBUF for net.core.rmem_max or more and got 2 × rmem_max, and the
// sockets overflow: sk_setsockopt (net/core/sock.c) silently caps the request at rmem_max.
func ruleCapped(a *analysis) []Finding {
	return groupRule(a, CauseRcvbufCappedByRmemMax, func(v *groupView, c groupClass) Finding {
		rm := a.ev.Sysctl.RmemMax.V
		ev := a.overflowEvidence(v)
		if a.ev.Sysctl.RmemMax.Known {
			ev = append(ev, fmt.Sprintf("rcvbuf %s is 2 × net.core.rmem_max (%s): the application asked SO_RCVBUF for at least %s and the kernel cut the request to rmem_max",
				bytesStr(mulSat(2, rm)), bytesStr(rm), bytesStr(rm)))
		} else {
			ev = append(ev, fmt.Sprintf("%s sockets with rcvbuf 2 × net.core.rmem_max: the application asked SO_RCVBUF for at least rmem_max and the kernel cut the request", valueStr(v.capped)))
		}
		fix := []string{
			fmt.Sprintf("Preferably stop setting SO_RCVBUF in %s, so that autotuning grows each buffer as needed up to net.ipv4.tcp_rmem max%s.",
				appName(v.g.Key), rmem2Str(a)),
			"Or let the requested size through: sysctl -w net.core.rmem_max=<the size the application asks for>, and persist it in /etc/sysctl.d/.",
		}
		if a.ev.Sysctl.RmemMax.Known {
			fix[1] = fmt.Sprintf("Or let the requested size through: sysctl -w net.core.rmem_max=<the size the application asks for> "+
				"(now %d; e.g. %d to double it), and persist it in /etc/sysctl.d/.", rm, mulSat(2, rm))
		}
		return Finding{Evidence: ev, Fix: fix, Verify: a.overflowVerify(v)}
	})
}

// ruleTCPRmemMaxLow: autotuned sockets reached net.ipv4.tcp_rmem[2] and still overflow while the reader keeps
// up: tcp_clamp_window and tcp_rcv_space_adjust stop at tcp_rmem[2].
func ruleTCPRmemMaxLow(a *analysis) []Finding {
	return groupRule(a, CauseTCPRmemMaxLow, func(v *groupView, c groupClass) Finding {
		r := a.ev.Sysctl.TCPRmem
		ev := append(a.overflowEvidence(v), fmt.Sprintf("sockets at net.ipv4.tcp_rmem max%s: up to %s in one sample; largest rcvbuf %s",
			rmem2Str(a), valueStr(v.atMax), bytesStr(v.maxRcvbuf)))
		fix := []string{"Raise the autotuning limit: sysctl -w net.ipv4.tcp_rmem=\"<min> <default> <2 × the present max>\", and persist it in /etc/sysctl.d/."}
		if r[0].Known && r[1].Known && r[2].Known && r[2].V > 0 {
			fix[0] = fmt.Sprintf("Raise the autotuning limit: sysctl -w net.ipv4.tcp_rmem=\"%d %d %d\" (max doubled from %d), and persist it in /etc/sysctl.d/.",
				r[0].V, r[1].V, mulSat(2, r[2].V), r[2].V)
		}
		if m := a.ev.Memory; m.TCPMem[1].Known && m.PageSize > 0 && r[2].Known {
			fix = append(fix, fmt.Sprintf("Each such socket may then hold up to %s; %d of them at once would use %s, against net.ipv4.tcp_mem pressure at %s.",
				bytesStr(mulSat(2, r[2].V)), v.maxSockets, bytesStr(mulSat(v.maxSockets, mulSat(2, r[2].V))), bytesStr(mulSat(m.TCPMem[1].V, m.PageSize))))
		}
		return Finding{Evidence: ev, Fix: fix, Verify: a.overflowVerify(v)}
	})
}

// ruleSlowReader: the application does not read as fast as data arrives. Its queues stay full and it
// advertises a zero window; autotuning does not grow its buffers because it grows them with the read rate.
func ruleSlowReader(a *analysis) []Finding {
	return groupRule(a, CauseSlowReader, func(v *groupView, c groupClass) Finding {
		k := v.g.Key
		ev := []string{
			fmt.Sprintf("%s: up to %d of %d sockets full in %d of %d samples (rmem_alloc/rcvbuf up to %s)",
				describe(k), v.maxFull, v.maxSockets, v.fullSamples, v.n, fmtFloat(v.maxFill)),
			a.rcvbufEvidence(v),
		}
		if v.zeroKnown {
			ev = append(ev, fmt.Sprintf("up to %d sockets advertised a zero window (tcp_info rcv_wnd 0) in %d of %d samples", v.maxZero, v.zeroSamples, v.n))
		}
		ns := &a.ev.Netstat
		if ns.ToZeroWindowAdv.Known {
			ev = append(ev, fmt.Sprintf("namespace: TCPToZeroWindowAdv %s, TCPWantZeroWindowAdv %s: the window closed and the senders waited",
				a.rateStr(ns.ToZeroWindowAdv.V), valueStr(ns.WantZeroWindowAdv)))
		}
		if d := v.g.SocketDrops; d.Known && d.V > 0 && a.lossKnown && a.loss == 0 {
			ev = append(ev, fmt.Sprintf("%d sk_drops on these sockets while the namespace dropped nothing for lack of memory: "+
				"window probes and duplicates the kernel discards by design, not data lost", d.V))
		}
		who := "the application"
		if k.Process != "" {
			who = k.Process
		}
		var fix []string
		if k.Role == "server" {
			fix = append(fix, fmt.Sprintf("Server side: %s, serving port %s, reads its sockets slower than its clients send. "+
				"Look for a reader that is paused or blocked: e.g. a Node.js stream paused with pause() and not resumed, "+
				"a worker waiting on disk or a database before reading the request body, an exhausted thread pool.", who, k.Port))
		} else {
			fix = append(fix, fmt.Sprintf("Client side: %s reads the responses from port %s slower than the servers send them. "+
				"Consume the body as it arrives (e.g. Python requests with stream=True must iterate over the response), "+
				"and move slow processing off the reading thread.", who, k.Port))
		}
		fix = append(fix,
			"More buffer will not help: autotuning (tcp_rcv_space_adjust) grows a buffer only as fast as the application reads, "+
				"and a larger SO_RCVBUF or tcp_rmem only holds more unread data. Leave them as they are.",
			"If the pace is intended (backpressure), nothing needs changing: the kernel is doing flow control and the sender waits; nothing is lost.")
		return Finding{Evidence: nonEmpty(ev...), Fix: fix, Verify: "avg_over_time(sockbuf_rcvbuf_full_sockets" + groupMatchers(k) + "[15m])"}
	})
}

// ruleGrowthOnly: PruneCalled rose but nothing was collapsed or lost. tcp_prune_queue counts PruneCalled on
// entry, then tcp_clamp_window grows the unlocked socket's rcvbuf and it returns: this is buffer growth, and
// `netstat -s` still prints it as "packets pruned from receive queue because of socket buffer overrun".
func ruleGrowthOnly(a *analysis) []Finding {
	ns := &a.ev.Netstat
	if !ns.PruneCalled.Known || ns.PruneCalled.V == 0 || !a.collapse.Known || a.harm || ns.RcvPruned.V > 0 {
		return nil
	}
	ev := []string{
		fmt.Sprintf("namespace: PruneCalled %s%s, with TCPRcvCollapsed 0, RcvPruned %s, TCPRcvQDrop %s, TCPOFODrop %s, OfoPruned %s",
			a.rateStr(ns.PruneCalled.V), a.perSegs(ns.PruneCalled.V), valueStr(ns.RcvPruned), valueStr(ns.RcvQDrop), valueStr(ns.OFODrop), valueStr(ns.OfoPruned)),
		"tcp_prune_queue counts PruneCalled on entry; for a socket without SO_RCVBUF, tcp_clamp_window then raises rcvbuf " +
			"(up to tcp_rmem[2]) and nothing is collapsed or dropped: the kernel was growing receive buffers",
	}
	if a.ev.BPF != nil {
		var grew []string
		for _, g := range a.ev.BPF.Growth {
			if g.Count > 0 {
				grew = append(grew, fmt.Sprintf("%s/%s %d", g.Role, g.Port, g.Count))
			}
		}
		if len(grew) > 0 {
			slices.Sort(grew)
			ev = append(ev, "bpf: tcp_rcvbuf_grow by group (role/port count): "+strings.Join(grew, ", "))
		}
	}
	if !a.lossKnown {
		ev = append(ev, "confidence low: the drop counters are not available on this kernel")
	}
	return []Finding{{
		Cause: CauseGrowthOnly, Confidence: Low, Harm: HarmInfo, Weight: float64(ns.PruneCalled.V),
		Evidence: ev,
		Fix:      []string{"Nothing needs changing: PruneCalled alone is the kernel making room by growing buffers, not data lost or CPU spent collapsing."},
		Verify:   harmQuery,
	}}
}

// ruleUnattributedOverflow: the namespace collapsed or lost receive data and no other finding explains it.
func ruleUnattributedOverflow(a *analysis, found []Finding) []Finding {
	if !a.harm {
		return nil
	}
	for _, f := range found {
		switch f.Cause {
		case CauseRcvbufPinned, CauseRcvbufCappedByRmemMax, CauseTCPRmemMaxLow, CauseTCPMemPressure, CauseCgroupMemoryPressure, CauseSlowReader:
			return nil
		}
	}
	harm, weight := HarmCPU, float64(a.collapse.V)
	if a.loss > 0 {
		harm, weight = HarmDataLost, float64(a.loss)
	}
	ev := []string{a.hostHarmEvidence()}
	if a.fullGroups() == 0 {
		ev = append(ev, fmt.Sprintf("no socket group was seen full in %d samples: the overflowing sockets fill and drain between samples", a.ev.Samples))
	}
	why := "the sockets could not be named"
	if a.ev.BPF == nil {
		why += ": without the bpf collector drops are not counted per socket group"
	}
	ev = append(ev, "confidence low: "+why)
	return []Finding{{
		Cause: CauseUnattributedOverflow, Confidence: Low, Harm: harm, Weight: weight,
		Evidence: ev,
		Fix: []string{
			"Run diagnose again with a longer --duration and with CAP_BPF and CAP_PERFMON, so that it loads its drop tracer (it does unless --no-bpf; on the running exporter, --collector.bpf), which counts every receive drop by socket group and tells pinned sockets apart.",
			"Meanwhile find the groups that fill up: topk(10, max_over_time(sockbuf_rcvbuf_full_sockets[15m])).",
		},
		Verify: harmQuery,
	}}
}

// harmQuery is the namespace's receive data collapsed or dropped per second; it must fall to 0.
const harmQuery = "rate(sockbuf_tcp_rcv_collapsed_total[5m]) + rate(sockbuf_tcp_rcvq_drop_total[5m]) + rate(sockbuf_tcp_ofo_drop_total[5m])"

// overflowEvidence lists what shows a group overflowing.
func (a *analysis) overflowEvidence(v *groupView) []string {
	ev := []string{
		fmt.Sprintf("%s: up to %d of %d sockets full in %d of %d samples (rmem_alloc/rcvbuf up to %s)",
			describe(v.g.Key), v.maxFull, v.maxSockets, v.fullSamples, v.n, fmtFloat(v.maxFill)),
		a.rcvbufEvidence(v),
	}
	if b := v.bpf; b != nil && b.overflow() > 0 {
		ev = append(ev, fmt.Sprintf("bpf: %s packets of this group dropped for lack of receive memory (proto_mem, tcp_ofo_queue_prune): %d on sockets with rcvbuf_locked=true, %d with false",
			a.rateStr(b.overflow()), b.overflowLocked, b.overflowUnlocked))
	}
	return append(ev, a.hostHarmEvidence())
}

// rcvbufEvidence says how the group's rcvbuf moved.
func (a *analysis) rcvbufEvidence(v *groupView) string {
	if v.constant {
		return fmt.Sprintf("rcvbuf %s on every socket in every sample: it never grew", bytesStr(v.value))
	}
	s := fmt.Sprintf("rcvbuf per socket %s in the first sample, %s in the last (largest %s)",
		bytesStr(uint64(v.firstAvg)), bytesStr(uint64(v.lastAvg)), bytesStr(v.maxRcvbuf))
	if r := a.ev.Sysctl.TCPRmem[2]; r.Known {
		s += fmt.Sprintf("; tcp_rmem max %s", bytesStr(r.V))
	}
	return s
}

// hostHarmEvidence is the namespace's collapse and drop counters.
func (a *analysis) hostHarmEvidence() string {
	ns := &a.ev.Netstat
	return fmt.Sprintf("namespace: TCPRcvCollapsed %s%s; TCPRcvQDrop %s, TCPOFODrop %s, OfoPruned %s, RcvPruned %s; PruneCalled %s",
		a.rateStr(ns.RcvCollapsed.V), a.perSegs(ns.RcvCollapsed.V), valueStr(ns.RcvQDrop), valueStr(ns.OFODrop),
		valueStr(ns.OfoPruned), valueStr(ns.RcvPruned), valueStr(ns.PruneCalled))
}

// overflowVerify is the group's overflow drops with bpf, the namespace's collapse and drops without.
func (a *analysis) overflowVerify(v *groupView) string {
	if a.bpfDrops() {
		k := v.g.Key
		return `sum(rate(sockbuf_tcp_receive_drops_total{reason=~"proto_mem|tcp_ofo_queue_prune"` +
			trimBraces(matchers("role", k.Role, "port", k.Port, "cgroup", k.Cgroup)) + `}[5m]))`
	}
	return harmQuery
}

func pinnedFix(a *analysis, v *groupView) []string {
	k := v.g.Key
	fix := []string{fmt.Sprintf("Stop setting SO_RCVBUF in %s: a socket with SO_RCVBUF set is never autotuned "+
		"(tcp_rcv_space_adjust and tcp_clamp_window skip it); without it the kernel grows the buffer as needed up to net.ipv4.tcp_rmem max%s.",
		appName(k), rmem2Str(a))}
	if k.Role == "server" {
		fix = append(fix, "A server usually sets it on the listening socket, and accepted sockets inherit it: "+
			"remove rcvbuf= from an nginx listen directive, ServerSocket.setReceiveBufferSize in Java, SetReadBuffer on Go connections.")
	} else {
		fix = append(fix, "A client sets it per connection: with Python requests, through an HTTPAdapter passing socket_options to urllib3 "+
			"(remove the SO_RCVBUF entry); Socket.setReceiveBufferSize in Java; SetReadBuffer on Go connections.")
	}
	if v.constant && v.value > 0 {
		fix = append(fix, fmt.Sprintf("If a fixed size is really needed, ask for more than now: rcvbuf %d is twice the SO_RCVBUF request (%d), "+
			"and it overflows; requests above net.core.rmem_max (%s) are cut to it.", v.value, v.value/2, valueStr(a.ev.Sysctl.RmemMax)))
	}
	return fix
}

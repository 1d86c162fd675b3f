package diagnose

import (
	"cmp"
	"fmt"
	"slices"
)

// ruleAcceptQueueOverflow: a listener's accept queue overflowed. tcp_conn_request and tcp_v4_syn_recv_sock
// (net/ipv4/tcp_input.c, tcp_ipv4.c) count ListenOverflows and drop the SYN or the handshake's last ACK when
// sk_acceptq_is_full (more connections waiting than the listen() backlog capped by net.core.somaxconn): the
// client retransmits and waits, seconds per connection.
func ruleAcceptQueueOverflow(a *analysis) []Finding {
	ns := &a.ev.Netstat
	overflows := ns.ListenOverflows
	if overflows.Known && overflows.V == 0 {
		return nil
	}
	type full struct {
		port          string
		samples       int
		n             int
		maxLen, limit uint64
	}
	var fulls []full
	for _, l := range a.ev.Listeners {
		f := full{port: l.Port, n: max(a.ev.Samples, len(l.Samples))}
		for _, s := range l.Samples {
			if (s.Limit > 0 && s.Length >= s.Limit) || (s.Limit == 0 && s.Length > 0) {
				f.samples++
				f.limit = s.Limit
			}
			f.maxLen = max(f.maxLen, s.Length)
		}
		if f.samples > 0 {
			fulls = append(fulls, f)
		}
	}
	slices.SortFunc(fulls, func(x, y full) int { return cmp.Compare(x.port, y.port) })
	counter := fmt.Sprintf("namespace: ListenOverflows %s, ListenDrops %s", a.rateStr(overflows.V), valueStr(ns.ListenDrops))
	verify := "rate(sockbuf_tcp_listen_overflows_total[5m])"
	if len(fulls) == 0 {
		if !overflows.Known {
			return nil
		}
		return []Finding{{
			Cause: CauseAcceptQueueOverflow, Confidence: Low, Harm: HarmDataLost, Weight: float64(overflows.V),
			Evidence: []string{counter,
				fmt.Sprintf("confidence low: no listener was seen with a full accept queue in %d samples, so the port could not be named", a.ev.Samples)},
			Fix: []string{
				"Find the listener whose accept queue fills: max_over_time(sockbuf_listen_queue_length[15m]) / sockbuf_listen_queue_limit, or ss -ltn (Recv-Q against Send-Q).",
				"Then make that application accept faster, or give it a longer queue (listen() backlog and net.core.somaxconn).",
			},
			Verify: verify,
		}}
	}
	var out []Finding
	for _, f := range fulls {
		conf := High
		ev := []string{fmt.Sprintf("listener on port %s: accept queue full (%d waiting, limit %d) in %d of %d samples", f.port, f.maxLen, f.limit, f.samples, f.n)}
		if overflows.Known {
			ev = append(ev, counter)
		} else {
			conf = Medium
			ev = append(ev, "confidence medium: ListenOverflows is not available, so the overflow itself was not counted")
		}
		if len(fulls) > 1 && overflows.Known {
			ev = append(ev, fmt.Sprintf("%d listeners were full; ListenOverflows is counted for the namespace and cannot be split between them", len(fulls)))
		}
		fix := []string{fmt.Sprintf("Make the application on port %s accept connections faster (more accepting workers or threads; an accept loop that is not blocked by request handling).", f.port)}
		sm := a.ev.Sysctl.Somaxconn
		switch {
		case sm.Known && f.limit >= sm.V:
			fix = append(fix, fmt.Sprintf("The queue limit %d is net.core.somaxconn: raise it, e.g. sysctl -w net.core.somaxconn=%d (persist in /etc/sysctl.d/), together with the backlog the application passes to listen().", f.limit, mulSat(2, max(sm.V, 1))))
		case sm.Known:
			fix = append(fix, fmt.Sprintf("The queue limit %d is the application's listen() backlog (below net.core.somaxconn %d): raise it in the application, e.g. nginx listen %s backlog=%d;", f.limit, sm.V, f.port, min(mulSat(2, max(f.limit, 1)), sm.V)))
		default:
			fix = append(fix, "Raise the queue limit: the backlog the application passes to listen(), capped by net.core.somaxconn.")
		}
		out = append(out, Finding{
			Cause: CauseAcceptQueueOverflow, Confidence: conf, Scope: Scope{Role: "server", Port: f.port}, Harm: HarmDataLost,
			Weight: float64(overflows.V), Evidence: ev, Fix: fix, Verify: verify,
		})
	}
	return out
}

// ruleBacklogDrops: segments dropped because the socket's owner held it (in a system call) while more arrived
// than its backlog may hold: tcp_add_backlog (net/ipv4/tcp_ipv4.c) drops when the backlog and the receive
// queue together exceed 2 × sk_rcvbuf + sk_sndbuf / 2 + 64 KiB, counting TCPBacklogDrop, drop reason
// socket_backlog. Small pinned buffers make that limit small.
func ruleBacklogDrops(a *analysis) []Finding {
	ns := &a.ev.Netstat
	fix := func(locked bool) []string {
		f := []string{"The application holds the socket busy in long system calls while data arrives (e.g. one thread writing large buffers to the socket it also reads): split large writes, or read from a thread of its own."}
		if locked {
			f = append([]string{"Stop setting SO_RCVBUF (and SO_SNDBUF) on these sockets: the backlog limit is about twice rcvbuf plus half sndbuf, and pinned small buffers keep it small."}, f...)
		}
		return f
	}
	var out []Finding
	if a.ev.BPF != nil && a.ev.Sources.BPFDrops {
		keys := make([]bpfKey, 0, len(a.bpf))
		for k, b := range a.bpf {
			if addSat(b.backlogLocked, b.backlogUnlocked) > 0 {
				keys = append(keys, k)
			}
		}
		slices.SortFunc(keys, func(x, y bpfKey) int {
			return cmp.Or(cmp.Compare(x.role, y.role), cmp.Compare(x.port, y.port), cmp.Compare(x.cgroup, y.cgroup))
		})
		for _, k := range keys {
			b := a.bpf[k]
			n := addSat(b.backlogLocked, b.backlogUnlocked)
			out = append(out, Finding{
				Cause: CauseBacklogDrops, Confidence: High, Scope: Scope{Role: k.role, Port: k.port, Cgroup: k.cgroup}, Harm: HarmDataLost, Weight: float64(n),
				Evidence: []string{
					fmt.Sprintf("bpf: %s packets dropped with reason socket_backlog: %d on sockets with rcvbuf_locked=true, %d with false", a.rateStr(n), b.backlogLocked, b.backlogUnlocked),
					fmt.Sprintf("namespace: TCPBacklogDrop %s", valueStr(ns.BacklogDrop)),
				},
				Fix:    fix(b.backlogLocked > 0),
				Verify: `sum(rate(sockbuf_tcp_receive_drops_total{reason="socket_backlog"` + trimBraces(matchers("role", k.role, "port", k.port, "cgroup", k.cgroup)) + `}[5m]))`,
			})
		}
		if len(out) > 0 {
			return out
		}
	}
	if !ns.BacklogDrop.Known || ns.BacklogDrop.V == 0 {
		return nil
	}
	return []Finding{{
		Cause: CauseBacklogDrops, Confidence: Medium, Harm: HarmDataLost, Weight: float64(ns.BacklogDrop.V),
		Evidence: []string{
			fmt.Sprintf("namespace: TCPBacklogDrop %s%s", a.rateStr(ns.BacklogDrop.V), a.perSegs(ns.BacklogDrop.V)),
			"confidence medium: the drops are certain, but without the bpf collector the sockets they hit cannot be named",
		},
		Fix:    fix(false),
		Verify: "rate(sockbuf_tcp_backlog_drop_total[5m])",
	}}
}

// ruleSoftnetBacklog: packets dropped before TCP saw them, because a CPU's input queue held
// net.core.netdev_max_backlog packets (enqueue_to_backlog, net/core/dev.c). Host-wide.
func ruleSoftnetBacklog(a *analysis) []Finding {
	s := &a.ev.Softnet
	if !s.Dropped.Known || s.Dropped.V == 0 {
		return nil
	}
	ev := []string{
		fmt.Sprintf("softnet_stat: %s packets dropped from full per-CPU input queues (net.core.netdev_max_backlog %s); times_squeezed %s",
			a.rateStr(s.Dropped.V), valueStr(a.ev.Sysctl.NetdevMaxBacklog), valueStr(s.TimesSqueezed)),
		"host-wide: softnet_stat counts every network namespace on this host (every pod and container), not only this one",
	}
	if b := a.ev.BPF; b != nil && b.Unattributed["cpu_backlog"] > 0 {
		ev = append(ev, fmt.Sprintf("bpf: %d drops with reason cpu_backlog", b.Unattributed["cpu_backlog"]))
	}
	fix := []string{"Lengthen the per-CPU input queue: sysctl -w net.core.netdev_max_backlog=<2 × the present value>, and persist it in /etc/sysctl.d/."}
	if v := a.ev.Sysctl.NetdevMaxBacklog; v.Known {
		fix[0] = fmt.Sprintf("Lengthen the per-CPU input queue: sysctl -w net.core.netdev_max_backlog=%d (now %d), and persist it in /etc/sysctl.d/.", mulSat(2, max(v.V, 1)), v.V)
	}
	fix = append(fix, "Spread receive processing over more CPUs: more NIC queues (ethtool -L) or RPS (/sys/class/net/<dev>/queues/rx-*/rps_cpus).")
	if s.TimesSqueezed.Known && s.TimesSqueezed.V > 0 {
		fix = append(fix, "The receive softirq also ran out of budget: raise net.core.netdev_budget and net.core.netdev_budget_usecs.")
	}
	return []Finding{{
		Cause: CauseSoftnetBacklog, Confidence: High, Harm: HarmDataLost, Weight: float64(s.Dropped.V),
		Evidence: ev, Fix: fix,
		Verify: "sum(rate(sockbuf_softnet_dropped_total[5m]))",
	}}
}

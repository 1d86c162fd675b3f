// Package drops counts the kernel's receive-path drops by its own drop reason, per socket group, with eBPF.
//
// Three BTF-typed tracepoint programs (tp_btf, CO-RE through bpf/include/vmlinux.h; no kprobes, no fentry)
// count in bounded per-CPU hash maps that Read sums once per call:
//
//   - skb:kfree_skb(skb, location, reason, rx_sk): every skb freed as dropped. When rx_sk (Linux 6.11+) is a
//     TCP socket, full or not (TIME_WAIT and request minisocks included), the drop is counted per (reason,
//     role, port, cgroup, rcvbuf_locked) in Snapshot.Drops; otherwise (no socket: before socket lookup,
//     softnet, netfilter, no listener; or another protocol's socket) per reason in Snapshot.Unattributed.
//   - tcp:tcp_rcvbuf_grow(sk, time) (Linux 6.17+; absent elsewhere, see Tracer.Missing): autotuning
//     (tcp_rcv_space_adjust) saw the reader take more per round trip than the buffer's space and calls
//     tcp_rcvbuf_grow(); per (role, port, cgroup, rcvbuf_locked). The tracepoint comes before the check of
//     SOCK_RCVBUF_LOCK, so on a pinned socket it counts growth wanted and refused.
//   - sock:sock_exceed_buf_limit(sk, prot, allocated, kind): __sk_mem_raise_allocated() refused memory over
//     tcp_mem or the memory cgroup's limit; per (kind recv|send, cgroup), TCP sockets only. A memory cgroup's
//     refusal of receive memory fires it only since Linux 6.18 (9d85c565a7b7, in some stable kernels too).
//     TestMemoryLimitHits makes it fire with a cgroup v1 memory.kmem.tcp limit.
//
// Reason names come from the running kernel's BTF (enum skb_drop_reason), never from a table compiled in:
// SKB_DROP_REASON_PROTO_MEM is "proto_mem". Codes the BTF does not name (subsystem reasons, code>>16 != 0)
// are "unknown_0x...".
//
// # Groups
//
// role and port follow the sockets collector's rule: a socket whose local port has a LISTEN socket in its
// network namespace is a server of that port, any other a client of its remote port. The programs cannot
// look listeners up, so user space tells them the listening ports of each namespace it knows
// (Tracer.SetListening, keyed by the namespace's inode number; the collector calls it every scrape with the
// ports its socket dump found). Listening and request sockets are servers of their own port in any case.
// Between two calls the list can be stale, so a socket whose remote port is in its namespace's
// ip_local_port_range and whose local port is not counts as a server of its local port too: it was
// accepted by a listener opened since (TestListenerNotYetDescribed). In a namespace never described, a socket
// whose local port is in the ephemeral range and whose remote port is not is a client of the remote port
// (TestClientsOfUndescribedNetNS); any other gets RoleUnknown and port 0, so that no ephemeral port ever
// becomes a key; the collector exports it as role "unknown" or folds it.
// cgroup is the socket's cgroup v2 id (sk->sk_cgrp_data, what inet_diag reports as INET_DIAG_CGROUP_ID; 0 for
// TIME_WAIT and request sockets); rcvbuf_locked is sk_userlocks & SOCK_RCVBUF_LOCK, set when the application
// called setsockopt(SO_RCVBUF) (before listen() for a listener's accepted sockets, or at any time later).
//
// Options.NetNS restricts counting to one namespace (the socket's, or for drops without a socket the
// device's); 0 counts all of them, which is what a Kubernetes node wants (the cgroup tells pods apart).
//
// # Bounds
//
// Counters are cumulative since Open and never deleted (deleting would race with increments). The maps have
// fixed sizes (Options.MaxGroups attributed groups, 1024 reasons, 4096 growth and limit groups, 65536
// listening ports); an event whose new key does not fit is counted in Snapshot.Lost, never dropped
// silently. Snapshot.Missed counts program runs the kernel skipped because the program was already running
// on that CPU (a tracepoint hit from an interrupt in the middle of a run).
//
// # What the reasons mean against TcpExt (Linux 6.18, net/ipv4/tcp_input.c)
//
// TestReasonsMatchTcpExt checks these in a fresh namespace over the trafficgen recipes PruneData and PruneOfo:
//
//   - proto_mem on TCP sockets = TCPRcvQDrop + TCPOFODrop. tcp_data_queue drops an in-sequence segment with
//     PROTO_MEM and counts TCPRcvQDrop when tcp_try_rmem_schedule fails and the receive queue is not empty;
//     tcp_data_queue_ofo drops an out-of-order one with PROTO_MEM and counts TCPOFODrop. (tcp_send_rcvq,
//     TCP_REPAIR only, counts TCPRcvQDrop without a reason.)
//   - tcp_zerowindow = TCPZeroWindowDrop: new data arrived while the advertised window was zero.
//   - tcp_ofomerge = TCPOFOMerge: out-of-order data already held.
//   - socket_backlog = TCPBacklogDrop: tcp_add_backlog, the socket owned by its reader and its backlog full.
//   - tcp_ofo_queue_prune >= OfoPruned, both zero or neither: tcp_prune_ofo_queue counts OfoPruned once per
//     call that dropped anything, the reason once per skb it dropped.
//   - RcvPruned has no reason of its own and is not a packet count: tcp_prune_queue counts it when collapsing
//     and pruning did not bring the socket under its buffer; the segment that asked for room is then dropped
//     as proto_mem (unless the receive queue was empty), so RcvPruned <= proto_mem. PruneCalled and
//     TCPRcvCollapsed drop nothing.
//
// Drops that are not data loss, all counted in the socket's sk_drops (what sock_diag shows) as well:
// tcp_old_sequence is mostly zero-window probes (a probe carries sequence snd_una-1, which
// tcp_validate_incoming rejects; TestWindowProbesAreNotOverflow), tcp_old_data a retransmission of data
// already received, tcp_invalid_sequence a segment beyond the window.
//
// # Cost
//
// bench.sh drives a drop storm through a raw socket on loopback in a namespace, and a drop-free ping-pong,
// each without and with the tracer, and prints the program's run time per drop by the kernel's own
// statistics (BPF_ENABLE_STATS) and the sender's added CPU time per drop (figures in the README). Without
// drops the tracepoint does not fire and the cost is within noise.
//
// # Privileges
//
// Loading needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN) in the initial user namespace, and the kernel's
// BTF (/sys/kernel/btf/vmlinux); Open's error says which is missing (errors.Is os.ErrPermission or
// os.ErrNotExist). CAP_SYS_RESOURCE is not needed: since Linux 5.11 BPF memory is charged to the memory
// cgroup, not RLIMIT_MEMLOCK. Nothing is pinned; Close, or the process's exit, removes everything.
//
// # Build
//
// drops.bpf.c is compiled by bpf2go (gen.go) with Debian's clang into drops_bpfel.o and bound by
// drops_bpfel.go, both committed: `go build` needs no clang. sources.sha256 records the sources they were
// built from; TestGeneratedUpToDate fails when a source changed since, and TestGenerateReproduces rebuilds
// them where clang is installed and compares. `make generate` regenerates.
package drops

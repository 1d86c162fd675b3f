//go:build ignore

// SPDX-License-Identifier: GPL-2.0
//
// Receive-path drop accounting for sockbuf_exporter: counts every skb the kernel frees with a drop reason
// (tracepoint skb:kfree_skb), every receive-buffer growth (tcp:tcp_rcvbuf_grow) and every socket memory
// limit hit (sock:sock_exceed_buf_limit), aggregated in the kernel in bounded per-CPU hash maps that user
// space reads once per scrape. BTF-typed tracepoints only (tp_btf), CO-RE field access through vmlinux.h.
// The Go side (tracer.go) explains the keys; this file only fills them.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

// include/linux/socket.h, include/uapi/linux/in.h, include/linux/net.h, include/net/sock.h,
// include/uapi/asm-generic/errno-base.h
#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define SOCK_STREAM 1
#define SOCK_RCVBUF_LOCK 2
#define EEXIST 17
// include/net/sock.h: the kind argument of trace_sock_exceed_buf_limit.
#define SK_MEM_RECV 1

// Set by the loader before the programs load (the verifier then prunes the dead branches).
// netns_filter: when not 0, only sockets (or, for drops without a socket, devices) of the network namespace
// with this inode number are counted. has_rx_sk: the kfree_skb tracepoint has its fourth argument, the
// receiving socket (Linux 6.11+); without it every drop is unattributed.
const volatile __u32 netns_filter = 0;
const volatile bool has_rx_sk = true;

// Roles, as in the sockets collector: server when the local port is a listening port of the namespace.
#define ROLE_UNKNOWN 0
#define ROLE_SERVER 1
#define ROLE_CLIENT 2

struct drop_key {
	__u64 cgroup;
	__u32 reason;
	__u16 port;
	__u8 role;
	__u8 rcvbuf_locked;
};

struct grow_key {
	__u64 cgroup;
	__u16 port;
	__u8 role;
	__u8 rcvbuf_locked;
	__u8 pad[4];
};

struct limit_key {
	__u64 cgroup;
	__u32 kind;
	__u32 pad;
};

struct listen_key {
	__u32 netns;
	__u16 port;
	__u16 pad;
};

// Indexes of the lost array: events not counted because their map was full.
#define LOST_DROPS 0
#define LOST_UNATTRIBUTED 1
#define LOST_GROW 2
#define LOST_LIMIT 3
#define LOST_MAX 4

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct drop_key);
	__type(value, __u64);
} drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} unattributed SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct grow_key);
	__type(value, __u64);
} grows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct limit_key);
	__type(value, __u64);
} limits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LOST_MAX);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

// Listening ports per network namespace, written by user space (Tracer.SetListening).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct listen_key);
	__type(value, __u8);
} listening SEC(".maps");

// Namespaces whose listening ports user space has told (value unused): in the others the role is unknown.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, __u8);
} known_netns SEC(".maps");

static __always_inline void count_lost(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&lost, &idx);
	if (v)
		*v += 1;
}

// bump adds one to key's per-CPU counter, inserting it when new. A full map is counted in lost[lost_idx].
// The tracepoint runs a program at most once per CPU at a time (nested runs are skipped and counted by the
// kernel as the program's recursion misses), so the plain increment of this CPU's slot is safe.
static __always_inline void bump(void *map, const void *key, __u32 lost_idx)
{
	__u64 *v = bpf_map_lookup_elem(map, key);
	if (v) {
		*v += 1;
		return;
	}
	__u64 one = 1;
	long err = bpf_map_update_elem(map, key, &one, BPF_NOEXIST);
	if (err == -EEXIST) {
		// Another CPU inserted it meanwhile.
		v = bpf_map_lookup_elem(map, key);
		if (v)
			*v += 1;
		return;
	}
	if (err)
		count_lost(lost_idx);
}

static __always_inline __u32 sock_netns(const struct sock *sk)
{
	struct net *net = sk->__sk_common.skc_net.net;
	if (!net)
		return 0;
	return net->ns.inum;
}

static __always_inline __u64 sock_cgroup(const struct sock *sk)
{
	struct cgroup *cg = sk->sk_cgrp_data.cgroup;
	if (!cg)
		return 0;
	struct kernfs_node *kn = cg->kn;
	if (!kn)
		return 0;
	return kn->id;
}

// in_ephemeral_range tells whether port is in the namespace's net.ipv4.ip_local_port_range, where connect()
// picks the ports of clients that do not bind (inet_get_local_port_range: low half and high half of range).
static __always_inline bool in_ephemeral_range(const struct sock *sk, __u16 port)
{
	struct net *net = sk->__sk_common.skc_net.net;
	if (!net)
		return false;
	__u32 range = net->ipv4.ip_local_ports.range;
	return port >= (range & 0xffff) && port <= (range >> 16);
}

// role_port applies the sockets collector's rule: server with the local port when that port listens in the
// socket's namespace, else client with the remote port; in a namespace user space has not described, client
// only when its local port is ephemeral and its remote port is not, else unknown (port 0). Listening and request sockets are servers by definition. The listening ports are only as fresh
// as user space's last SetListening, so a socket whose remote port is in the namespace's ephemeral range and
// whose local port is not is taken for a server too: it was accepted by a listener opened since (its peer
// connected from an ephemeral port to a service's fixed one). Without this, that listener's sockets would be
// labelled client with each peer's ephemeral port until the next scrape. (sk_userlocks' SOCK_BINDPORT_LOCK
// would be the exact test, but sk_clone_lock clears it on accepted sockets.)
static __always_inline void role_port(const struct sock *sk, __u32 netns, __u8 state, __u8 *role, __u16 *port)
{
	__u16 lport = sk->__sk_common.skc_num;
	if (state == TCP_LISTEN || state == TCP_NEW_SYN_RECV) {
		*role = ROLE_SERVER;
		*port = lport;
		return;
	}
	struct listen_key lk = { .netns = netns, .port = lport };
	__u16 rport = __builtin_bswap16(sk->__sk_common.skc_dport);
	if (bpf_map_lookup_elem(&listening, &lk) ||
	    (in_ephemeral_range(sk, rport) && !in_ephemeral_range(sk, lport))) {
		*role = ROLE_SERVER;
		*port = lport;
		return;
	}
	if (!bpf_map_lookup_elem(&known_netns, &netns)) {
		// A namespace user space does not describe (a pod's, with the default all-namespace counting):
		// without its listening ports only the port ranges tell. A local port in the ephemeral range and a
		// remote one outside it is a connection this side made: a client of that fixed remote port. Any
		// other is unknown, port 0, so that no ephemeral port ever becomes a key.
		if (in_ephemeral_range(sk, lport) && !in_ephemeral_range(sk, rport)) {
			*role = ROLE_CLIENT;
			*port = rport;
			return;
		}
		*role = ROLE_UNKNOWN;
		*port = 0;
		return;
	}
	*role = ROLE_CLIENT;
	*port = rport;
}

// is_tcp tells TCP sockets apart, full or not. TIME_WAIT and NEW_SYN_RECV (request) sockets are TCP's
// minisocks, which only share struct sock_common: fields past it must not be read from them.
static __always_inline bool is_tcp(const struct sock *sk, __u8 state, bool *full)
{
	__u16 family = sk->__sk_common.skc_family;
	if (family != AF_INET && family != AF_INET6)
		return false;
	if (state == TCP_TIME_WAIT || state == TCP_NEW_SYN_RECV) {
		*full = false;
		return true;
	}
	*full = true;
	// A raw socket of protocol IPPROTO_TCP is not a TCP socket.
	return sk->sk_protocol == IPPROTO_TCP && sk->sk_type == SOCK_STREAM;
}

SEC("tp_btf/kfree_skb")
int on_kfree_skb(__u64 *ctx)
{
	struct sk_buff *skb = (struct sk_buff *)ctx[0];
	__u32 reason = (__u32)ctx[2];
	struct sock *sk = NULL;

	if (has_rx_sk)
		sk = (struct sock *)ctx[3];

	if (sk) {
		__u32 netns = sock_netns(sk);
		if (netns_filter && netns != netns_filter)
			return 0;
		__u8 state = sk->__sk_common.skc_state;
		bool full = false;
		if (is_tcp(sk, state, &full)) {
			struct drop_key k = { .reason = reason };
			role_port(sk, netns, state, &k.role, &k.port);
			if (full) {
				k.cgroup = sock_cgroup(sk);
				k.rcvbuf_locked = (sk->sk_userlocks & SOCK_RCVBUF_LOCK) ? 1 : 0;
			}
			bump(&drops, &k, LOST_DROPS);
			return 0;
		}
	} else if (netns_filter) {
		struct net_device *dev = skb->dev;
		if (!dev || !dev->nd_net.net || dev->nd_net.net->ns.inum != netns_filter)
			return 0;
	}
	bump(&unattributed, &reason, LOST_UNATTRIBUTED);
	return 0;
}

// tcp_rcvbuf_grow(sk, time) (6.17+): tcp_rcv_space_adjust() in net/ipv4/tcp_input.c measured the reader
// consuming more per round trip than the buffer's space, and asks tcp_rcvbuf_grow() to grow it. The
// tracepoint fires before the check of SOCK_RCVBUF_LOCK: on a pinned socket it is growth wanted and refused.
SEC("tp_btf/tcp_rcvbuf_grow")
int on_tcp_rcvbuf_grow(__u64 *ctx)
{
	struct sock *sk = (struct sock *)ctx[0];
	if (!sk)
		return 0;
	__u32 netns = sock_netns(sk);
	if (netns_filter && netns != netns_filter)
		return 0;
	struct grow_key k = {};
	role_port(sk, netns, sk->__sk_common.skc_state, &k.role, &k.port);
	k.cgroup = sock_cgroup(sk);
	k.rcvbuf_locked = (sk->sk_userlocks & SOCK_RCVBUF_LOCK) ? 1 : 0;
	bump(&grows, &k, LOST_GROW);
	return 0;
}

// sock_exceed_buf_limit(sk, prot, allocated, kind): __sk_mem_raise_allocated() in net/core/sock.c refused
// memory over the protocol's limits (tcp_mem) or the socket's memory cgroup. TCP sockets only.
SEC("tp_btf/sock_exceed_buf_limit")
int on_sock_exceed_buf_limit(__u64 *ctx)
{
	struct sock *sk = (struct sock *)ctx[0];
	int kind = (int)ctx[3];
	if (!sk)
		return 0;
	if (netns_filter && sock_netns(sk) != netns_filter)
		return 0;
	bool full = false;
	if (!is_tcp(sk, sk->__sk_common.skc_state, &full) || !full)
		return 0;
	struct limit_key k = { .kind = kind == SK_MEM_RECV ? 1 : 0 };
	k.cgroup = sock_cgroup(sk);
	bump(&limits, &k, LOST_LIMIT);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";

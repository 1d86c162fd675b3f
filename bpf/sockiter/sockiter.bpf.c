//go:build ignore

// SPDX-License-Identifier: GPL-2.0
//
// sockiter: one walk over every TCP socket of a network namespace (iter/tcp), folded in the kernel into
// groups keyed like the sockets collector's netlink path: (role, port, cgroup id). User space reads the
// groups once per walk; nothing is written per socket.
//
// Field by field, the values are those inet_diag puts in its reply (net/ipv4/tcp_diag.c tcp_diag_get_info,
// net/core/sock.c sock_diag_put_meminfo, net/ipv4/inet_diag.c inet_diag_msg_attrs_fill), so both engines
// agree on the same sockets:
//   Recv-Q    ESTABLISHED & co: max(rcv_nxt - copied_seq, 0); LISTEN: sk_ack_backlog
//   Send-Q    write_seq - snd_una;                            LISTEN: sk_max_ack_backlog
//   rmem      sk_rmem_alloc_get(): sk_backlog.rmem_alloc (sk_rmem_alloc)
//   rcvbuf    sk_rcvbuf
//   cgroup    cgroup_id(sock_cgroup_ptr(&sk->sk_cgrp_data)): the cgroup's kernfs node id
// TIME_WAIT and NEW_SYN_RECV mini-sockets (inet_timewait_sock, request_sock) have none of these: inet_diag
// reports them with zero queues, no skmeminfo and no cgroup, and so does this program when they are selected.

#include "../include/vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

#define SOCK_RCVBUF_LOCK 2 // include/net/sock.h
#define MAX_BOUNDS 16      // histogram bounds; one more bucket above the last
#define ROLE_CLIENT 0
#define ROLE_SERVER 1
#define PPM 1000000ULL
#define FILL_SUM_SHIFT 24 // fill ratios are summed in units of 2^-24

// Set by user space before loading.
volatile const __u32 state_mask = 0;   // bit per skc_state of the sockets to fold into groups
volatile const __u64 full_ppm = 900000; // full: rmem_alloc * 1e6 >= full_ppm * rcvbuf
volatile const __u32 n_fill = 0;
volatile const __u64 fill_bounds_ppm[MAX_BOUNDS] = {};
volatile const __u32 n_rcvbuf = 0;
volatile const __u64 rcvbuf_bounds[MAX_BOUNDS] = {};
volatile const __u8 by_cgroup = 0;
volatile const __u8 track_drops = 0;
volatile const __u64 yield_mask = 0; // write one byte every yield_mask+1 sockets, so that read(2) returns

struct group_key {
	__u64 cgroup_id;
	__u16 port;
	__u8 role;
	__u8 pad[5];
};

struct group_val {
	__u64 sockets;
	__u64 recv_q;
	__u64 recv_q_max;
	__u64 send_q;
	__u64 rmem_alloc;
	__u64 rcvbuf;
	__u64 full;
	__u64 zero_wnd;
	__u64 drops; // sk_drops added since the walk that last saw the socket
	__u64 locked;
	__u64 locked_sum;
	__u64 locked_hist[MAX_BOUNDS + 1];
};

struct listen_val {
	__u32 length;
	__u32 limit;
	__u32 sockets;
	__u32 pad;
};

struct walk_totals {
	__u64 visited;
	__u64 states[16]; // every socket visited, by skc_state, selected or not
	__u64 fill_hist[MAX_BOUNDS + 1];
	__u64 fill_count;
	__u64 fill_sum; // in units of 2^-FILL_SUM_SHIFT
	__u64 size_hist[MAX_BOUNDS + 1];
	__u64 size_count;
	__u64 size_sum;
	__u64 overflow_sockets;  // sockets whose group did not fit in the groups map
	__u64 listen_overflow;   // listeners whose port did not fit in the listeners map
	__u64 late_listeners;    // listeners visited after a non-listening socket: roles may be wrong
	__u64 drops_untracked;   // sockets with drops whose sk_storage could not be created
	__u64 seen_nonlisten;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384); // user space sets Options.MaxGroups
	__type(key, struct group_key);
	__type(value, struct group_val);
} groups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2); // by role: the sockets of groups that did not fit
	__type(key, __u32);
	__type(value, struct group_val);
} overflow SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u16);
	__type(value, struct listen_val);
} listeners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct walk_totals);
} totals SEC(".maps");

struct listening_bits {
	__u64 w[1024]; // bit per port
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct listening_bits);
} listening SEC(".maps");

// drops the previous walks counted per socket; freed with the socket (and with the map, on Close).
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u32);
} drops_seen SEC(".maps");

static const struct group_val zero_group;

// fuller reports whether listener a is fuller than b, as the collector's compareFullness orders them: by
// length/limit (a limit of 0 is infinitely full as soon as one connection waits), then by the longer queue,
// then by the smaller limit.
static __always_inline bool fuller(__u32 al, __u32 am, __u32 bl, __u32 bm)
{
	bool ainf = am == 0 && al > 0, binf = bm == 0 && bl > 0;
	if (ainf != binf)
		return ainf;
	if (!ainf) {
		__u64 x = (__u64)al * (bm ? bm : 1), y = (__u64)bl * (am ? am : 1);
		if (am == 0) // 0/0: fill 0
			x = 0;
		if (bm == 0)
			y = 0;
		if (x != y)
			return x > y;
	}
	if (al != bl)
		return al > bl;
	return am < bm;
}

static __always_inline __u32 bucket(volatile const __u64 *bounds, __u32 n, __u64 num, __u64 scale, __u64 den)
{
	// The first bound with num/den <= bound/scale, i.e. num*scale <= bound*den; n when above them all.
	__u32 i;
	for (i = 0; i < MAX_BOUNDS; i++) {
		if (i >= n)
			break;
		if (num * scale <= bounds[i] * den)
			break;
	}
	return i;
}

static __always_inline void add_listener(struct walk_totals *t, struct sock *sk, __u16 port)
{
	__u32 k = 0;
	struct listening_bits *bits = bpf_map_lookup_elem(&listening, &k);
	if (bits)
		bits->w[(port >> 6) & 1023] |= 1ULL << (port & 63);
	if (t->seen_nonlisten)
		t->late_listeners++;

	struct listen_val this = {
		.length = sk->sk_ack_backlog,
		.limit = sk->sk_max_ack_backlog,
		.sockets = 1,
	};
	struct listen_val *l = bpf_map_lookup_elem(&listeners, &port);
	if (!l) {
		if (bpf_map_update_elem(&listeners, &port, &this, BPF_NOEXIST))
			t->listen_overflow++;
		return;
	}
	l->sockets++;
	if (fuller(this.length, this.limit, l->length, l->limit)) {
		l->length = this.length;
		l->limit = this.limit;
	}
}

// count_visit counts a visited socket in the totals, which it returns (NULL if the map has none), and
// writes the byte of yield_mask every yield_mask+1 sockets. Both programs start with it, so that the
// floor's figure is the iterator's cost plus exactly this.
static __always_inline struct walk_totals *count_visit(struct bpf_iter__tcp *ctx)
{
	__u32 zero = 0;
	struct walk_totals *t = bpf_map_lookup_elem(&totals, &zero);
	if (!t)
		return NULL;
	t->visited++;
	if (yield_mask && (t->visited & yield_mask) == 0) {
		char b = 0;
		bpf_seq_write(ctx->meta->seq, &b, 1);
	}
	return t;
}

SEC("iter/tcp")
int walk(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	if (!skc)
		return 0; // the end of the walk

	__u32 zero = 0;
	struct walk_totals *t = count_visit(ctx);
	if (!t)
		return 0;

	__u8 state = skc->skc_state;
	t->states[state & 15]++;
	__u16 lport = skc->skc_num;

	struct tcp_sock *tp = NULL;
	struct sock *sk = NULL;
	if (state != TCP_TIME_WAIT && state != TCP_NEW_SYN_RECV) {
		tp = bpf_skc_to_tcp_sock(skc);
		if (!tp)
			return 0; // not a TCP full socket: cannot happen in the TCP hash tables
		sk = (struct sock *)tp;
	}

	if (state == TCP_LISTEN) {
		if (sk)
			add_listener(t, sk, lport);
		return 0;
	}
	// NEW_SYN_RECV is selected as SYN_RECV, as inet_diag does.
	__u32 sel = state == TCP_NEW_SYN_RECV ? TCP_SYN_RECV : state;
	if (!(state_mask & (1U << (sel & 31))))
		return 0;
	t->seen_nonlisten = 1;

	struct group_key key = {.role = ROLE_CLIENT, .port = bpf_ntohs(skc->skc_dport)};
	struct listening_bits *bits = bpf_map_lookup_elem(&listening, &zero);
	if (bits && (bits->w[(lport >> 6) & 1023] & (1ULL << (lport & 63)))) {
		key.role = ROLE_SERVER;
		key.port = lport;
	}
	// Every load of the socket is issued here, before the map work, so that their cache misses overlap
	// instead of each waiting for the branch before it.
	__u32 rcv_nxt = 0, copied_seq = 0, write_seq = 0, snd_una = 0, rcv_wnd = 1, drops = 0;
	__u64 rmem = 0, rcvbuf = 0;
	__u8 userlocks = 0;
	if (sk) {
		rcv_nxt = tp->rcv_nxt;
		copied_seq = tp->copied_seq;
		write_seq = tp->write_seq;
		snd_una = tp->snd_una;
		rcv_wnd = tp->rcv_wnd;
		rmem = (__u32)sk->sk_backlog.rmem_alloc.counter;
		rcvbuf = (__u32)sk->sk_rcvbuf;
		userlocks = sk->sk_userlocks;
		// sk_drops_read(): TCP sockets have no sk_drop_counters (UDP and raw sockets do, 6.18+), so
		// their drops are sk_drops alone, and the pointer's cache line need not be read.
		if (track_drops)
			drops = sk->sk_drops.counter;
		if (by_cgroup) {
			struct cgroup *cg = sk->sk_cgrp_data.cgroup;
			if (cg)
				key.cgroup_id = cg->kn->id;
		}
	}

	struct group_val *g = bpf_map_lookup_elem(&groups, &key);
	if (!g) {
		if (bpf_map_update_elem(&groups, &key, &zero_group, BPF_NOEXIST) == 0)
			g = bpf_map_lookup_elem(&groups, &key);
		if (!g) {
			__u32 r = key.role;
			g = bpf_map_lookup_elem(&overflow, &r);
			t->overflow_sockets++;
			if (!g)
				return 0;
		}
	}
	g->sockets++;
	if (!sk)
		return 0; // mini-socket: no queues, no buffers

	__u32 rq = rcv_nxt - copied_seq;
	if ((__s32)rq < 0)
		rq = 0;
	g->recv_q += rq;
	if (rq > g->recv_q_max)
		g->recv_q_max = rq;
	g->send_q += (__u32)(write_seq - snd_una);
	if (state == TCP_ESTABLISHED && rcv_wnd == 0)
		g->zero_wnd++;
	g->rmem_alloc += rmem;
	g->rcvbuf += rcvbuf;
	if (rcvbuf) {
		if (rmem * PPM >= full_ppm * rcvbuf)
			g->full++;
		__u32 i = bucket(fill_bounds_ppm, n_fill, rmem, PPM, rcvbuf);
		if (i > MAX_BOUNDS)
			i = MAX_BOUNDS;
		t->fill_hist[i]++;
		t->fill_count++;
		t->fill_sum += (rmem << FILL_SUM_SHIFT) / rcvbuf;
	}
	if (state == TCP_ESTABLISHED) {
		__u32 i = bucket(rcvbuf_bounds, n_rcvbuf, rcvbuf, 1, 1);
		if (i > MAX_BOUNDS)
			i = MAX_BOUNDS;
		t->size_hist[i]++;
		t->size_count++;
		t->size_sum += rcvbuf;
	}
	if (userlocks & SOCK_RCVBUF_LOCK) {
		__u32 i = bucket(rcvbuf_bounds, n_rcvbuf, rcvbuf, 1, 1);
		if (i > MAX_BOUNDS)
			i = MAX_BOUNDS;
		g->locked++;
		g->locked_sum += rcvbuf;
		g->locked_hist[i]++;
	}

	if (track_drops) {
		__u32 d = drops;
		if (d) {
			__u32 *last = bpf_sk_storage_get(&drops_seen, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
			if (last) {
				// sk_drops never goes down for one socket; a lower value means storage of a
				// socket we never counted (cannot happen, but must not underflow).
				g->drops += d >= *last ? d - *last : d;
				*last = d;
			} else {
				t->drops_untracked++;
			}
		}
	}
	return 0;
}

// walk_floor visits the same sockets and does nothing with them: what the iterator itself costs (batching,
// references, socket locks, the seq_file), for the benchmark's figures.
SEC("iter/tcp")
int walk_floor(struct bpf_iter__tcp *ctx)
{
	if (ctx->sk_common)
		count_visit(ctx);
	return 0;
}

// Package sockiter folds every TCP socket of a network namespace into per-group sums inside the kernel,
// with a BPF iterator (iter/tcp), instead of dumping each socket over netlink sock_diag and folding in user
// space. A group is what the sockets collector's netlink path uses: a role (server when the socket's local
// port has a LISTEN socket in the namespace, port = local port; client otherwise, port = remote port) and
// the owning cgroup's id. The per-group values are those inet_diag reports (see sockiter.bpf.c for the
// field-by-field mapping), plus two that netlink cannot give cheaply: the sockets whose receive buffer the
// application pinned with SO_RCVBUF (sk_userlocks & SOCK_RCVBUF_LOCK), with a histogram of their sizes, and
// the ESTABLISHED sockets whose last advertised receive window is zero (tp->rcv_wnd, what tcp_info reports
// as tcpi_rcv_wnd).
//
// One walk is one read of the iterator. The kernel walks the whole listening hash before the established
// hash and never goes back (net/ipv4/tcp_ipv4.c bpf_iter_tcp_batch), so every listener is recorded before
// the first socket that needs its role, in the same walk. A listener that opens after the walk left the
// listening hash is not seen, as one that opens between the netlink path's LISTEN dump and its main dump
// is not; its first connections are grouped as clients until the next scrape. Should a kernel ever walk in
// another order, the program counts the listeners it meets after a non-listening socket and Walk walks
// again with the listeners it has (Result.Passes, Result.LateListeners). Groups live in a bounded hash map: sockets whose group does
// not fit are summed per role into Result.Overflow and counted, never dropped.
//
// Roles need the listening ports first. Of the ways to get them, this one costs nothing: a LISTEN-only
// netlink dump before the walk costs 60-100 µs whatever the population (bench.sh), a first iterator pass
// that only records listeners costs a whole walk (the iterator alone is 0.5-0.75x a full netlink dump).
//
// Cost, measured with bench.sh on 2 shared vCPUs (kernel 6.18, loopback connections in a namespace with
// its own hash table, medians of interleaved rounds; the machine was loaded, so minimums are given too):
// at 200,011 sockets the walk took 150 ms (min 106) against 150 ms (min 110) for the raw netlink dump with
// skmeminfo, 180 ms (min 143) with tcp_info, and 166 ms (min 135) for the collector's netlink fold; at
// 1,000,051 sockets (two runs) min 0.60-0.81 s, median 1.30-1.45 s, against min 0.70-0.89 s, median
// 0.88-0.95 s for the raw dump. The iterator alone, with a program that returns at
// once, already costs 0.5-0.76x the raw dump (per socket: a reference taken and dropped, the socket lock,
// the seq_file step), and the program adds 180-280 ns a socket, most of it the cache misses of the five
// cache lines of struct sock and tcp_sock it reads (the netlink dump reads the same lines). So on this
// kernel the engine matches the netlink path's speed, not twice it; what it adds is the SO_RCVBUF and
// zero-window counts without tcp_info, and an RSS that stays flat (13 MiB, no allocation per socket: 33
// allocations per walk whatever the population).
//
// The package knows nothing of Prometheus; the sockets collector turns a Result into metrics.
package sockiter

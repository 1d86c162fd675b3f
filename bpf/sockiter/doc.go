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
// netlink dump before the walk costs little whatever the population, a first iterator pass that only
// records listeners costs a whole walk.
//
// Cost: bench.sh times the walk, the raw netlink dump and the collector's netlink fold side by side (figures
// in the README). The iterator itself (per socket: a reference taken and dropped, the socket lock, the
// seq_file step) already costs a large share of a raw netlink dump, and the program reads the same cache
// lines of struct sock and tcp_sock the netlink dump reads, so on this kernel the engine matches the netlink
// path's speed rather than doubling it; what it adds is the SO_RCVBUF and zero-window counts without
// tcp_info, with no allocation per socket.
//
// The package knows nothing of Prometheus; the sockets collector turns a Result into metrics.
package sockiter

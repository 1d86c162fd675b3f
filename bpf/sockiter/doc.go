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
// One walk is one read of the iterator. The kernel walks the listening hash before the established hash
// (net/ipv4/tcp_ipv4.c bpf_iter_tcp_batch), so every listener is known before the first socket that needs
// its role; a listener that appears after that (opened during the walk) is counted, and Walk then walks a
// second time with the listeners of the first. Groups live in a bounded hash map: sockets whose group does
// not fit are summed per role into Result.Overflow and counted, never dropped.
//
// The package knows nothing of Prometheus; the sockets collector turns a Result into metrics.
package sockiter

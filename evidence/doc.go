// Package evidence collects what the rules of package diagnose look at: it takes readings of one network
// namespace (the TcpExt and Tcp counters, sockstat, the receive-buffer sysctls and softnet_stat through
// procnet; a LISTEN dump and a dump of every other TCP socket with skmeminfo and tcp_info through sockdiag,
// folded per socket group with diagnose.GroupSample.Add; the bpf/drops tracer's counts when given one) and
// turns the readings of a window into a diagnose.Evidence. It parses nothing itself and opens no netlink
// socket of its own kind: procnet and sockdiag do the reading.
//
// A Sampler keeps the last readings in a ring of fixed size, so its memory is bounded by the ring's length
// times the group cap (Config.MaxGroups groups and listeners per reading, the rest folded into port
// "other"). `sockbuf_exporter diagnose` takes readings one after another for --duration and diagnoses them
// all; the exporter runs a Sampler in the background every --diagnose.interval and serves /diagnose from
// the readings of the last --diagnose.window. The background sampler is separate from the scrapes on
// purpose: the rules need per-socket facts (every socket's rcvbuf against tcp_rmem[2] and 2 × rmem_max,
// the smallest and largest rcvbuf of a group, the zero windows of full sockets) that the sockets collector
// sums away, at a steady pace that does not depend on how often Prometheus scrapes.
//
// Counters become increases between the first and the last reading of the window (diagnose.NetstatDelta,
// Delta, Delta32); per-socket sk_drops become increases per socket, keyed by the socket cookie, summed per
// group. Role and port follow the sockets collector's rule: a socket whose local port has a LISTEN socket is
// a server of that port, any other a client of its remote port. Groups are not split by cgroup or process yet
// (the cgroup and process attribution lives in collector/, unexported), so findings leave those empty; the
// bpf tracer's counts (Config.Tracer) are summed over cgroups to match.
package evidence

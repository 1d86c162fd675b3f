// Package sockdiag reads the receive-side state of every TCP socket from the Linux kernel over netlink
// sock_diag (NETLINK_SOCK_DIAG, inet_diag), the way `ss -tnmi` does, but fast enough to run on every scrape.
//
// It has two layers. The codec (Request encoding, DecodeSocket, Decoder) is pure Go with no build tag and no
// system calls, so it can be fuzzed and tested anywhere. The client (Dial, Client.Dump) opens the netlink
// socket through github.com/mdlayher/netlink, sends one dump request and reads the reply with a raw recvfrom
// loop into a single reused buffer, decoding every socket in place and handing it to a callback. A dump
// never builds a slice of all sockets and allocates a dozen objects whatever its size. Client.DumpContext
// bounds a dump by a context: its deadline, or its cancellation, ends a read the kernel has not answered yet.
//
// Request{Family: FamilyUnspec} dumps both families in one walk of the kernel's hash table (the older
// TCPDIAG_GETSOCK request); SOCK_DIAG_BY_FAMILY dumps one family per walk.
//
// Performance is measured by BenchmarkDump (go test -v -run '^$' -bench BenchmarkDump ./sockdiag/, 20,000
// connections by default, SOCKDIAG_BENCH_CONNS to change) and, on 100,000 connections with peak RSS, by
// the hand-run sockdiag/bench.sh. Both compare against a raw recvfrom loop in the same run.
//
// The package knows nothing of Prometheus.
package sockdiag

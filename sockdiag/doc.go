// Package sockdiag reads the receive-side state of every TCP socket from the Linux kernel over netlink
// sock_diag (NETLINK_SOCK_DIAG, inet_diag), the way `ss -tnmi` does, but fast enough to run on every scrape.
//
// It has two layers. The codec (Request encoding, DecodeSocket, Decoder) is pure Go with no build tag and no
// system calls, so it can be fuzzed and tested anywhere. The client (Dial, Client.Dump) opens the netlink
// socket through github.com/mdlayher/netlink, sends one dump request and reads the reply with a raw recvmsg
// loop into a single reused buffer, decoding every socket in place and handing it to a callback. A dump
// never builds a slice of all sockets and does not allocate per socket.
//
// The package knows nothing of Prometheus.
package sockdiag

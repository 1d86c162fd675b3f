// Package dropcheck holds what the tests of the bpf drop tracer (bpf/drops, and the exporter's end-to-end
// tests) check its drops per reason against: the TcpExt counters the kernel bumps where it drops with that
// reason (net/ipv4/tcp_input.c, net/ipv4/tcp_ipv4.c).
package dropcheck

import "fmt"

// equal are the reasons whose drops the kernel counts, one for one, in these TcpExt counters:
// tcp_data_queue and tcp_data_queue_ofo drop with proto_mem where they count TCPRcvQDrop and TCPOFODrop,
// tcp_data_queue with tcp_zerowindow where it counts TCPZeroWindowDrop, tcp_data_queue_ofo with
// tcp_ofomerge where it counts TCPOFOMerge, tcp_add_backlog with socket_backlog where it counts
// TCPBacklogDrop.
var equal = []struct {
	reason   string
	counters []string
}{
	{"proto_mem", []string{"TCPRcvQDrop", "TCPOFODrop"}},
	{"tcp_zerowindow", []string{"TCPZeroWindowDrop"}},
	{"tcp_ofomerge", []string{"TCPOFOMerge"}},
	{"socket_backlog", []string{"TCPBacklogDrop"}},
}

// TcpExtCompare compares the rise of the drops per reason with the rise of the TcpExt counters (by
// field name) over the same time and in the same namespace, and returns one line per rule broken (broken)
// and one per allowed shortfall (short).
//
// The drops may fall short of the counters, never exceed them: by the program runs the kernel skipped
// (skipped: bpf recursion protection, a drop while the CPU was already in the program), and by the drops
// whose skb another holder still referenced. The kernel counts TcpExt before freeing, but
// sk_skb_reason_drop fires skb:kfree_skb only when it drops the last reference (skb_unref); the last holder
// frees it later under another reason, or consumes it. Rare (seen: 1 to 4 of ~110 in about one run of
// fifteen on a busy host), so up to 5% short is allowed; every shortfall is returned, for the log.
func TcpExtCompare(byReason, tcpExt map[string]uint64, skipped uint64) (broken, short []string) {
	for _, eq := range equal {
		var sum uint64
		for _, c := range eq.counters {
			sum += tcpExt[c]
		}
		got := byReason[eq.reason]
		switch {
		case got > sum || sum-got > skipped+sum/20:
			broken = append(broken, fmt.Sprintf("%s drops rose by %d, TcpExt %v by %d (%d program runs skipped)", eq.reason, got, eq.counters, sum, skipped))
		case got != sum:
			short = append(short, fmt.Sprintf("%s drops rose by %d, %d short of TcpExt %v (%d program runs skipped)", eq.reason, got, sum-got, eq.counters, skipped))
		}
	}
	// OfoPruned counts tcp_prune_ofo_queue calls that dropped something, each dropping one or more skbs.
	if p, n := byReason["tcp_ofo_queue_prune"], tcpExt["OfoPruned"]; p < n || (p > 0) != (n > 0) {
		broken = append(broken, fmt.Sprintf("tcp_ofo_queue_prune drops rose by %d, OfoPruned by %d: want drops >= calls, both or neither zero", p, n))
	}
	return broken, short
}

// TcpExtSummary is a log line of the TcpExt counters that TcpExtCompare and the tests use.
func TcpExtSummary(tcpExt map[string]uint64) string {
	return fmt.Sprintf("TcpExt TCPRcvQDrop=%d TCPOFODrop=%d TCPZeroWindowDrop=%d TCPOFOMerge=%d TCPBacklogDrop=%d OfoPruned=%d RcvPruned=%d PruneCalled=%d",
		tcpExt["TCPRcvQDrop"], tcpExt["TCPOFODrop"], tcpExt["TCPZeroWindowDrop"], tcpExt["TCPOFOMerge"], tcpExt["TCPBacklogDrop"],
		tcpExt["OfoPruned"], tcpExt["RcvPruned"], tcpExt["PruneCalled"])
}

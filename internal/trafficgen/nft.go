package trafficgen

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"

	"github.com/sockbuf/sockbuf_exporter/internal/sysutil"
)

// AddDropRule drops, at random, one in every data packets sent to port in the calling thread's network
// namespace (nft runs as a child of the calling thread, so inside testenv.NetNS.Do it inherits the
// namespace). The holes make later segments wait in the out-of-order queue, which the kernel then prunes
// too (TcpExt OfoPruned) when the receive buffer overruns. Only packets with payload are dropped (longer
// than the 20-byte IP header plus a 32-byte TCP header with timestamps), and never SYN or RST, so
// connecting and closing stay quick. remove deletes the rule's table.
func AddDropRule(port, every int) (remove func() error, err error) {
	if every < 2 {
		return nil, fmt.Errorf("every must be at least 2, got %d", every)
	}
	match := fmt.Sprintf("tcp dport %d tcp flags & (syn | rst) == 0 numgen random mod %d == 0 drop", port, every)
	return addInputTable(fmt.Sprintf("sockbuf_trafficgen_%d", port), "ip length > 52 "+match, "ip6 length > 32 "+match)
}

// AddHoleRule drops, in the calling thread's network namespace, every TCP segment to port that carries exactly
// length bytes of payload (IPv4 or IPv6, with the 32-byte TCP header of timestamps that Linux sends). A
// segment of that size then never arrives, nor do its retransmissions as long as they keep its size (see
// PruneOfo): the receiver keeps a hole, and everything after it waits in the out-of-order queue.
func AddHoleRule(port, length int) (remove func() error, err error) {
	if length <= 0 {
		return nil, fmt.Errorf("length must be positive, got %d", length)
	}
	match := fmt.Sprintf("tcp dport %d drop", port)
	return addInputTable(fmt.Sprintf("sockbuf_trafficgen_hole_%d", port),
		fmt.Sprintf("ip length %d %s", 20+32+length, match), fmt.Sprintf("ip6 length %d %s", 32+length, match))
}

// addInputTable adds an inet table with an input chain holding rules, in the calling thread's namespace, and
// returns a function that deletes it.
func addInputTable(table string, rules ...string) (remove func() error, err error) {
	nft, err := sysutil.LookPath("nft")
	if err != nil {
		return nil, fmt.Errorf("%w (apt-get install nftables)", err)
	}
	lines := []string{"table inet " + table + " {", "  chain input {", "    type filter hook input priority 0; policy accept;"}
	for _, r := range rules {
		lines = append(lines, "    "+r)
	}
	lines = append(lines, "  }", "}")
	if err := runNft(nft, strings.Join(lines, "\n"), "-f", "-"); err != nil {
		return nil, fmt.Errorf("adding nft table %s: %w", table, err)
	}
	return func() error {
		if err := runNft(nft, "", "delete", "table", "inet", table); err != nil {
			return fmt.Errorf("deleting nft table %s: %w", table, err)
		}
		return nil
	}, nil
}

func runNft(nft, stdin string, args ...string) error {
	cmd := exec.Command(nft, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("nft %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

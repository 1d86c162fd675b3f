package trafficgen

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
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
	nft, err := exec.LookPath("nft")
	if err != nil {
		return nil, fmt.Errorf("nft not found (apt-get install nftables): %w", err)
	}
	table := fmt.Sprintf("sockbuf_trafficgen_%d", port)
	match := fmt.Sprintf("tcp dport %d tcp flags & (syn | rst) == 0 numgen random mod %d == 0 drop", port, every)
	script := strings.Join([]string{
		"table inet " + table + " {",
		"  chain input {",
		"    type filter hook input priority 0; policy accept;",
		"    ip length > 52 " + match,
		"    ip6 length > 32 " + match,
		"  }",
		"}",
	}, "\n")
	if err := runNft(nft, script, "-f", "-"); err != nil {
		return nil, fmt.Errorf("adding drop rule for port %d: %w", port, err)
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

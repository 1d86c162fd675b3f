package collector

import (
	"fmt"
	"strings"

	"github.com/sockbuf/sockbuf_exporter/sockdiag"
)

// tcpStateLabels are the values of the state label, node_exporter's tcpstat names, by idiag_state
// (include/net/tcp_states.h).
var tcpStateLabels = [...]string{
	sockdiag.StateEstablished: "established",
	sockdiag.StateSynSent:     "syn_sent",
	sockdiag.StateSynRecv:     "syn_recv",
	sockdiag.StateFinWait1:    "fin_wait1",
	sockdiag.StateFinWait2:    "fin_wait2",
	sockdiag.StateTimeWait:    "time_wait",
	sockdiag.StateClose:       "close",
	sockdiag.StateCloseWait:   "close_wait",
	sockdiag.StateLastAck:     "last_ack",
	sockdiag.StateListen:      "listen",
	sockdiag.StateClosing:     "closing",
}

// parseStates turns --collector.sockets.states into a dump mask. It takes the state label's names, the names
// ss prints (sockdiag.StateName: ESTAB, UNCONN, ...), ss's filter names (established, syn-sent, syn-recv,
// fin-wait-1, fin-wait-2, time-wait, closed, close-wait, last-ack, listening, closing), and "all", in any case
// and with or without - and _; empty means sockdiag.DefaultStates.
func parseStates(s string) (uint32, error) {
	if strings.TrimSpace(s) == "" {
		return sockdiag.DefaultStates, nil
	}
	norm := func(n string) string {
		return strings.NewReplacer("-", "", "_", "").Replace(strings.ToLower(strings.TrimSpace(n)))
	}
	var mask uint32
	for _, name := range strings.Split(s, ",") {
		n := norm(name)
		switch n {
		case "":
			continue
		case "all":
			for st := range tcpStateLabels {
				if tcpStateLabels[st] != "" {
					mask |= 1 << st
				}
			}
			continue
		// The two of ss's filter names that are neither a label nor what ss prints.
		case "closed":
			n = "close"
		case "listening":
			n = "listen"
		}
		found := false
		for st, label := range tcpStateLabels {
			if label != "" && (norm(label) == n || norm(sockdiag.StateName(uint8(st))) == n) {
				mask |= 1 << st
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown TCP state %q", strings.TrimSpace(name))
		}
	}
	if mask&(1<<sockdiag.StateSynRecv) != 0 {
		// Connections in the handshake are request sockets, TCP_NEW_SYN_RECV inside the kernel.
		mask |= 1 << sockdiag.StateNewSynRecv
	}
	return mask, nil
}

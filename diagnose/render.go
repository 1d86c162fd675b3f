package diagnose

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// causeTitles say in one line what each cause means.
var causeTitles = map[string]string{
	CauseRcvbufPinned:          "the application set SO_RCVBUF and its sockets overflow",
	CauseRcvbufCappedByRmemMax: "the application asked SO_RCVBUF for more than net.core.rmem_max and got the cap; its sockets overflow",
	CauseTCPRmemMaxLow:         "autotuned sockets reached net.ipv4.tcp_rmem max and still overflow",
	CauseSlowReader:            "the application does not read as fast as data arrives; more buffer will not help",
	CauseTCPMemPressure:        "TCP memory at or over net.ipv4.tcp_mem pressure or max",
	CauseCgroupMemoryPressure:  "socket memory charged to a cgroup at its memory limit",
	CauseAcceptQueueOverflow:   "a listener's accept queue overflows: new connections are dropped",
	CauseBacklogDrops:          "data dropped while the application held the socket (TCPBacklogDrop)",
	CauseSoftnetBacklog:        "packets dropped from full per-CPU input queues before TCP saw them (host-wide)",
	CauseGrowthOnly:            "the kernel grew receive buffers; nothing was collapsed or lost and nothing needs changing",
	CauseUnattributedOverflow:  "receive data was collapsed or dropped, but the sockets could not be named",
}

// WriteText renders r for a person: per finding the cause, the group, the evidence, the fix and the query
// that shows it helped.
func WriteText(w io.Writer, r Report) error {
	var b strings.Builder
	win := fmtFloat(windowSeconds(0, r.WindowSeconds))
	switch len(r.Findings) {
	case 0:
		fmt.Fprintf(&b, "No receive-buffer problem seen over %s s.\n", win)
	case 1:
		fmt.Fprintf(&b, "1 finding over %s s, most harmful first.\n", win)
	default:
		fmt.Fprintf(&b, "%d findings over %s s, most harmful first.\n", len(r.Findings), win)
	}
	for i, f := range r.Findings {
		fmt.Fprintf(&b, "\n%d. %s (confidence %s): %s\n", i+1, f.Cause, f.Confidence, causeTitles[f.Cause])
		fmt.Fprintf(&b, "   Where: %s\n", scopeText(f.Cause, f.Scope))
		section(&b, "Evidence", f.Evidence)
		section(&b, "Fix", f.Fix)
		verify := "falls after the fix"
		if f.Cause == CauseGrowthOnly {
			verify = "stays at 0"
		}
		fmt.Fprintf(&b, "   Verify (%s):\n     %s\n", verify, f.Verify)
	}
	if len(r.Missing) > 0 {
		fmt.Fprintf(&b, "\nNot available, so not used: %s.\n", strings.Join(r.Missing, "; "))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func section(b *strings.Builder, title string, lines []string) {
	fmt.Fprintf(b, "   %s:\n", title)
	for _, l := range lines {
		fmt.Fprintf(b, "     - %s\n", l)
	}
}

func scopeText(cause string, s Scope) string {
	if s == (Scope{}) {
		switch cause {
		case CauseSoftnetBacklog, CauseTCPMemPressure:
			return "the whole host"
		}
		return "the whole network namespace"
	}
	var parts []string
	if s.Role != "" {
		parts = append(parts, "role "+s.Role)
	}
	if s.Port != "" {
		parts = append(parts, "port "+s.Port)
	}
	if s.Cgroup != "" {
		parts = append(parts, "cgroup "+s.Cgroup)
	}
	if s.Process != "" {
		parts = append(parts, "process "+s.Process)
	}
	return strings.Join(parts, ", ")
}

// WriteJSON writes r as the JSON contract, indented, without escaping <, > and & (fixes quote shell
// placeholders such as <dev>).
func WriteJSON(w io.Writer, r Report) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

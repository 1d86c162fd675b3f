package realsw

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Counters are the namespace's SNMP and netstat counters as nstat names them (TcpExtPruneCalled, TcpInSegs).
type Counters map[string]uint64

// Nstat reads the namespace's counters with `nstat -asz` (absolute, history untouched, zeros included).
func (e *Env) Nstat() Counters {
	e.t.Helper()
	c, err := ParseNstat(e.NS.MustRun(e.t, "nstat", "-asz"))
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// ParseNstat parses nstat's text output: a "#kernel" line, then "Name value rate" lines.
func ParseNstat(out string) (Counters, error) {
	c := Counters{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) < 2 {
			return nil, fmt.Errorf("nstat: malformed line %q", line)
		}
		v, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("nstat: line %q: %w", line, err)
		}
		c[f[0]] = v
	}
	if len(c) == 0 {
		return nil, fmt.Errorf("nstat printed no counters: %q", out)
	}
	return c, nil
}

// Sub returns c - before for every counter of c (counters that went backwards give 0).
func (c Counters) Sub(before Counters) Counters {
	d := Counters{}
	for k, v := range c {
		if b := before[k]; v >= b {
			d[k] = v - b
		}
	}
	return d
}

// Figures are the counters the harm model reads, in the order docs/harm.md lists them.
var Figures = []string{
	"TcpInSegs",
	"TcpExtPruneCalled", "TcpExtTCPRcvCollapsed", "TcpExtRcvPruned", "TcpExtOfoPruned",
	"TcpExtTCPRcvQDrop", "TcpExtTCPOFODrop", "TcpExtTCPBacklogDrop", "TcpExtTCPZeroWindowDrop",
	"TcpExtTCPWantZeroWindowAdv", "TcpExtTCPToZeroWindowAdv", "TcpExtTCPFromZeroWindowAdv",
	"TcpExtTCPWinProbe", "TcpExtTCPAbortOnMemory", "TcpExtTCPMemoryPressures", "TcpExtListenOverflows",
}

// String prints the Figures, then any other counter that moved, one "name value" per line.
func (c Counters) String() string {
	var b strings.Builder
	seen := map[string]bool{}
	for _, k := range Figures {
		seen[k] = true
		fmt.Fprintf(&b, "%s %d\n", k, c[k])
	}
	var rest []string
	for k, v := range c {
		if !seen[k] && v > 0 {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	for _, k := range rest {
		fmt.Fprintf(&b, "%s %d\n", k, c[k])
	}
	return b.String()
}

// Socket is one socket as `ss -tmn` prints it: queue lengths and its skmem fields.
type Socket struct {
	Local, Peer string
	RecvQ       uint64
	Rmem        uint64 // skmem r: rmem_alloc
	Rcvbuf      uint64 // skmem rb
	Drops       uint64 // skmem d: sk_drops
}

var skmemRe = regexp.MustCompile(`skmem:\(r(\d+),rb(\d+),.*?(?:,d(\d+))?\)`)

// Sockets lists the established TCP sockets that match an ss filter, e.g. "sport = :8082" (the server side
// of a port's connections) or "dport = :8081" (the client side).
func (e *Env) Sockets(filter string) []Socket {
	e.t.Helper()
	out := e.NS.MustRun(e.t, "ss", "-tmnH", "state", "established", "( "+filter+" )")
	s, err := ParseSS(out)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// ParseSS parses `ss -tmnH state ...` output: a socket line (Recv-Q Send-Q Local Peer) followed by its skmem
// line.
func ParseSS(out string) ([]Socket, error) {
	var socks []Socket
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case strings.HasPrefix(f[0], "skmem:"):
			if len(socks) == 0 {
				return nil, fmt.Errorf("ss: skmem before any socket: %q", line)
			}
			m := skmemRe.FindStringSubmatch(f[0])
			if m == nil {
				return nil, fmt.Errorf("ss: unparsable skmem %q", f[0])
			}
			s := &socks[len(socks)-1]
			s.Rmem, _ = strconv.ParseUint(m[1], 10, 64)
			s.Rcvbuf, _ = strconv.ParseUint(m[2], 10, 64)
			s.Drops, _ = strconv.ParseUint(m[3], 10, 64)
		case len(f) >= 4:
			q, err := strconv.ParseUint(f[0], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("ss: line %q: %w", line, err)
			}
			socks = append(socks, Socket{RecvQ: q, Local: f[2], Peer: f[3]})
		default:
			return nil, fmt.Errorf("ss: malformed line %q", line)
		}
	}
	return socks, nil
}

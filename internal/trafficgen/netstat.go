package trafficgen

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// This parser is deliberately independent of collector/netstat.go: the end-to-end tests compare the exporter
// against it, so sharing code would make the check circular.

// Netstat holds the counters of /proc/net/netstat and /proc/net/snmp by section and field, e.g.
// n["TcpExt"]["PruneCalled"] or n["Tcp"]["InSegs"].
type Netstat map[string]map[string]uint64

// Get returns one counter and whether this kernel has it.
func (n Netstat) Get(section, field string) (uint64, bool) {
	v, ok := n[section][field]
	return v, ok
}

// Sub returns how much each counter present in both rose from before to n (0 where it did not rise).
func (n Netstat) Sub(before Netstat) Netstat {
	out := Netstat{}
	for sec, fields := range n {
		for f, v := range fields {
			b, ok := before[sec][f]
			if !ok {
				continue
			}
			if out[sec] == nil {
				out[sec] = map[string]uint64{}
			}
			if v >= b {
				out[sec][f] = v - b
			} else {
				out[sec][f] = 0
			}
		}
	}
	return out
}

// Moved returns a condition for Options.Until: every TcpExt field named has risen in the calling thread's
// namespace since base. A read error counts as met, so that the load stops and the caller's check of the
// counters reports what went wrong.
func Moved(base Netstat, fields ...string) func() bool {
	return func() bool {
		now, err := ReadNetstat()
		if err != nil {
			return true
		}
		d := now.Sub(base)["TcpExt"]
		for _, f := range fields {
			if d[f] == 0 {
				return false
			}
		}
		return true
	}
}

// ReadNetstat reads TcpExt, IpExt, Tcp and the other sections of the calling thread's network namespace.
// It reads /proc/thread-self/net, not /proc/net (which follows the main thread), so that it sees the
// namespace inside testenv.NetNS.Do.
func ReadNetstat() (Netstat, error) {
	return readNetstatFrom("/proc/thread-self/net")
}

// readNetstatFrom reads netstat and snmp below dir, e.g. /proc/<pid>/net for another process's namespace.
func readNetstatFrom(dir string) (Netstat, error) {
	n := Netstat{}
	for _, name := range []string{"netstat", "snmp"} {
		f, err := os.Open(dir + "/" + name)
		if err != nil {
			return nil, err
		}
		err = parseNetstat(f, n)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("parsing %s/%s: %w", dir, name, err)
		}
	}
	return n, nil
}

// ParseNetstat parses the header/value line pairs of /proc/net/netstat or /proc/net/snmp (also what
// `ip netns exec NS cat /proc/net/netstat` prints).
func ParseNetstat(r io.Reader) (Netstat, error) {
	n := Netstat{}
	return n, parseNetstat(r, n)
}

func parseNetstat(r io.Reader, n Netstat) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		header := strings.Fields(sc.Text())
		if !sc.Scan() {
			return errors.New("header line without a value line")
		}
		values := strings.Fields(sc.Text())
		if len(header) == 0 || len(header) != len(values) || header[0] != values[0] {
			return fmt.Errorf("header and values disagree: %q", header)
		}
		sec := strings.TrimSuffix(header[0], ":")
		if n[sec] == nil {
			n[sec] = map[string]uint64{}
		}
		for i := 1; i < len(header); i++ {
			// Some snmp fields (Tcp MaxConn) are signed; a negative value is not a counter, so skip it.
			v, err := strconv.ParseUint(values[i], 10, 64)
			if err != nil {
				continue
			}
			n[sec][header[i]] = v
		}
	}
	return sc.Err()
}

// PruneCounters are the TcpExt fields the pruning load moves, in the order tests usually report them.
var PruneCounters = []string{"PruneCalled", "RcvPruned", "TCPRcvCollapsed", "OfoPruned"}

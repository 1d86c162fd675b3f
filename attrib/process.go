package attrib

import "github.com/sockbuf/sockbuf_exporter/procnet"

// Process attribution maps a socket's inode (idiag_inode) to the name (comm) of a process that holds it
// open. The kernel has no cheaper way than readlink on every entry of a /proc/<pid>/fd, which is what
// `ss -p` does too, so it is off by default, and ProcessScanner reads a process's links only when needed:
// see process_linux.go. BenchmarkProcessScan measures a full read of the host's descriptors.

// maxProcessNames bounds the interned process names; beyond it the table, and with it everything the
// scanner knows, starts over.
const maxProcessNames = 4096

// processNames interns process names so that a group key holds a small index, not a string. Index 0 is the
// empty name: a socket no process holds (orphaned, TIME_WAIT) or one the scan could not see.
type processNames struct {
	names []string
	index map[string]int32
}

func newProcessNames() processNames {
	return processNames{names: []string{""}, index: map[string]int32{"": 0}}
}

// intern returns the index of name, adding it if new; the lookup with a []byte does not allocate. The name
// kept is valid UTF-8 (Label); the index is by the raw bytes.
func (p *processNames) intern(name []byte) int32 {
	if i, ok := p.index[string(name)]; ok {
		return i
	}
	s := string(name)
	i := int32(len(p.names))
	p.names = append(p.names, Label(s))
	p.index[s] = i
	return i
}

func (p *processNames) name(i int32) string {
	if i < 0 || int(i) >= len(p.names) {
		return ""
	}
	return p.names[i]
}

// full reports whether the table grew too large (a host that runs many short-lived, differently named
// processes) and must start over, between scrapes.
func (p *processNames) full() bool { return len(p.names) > maxProcessNames }

// parseSocketLink returns the inode of a /proc/<pid>/fd link target of the form "socket:[12345]".
func parseSocketLink(b []byte) (uint32, bool) {
	const prefix = "socket:["
	if len(b) < len(prefix)+2 || string(b[:len(prefix)]) != prefix || b[len(b)-1] != ']' {
		return 0, false
	}
	v, err := procnet.ParseUint(b[len(prefix) : len(b)-1])
	if err != nil || v > 1<<32-1 {
		return 0, false
	}
	return uint32(v), true
}

// isDigits reports whether a /proc or /proc/<pid>/fd entry name is a number (a pid, a descriptor).
func isDigits(name []byte) bool {
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// pidPath builds the NUL-terminated path "<pid>/<file>" into buf.
func pidPath(buf []byte, pid []byte, file string) []byte {
	buf = append(buf[:0], pid...)
	buf = append(buf, '/')
	buf = append(buf, file...)
	return append(buf, 0)
}

package evidence

import (
	"time"

	"github.com/sockbuf/sockbuf_exporter/bpf/drops"
	"github.com/sockbuf/sockbuf_exporter/diagnose"
	"github.com/sockbuf/sockbuf_exporter/memcg"
	"github.com/sockbuf/sockbuf_exporter/procnet"
)

// Reading is one moment of the namespace: what each source gave, and whether it could be read at all.
type Reading struct {
	Time time.Time

	Netstat   procnet.Netstat
	NetstatOK bool

	Sockstat   procnet.Sockstat
	SockstatOK bool

	Sysctls  procnet.Sysctls
	SysctlOK bool

	// Softnet holds each CPU's dropped and squeezed columns, by CPU number.
	Softnet   []procnet.SoftnetRow
	SoftnetOK bool

	// Sockets: the two dumps succeeded. Groups and Listeners are then this reading's, at most the cap each.
	Sockets   bool
	Groups    []GroupReading
	Listeners []ListenerReading
	// TCPInfo: the kernel sent tcpi_rcv_wnd with the sockets (tcp_info asked for, kernel 6.2+).
	TCPInfo bool
	// DropsKnown: the kernel sent sk_drops in skmeminfo.
	DropsKnown bool
	// LockBits: the bpf socket iterator counted the SO_RCVBUF locks of the groups (Config.Locks).
	LockBits bool

	// Memcgs are the memory cgroups of the processes holding the groups' sockets, by path, with
	// Config.Memcg.
	Memcgs map[string]memcg.Stats
	// MemcgOK: the memory cgroups were looked for (Config.Memcg was set).
	MemcgOK bool

	// BPF is the drop tracer's counters since it was opened, when Config.Tracer is set and could be read.
	BPF *drops.Snapshot

	// Errors says what could not be read, for the report's text.
	Errors []string
}

// GroupReading is one socket group in one reading.
type GroupReading struct {
	Key    diagnose.GroupKey
	Sample diagnose.GroupSample
	// Drops is the increase of sk_drops of the group's sockets since the reading before (a socket not seen
	// before gives all of its drops); in the first reading of a Sampler it is only a baseline.
	Drops uint64
	// Memcg is the memory cgroup that the group's sockets are charged to (that of a process holding one of
	// them), with Config.Memcg; "" when not known.
	Memcg string
	pid   int32
}

// ListenerReading is the fullest listener of one port in one reading.
type ListenerReading struct {
	Port   string
	Sample diagnose.ListenSample
}

// netstatMap gives the counters by kernel name, as diagnose.NetstatDelta takes them.
func netstatMap(n *procnet.Netstat) map[string]uint64 {
	m := make(map[string]uint64, procnet.NumCounters)
	for c := range procnet.NumCounters {
		if v, ok := n.Get(c); ok {
			m[c.Name()] = v
		}
	}
	return m
}

// sysctlOf converts the sysctls that diagnose uses; one not read stays unknown.
func sysctlOf(s *procnet.Sysctls) diagnose.Sysctl {
	one := func(k procnet.Sysctl, i int) diagnose.Value {
		v := s[k]
		if !v.OK || v.Values[i] < 0 {
			return diagnose.Value{}
		}
		return diagnose.Val(uint64(v.Values[i]))
	}
	return diagnose.Sysctl{
		RmemMax:          one(procnet.RmemMax, 0),
		RmemDefault:      one(procnet.RmemDefault, 0),
		TCPRmem:          [3]diagnose.Value{one(procnet.TCPRmem, 0), one(procnet.TCPRmem, 1), one(procnet.TCPRmem, 2)},
		ModerateRcvbuf:   one(procnet.TCPModerateRcvbuf, 0),
		NetdevMaxBacklog: one(procnet.NetdevMaxBacklog, 0),
		Somaxconn:        one(procnet.Somaxconn, 0),
	}
}

// tcpMemOf is net.ipv4.tcp_mem in pages (read in the host's namespace only).
func tcpMemOf(s *procnet.Sysctls) [3]diagnose.Value {
	var out [3]diagnose.Value
	if v := s[procnet.TCPMem]; v.OK {
		for i := range out {
			if v.Values[i] >= 0 {
				out[i] = diagnose.Val(uint64(v.Values[i]))
			}
		}
	}
	return out
}

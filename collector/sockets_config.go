package collector

// SocketsConfig configures the per-socket collector (sockets.go).
type SocketsConfig struct {
	// MaxGroups caps the number of (role, port, attribution) groups; the rest fold into port="other".
	MaxGroups int
	// FullRatio is the rmem_alloc/rcvbuf share at or above which a socket counts as full.
	FullRatio float64
	// States is a comma-separated list of TCP states to dump; empty means every state that holds memory.
	States string
	// TCPInfo asks the kernel for struct tcp_info with every socket.
	TCPInfo bool
	// CgroupAttribution labels groups with the owning cgroup, from the cgroup id in each inet_diag reply.
	CgroupAttribution bool
	// ProcessAttribution labels groups with the owning process name, from a scan of /proc/*/fd.
	ProcessAttribution bool
	// CgroupRoot is where the cgroup v2 hierarchy is mounted; empty means find it in /proc/self/mountinfo.
	CgroupRoot string
}

package drops

// Role is a socket's side of its connection, decided as the sockets collector decides it.
type Role uint8

// Roles. RoleUnknown is given to sockets of a network namespace whose listening ports SetListening has not
// been told; their port is 0.
const (
	RoleUnknown Role = iota
	RoleServer
	RoleClient
)

func (r Role) String() string {
	switch r {
	case RoleServer:
		return "server"
	case RoleClient:
		return "client"
	}
	return "unknown"
}

// MemoryKind says which direction a socket wanted memory for (the kind argument of
// sock:sock_exceed_buf_limit: SK_MEM_SEND or SK_MEM_RECV, include/net/sock.h).
type MemoryKind uint8

// Memory kinds.
const (
	MemorySend MemoryKind = iota
	MemoryRecv
)

func (k MemoryKind) String() string {
	if k == MemoryRecv {
		return "recv"
	}
	return "send"
}

// Drop counts the packets of TCP sockets of one group the kernel freed with one drop reason, since Open.
type Drop struct {
	Reason       string // enum skb_drop_reason name without SKB_DROP_REASON_, lower case: "proto_mem"
	ReasonCode   uint32
	Role         Role
	Port         uint16 // local port of a server, remote port of a client, 0 when the role is unknown
	CgroupID     uint64 // the socket's cgroup v2 id (INET_DIAG_CGROUP_ID); 0 for TIME_WAIT and request sockets
	RcvbufLocked bool   // SO_RCVBUF set by the application (sk_userlocks & SOCK_RCVBUF_LOCK)
	Packets      uint64
}

// UnattributedDrop counts the packets freed with one drop reason without a TCP socket: no receiving socket
// (rx_sk NULL: before socket lookup, softnet, netfilter, no socket) or a socket of another protocol.
type UnattributedDrop struct {
	Reason     string
	ReasonCode uint32
	Packets    uint64
}

// RcvbufGrow counts the times receive-buffer autotuning (tcp_rcv_space_adjust) found a group's reader
// consuming more per round trip than the buffer's space and called tcp_rcvbuf_grow(): the buffer grew,
// unless RcvbufLocked (SO_RCVBUF pinned it: growth wanted and refused) or it was at tcp_rmem's maximum.
type RcvbufGrow struct {
	Role         Role
	Port         uint16
	CgroupID     uint64
	RcvbufLocked bool
	Count        uint64
}

// MemoryLimitHit counts the times TCP sockets of a cgroup wanted memory beyond tcp_mem or their memory
// cgroup's limit (__sk_mem_raise_allocated() in net/core/sock.c).
type MemoryLimitHit struct {
	Kind     MemoryKind
	CgroupID uint64
	Count    uint64
}

// Lost counts events that were not counted because their map was full (a group beyond Options.MaxGroups).
type Lost struct {
	Drops, Unattributed, RcvbufGrow, MemoryLimit uint64
}

// Snapshot is what Read returns: counters since Open, summed over CPUs. Every counter only rises.
type Snapshot struct {
	Drops        []Drop
	Unattributed []UnattributedDrop
	RcvbufGrow   []RcvbufGrow
	MemoryLimit  []MemoryLimitHit
	Lost         Lost
	// Missed counts program runs the kernel skipped because the same program was already running on that
	// CPU (a tracepoint hit from an interrupt while the program ran): events neither counted nor lost.
	Missed uint64
}

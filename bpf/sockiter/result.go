package sockiter

import "time"

// Role is a socket's role in its group. The values are the sockets collector's.
type Role uint8

const (
	RoleClient Role = iota // the local port has no LISTEN socket: grouped by the remote port
	RoleServer             // the local port has a LISTEN socket: grouped by it
)

// MaxBounds is the most bounds a histogram can have.
const MaxBounds = 16

// Key identifies a group.
type Key struct {
	CgroupID uint64 // 0 without Options.Cgroups, and for TIME_WAIT and SYN_RECV mini-sockets
	Port     uint16
	Role     Role
}

// Stats are the sums over one group's sockets, as the netlink path computes them from idiag_rqueue,
// idiag_wqueue and skmeminfo, plus what only the iterator gives.
type Stats struct {
	Sockets      uint64
	RecvQueue    uint64 // sum of Recv-Q
	RecvQueueMax uint64
	SendQueue    uint64 // sum of Send-Q
	RmemAlloc    uint64
	Rcvbuf       uint64
	Full         uint64 // sockets with rmem_alloc >= FullRatio * rcvbuf (and rcvbuf > 0)
	ZeroWindow   uint64 // ESTABLISHED sockets whose last advertised window (rcv_wnd) is 0
	Drops        uint64 // sk_drops added since the walk that last saw each socket (Options.Drops)

	// Sockets whose SO_RCVBUF the application set, and their rcvbuf sizes over Options.RcvbufBounds
	// (counts per bucket, not cumulative; the last is above every bound).
	RcvbufLocked     uint64
	RcvbufLockedSum  uint64
	RcvbufLockedHist [MaxBounds + 1]uint64
}

// Group is one group and its sums.
type Group struct {
	Key
	Stats
}

// Listener is the fullest LISTEN socket of a port (by accept queue length/limit, then length, then the
// smaller limit, as the netlink path chooses), and how many listeners the port has.
type Listener struct {
	Port    uint16
	Length  uint32 // sk_ack_backlog: connections waiting for accept()
	Limit   uint32 // sk_max_ack_backlog
	Sockets uint32
}

// Histogram counts observations per bucket (not cumulative; Counts has one more entry than Bounds, for the
// observations above every bound).
type Histogram struct {
	Bounds []float64
	Counts []uint64
	Count  uint64
	Sum    float64
}

// Result is one walk. It belongs to the Engine and is valid until the next Walk.
type Result struct {
	Groups []Group
	// Overflow sums, per role, the sockets whose group did not fit in Options.MaxGroups; OverflowSockets
	// counts them. The netlink path's folding would put them in port="other".
	Overflow        [2]Stats
	OverflowSockets uint64

	Listeners      []Listener
	ListenOverflow uint64 // listeners whose port did not fit (cannot happen: the map holds every port)

	// States counts every socket visited by state (include/net/tcp_states.h numbering, TCP_NEW_SYN_RECV
	// = 12 for connections in the handshake), selected by Options.States or not.
	States [16]uint64

	Fill Histogram // rmem_alloc/rcvbuf of the selected non-listening sockets with rcvbuf > 0
	Size Histogram // rcvbuf of the selected ESTABLISHED sockets

	Phases Phases // where the walk's time went

	Visited        uint64 // sockets the last pass visited
	Passes         int    // 2 when a listener appeared after the first non-listening socket
	LateListeners  uint64 // listeners seen after a non-listening socket in the last pass (churn)
	DropsUntracked uint64 // sockets with drops whose per-socket storage could not be created
}

// Phases is the wall time of a walk's parts: resetting the maps, the kernel's walk (the reads of the
// iterator, which run the program on every socket), and reading the groups and totals back.
type Phases struct {
	Reset, Iterate, Collect time.Duration
}

package sockdiag

import "net/netip"

// Socket is one TCP socket of a dump. Dump reuses one Socket for every callback: copy what you keep.
type Socket struct {
	Family  uint8 // FamilyInet or FamilyInet6 (an IPv4-mapped IPv6 socket is FamilyInet6)
	State   uint8 // StateEstablished, StateListen, ...
	Timer   uint8 // idiag_timer: 0 none, 1 retransmit, 2 keepalive, 3 TIME_WAIT, 4 zero window probe
	Retrans uint8 // idiag_retrans

	Src, Dst netip.AddrPort
	IfIndex  uint32 // idiag_if: bound interface, 0 if none
	Cookie   uint64 // the kernel's socket cookie, stable for the socket's life: key per-socket state on it
	Expires  uint32 // idiag_expires, milliseconds until the timer fires
	Inode    uint32
	UID      uint32

	// RQueue and WQueue are idiag_rqueue and idiag_wqueue: `ss`'s Recv-Q and Send-Q. On an established
	// socket they are the unread bytes in the receive queue and the unacknowledged bytes in the send
	// queue. On a LISTEN socket they are the accept queue length and its limit (the backlog): use
	// AcceptQueue and AcceptQueueLimit to make that explicit.
	RQueue, WQueue uint32

	CgroupID    uint64 // INET_DIAG_CGROUP_ID (kernel 5.7+, sent unasked)
	HasCgroupID bool

	SKMemInfo    SKMemInfo // INET_DIAG_SKMEMINFO (ExtSKMemInfo)
	HasSKMemInfo bool
	SKMemInfoLen int // bytes the kernel sent; fields beyond them are zero (see SKMemInfoHasDrops)

	MemInfo    MemInfo // INET_DIAG_MEMINFO (ExtMemInfo)
	HasMemInfo bool

	TCPInfo    TCPInfo // INET_DIAG_INFO (ExtInfo)
	TCPInfoLen int     // bytes the kernel sent, 0 if none: a field is present if TCPInfoLen covers it

	// Attempt counts the restarts of the dump this socket belongs to: 0 normally, n after the kernel marked
	// n earlier attempts inconsistent (NLM_F_DUMP_INTR) and Dump started over. A caller that accumulates
	// across callbacks must discard what it gathered when Attempt changes.
	Attempt int
}

// IsListen reports whether the socket is listening, where RQueue and WQueue describe the accept queue.
func (s *Socket) IsListen() bool { return s.State == StateListen }

// AcceptQueue is the number of connections waiting to be accepted on a LISTEN socket (0 otherwise).
func (s *Socket) AcceptQueue() uint32 {
	if s.IsListen() {
		return s.RQueue
	}
	return 0
}

// AcceptQueueLimit is the backlog limit of a LISTEN socket's accept queue (0 otherwise).
func (s *Socket) AcceptQueueLimit() uint32 {
	if s.IsListen() {
		return s.WQueue
	}
	return 0
}

// RecvQueue is the number of bytes received but not yet read by the application (0 on a LISTEN socket).
func (s *Socket) RecvQueue() uint32 {
	if s.IsListen() {
		return 0
	}
	return s.RQueue
}

// SendQueue is the number of bytes sent but not yet acknowledged (0 on a LISTEN socket).
func (s *Socket) SendQueue() uint32 {
	if s.IsListen() {
		return 0
	}
	return s.WQueue
}

// SKMemInfo is INET_DIAG_SKMEMINFO, the socket's memory accounting in bytes (the `skmem:(...)` of `ss -m`),
// indexed by the SK_MEMINFO_* enum of include/uapi/linux/sock_diag.h.
type SKMemInfo struct {
	RmemAlloc  uint32 // r: bytes of skbs held in the receive queue (truesize)
	Rcvbuf     uint32 // rb: receive buffer limit (SO_RCVBUF or autotuned)
	WmemAlloc  uint32 // t: bytes in flight in the transmit path
	Sndbuf     uint32 // tb: send buffer limit
	FwdAlloc   uint32 // f: memory forward-allocated to the socket
	WmemQueued uint32 // w: bytes queued in the send queue
	Optmem     uint32 // o: option memory
	Backlog    uint32 // bl: bytes in the backlog queue (arrived while the socket was owned by a user)
	Drops      uint32 // d: packets dropped (sk_drops); older kernels do not send it
}

// sizeofSKMemInfoDrops is the attribute length that includes Drops.
const sizeofSKMemInfoDrops = 4 * skMemInfoVars

// SKMemInfoHasDrops reports whether the kernel sent the drops counter (it was added after the others).
func (s *Socket) SKMemInfoHasDrops() bool { return s.SKMemInfoLen >= sizeofSKMemInfoDrops }

// MemInfo is INET_DIAG_MEMINFO, struct inet_diag_meminfo of include/uapi/linux/inet_diag.h.
type MemInfo struct {
	RMem uint32 // idiag_rmem: sk_rmem_alloc, as SKMemInfo.RmemAlloc
	WMem uint32 // idiag_wmem: sk_wmem_queued, as SKMemInfo.WmemQueued
	FMem uint32 // idiag_fmem: forward-allocated memory, as SKMemInfo.FwdAlloc
	TMem uint32 // idiag_tmem: sk_wmem_alloc, as SKMemInfo.WmemAlloc
}

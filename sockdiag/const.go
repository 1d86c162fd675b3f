package sockdiag

// Address families, from include/linux/socket.h. They equal unix.AF_INET and unix.AF_INET6 on Linux and are
// repeated here so the codec builds on every platform.
const (
	FamilyUnspec uint8 = 0  // AF_UNSPEC
	FamilyInet   uint8 = 2  // AF_INET
	FamilyInet6  uint8 = 10 // AF_INET6
)

// protoTCP is IPPROTO_TCP, include/uapi/linux/in.h.
const protoTCP = 6

// TCP states, from include/net/tcp_states.h (the kernel's enum; userspace sees them in idiag_state and
// tcpi_state). Request.States is a bit mask of 1<<State.
const (
	StateEstablished uint8 = 1
	StateSynSent     uint8 = 2
	StateSynRecv     uint8 = 3
	StateFinWait1    uint8 = 4
	StateFinWait2    uint8 = 5
	StateTimeWait    uint8 = 6
	StateClose       uint8 = 7
	StateCloseWait   uint8 = 8
	StateLastAck     uint8 = 9
	StateListen      uint8 = 10
	StateClosing     uint8 = 11
	StateNewSynRecv  uint8 = 12
)

// DefaultStates selects every state whose socket can hold buffer memory: all full sockets but TIME_WAIT and
// SYN_RECV, which the kernel keeps as mini-sockets (inet_timewait_sock, request_sock) without buffers.
const DefaultStates uint32 = 1<<StateEstablished | 1<<StateSynSent | 1<<StateFinWait1 | 1<<StateFinWait2 |
	1<<StateClose | 1<<StateCloseWait | 1<<StateLastAck | 1<<StateListen | 1<<StateClosing

var stateNames = [...]string{
	StateEstablished: "ESTAB",
	StateSynSent:     "SYN-SENT",
	StateSynRecv:     "SYN-RECV",
	StateFinWait1:    "FIN-WAIT-1",
	StateFinWait2:    "FIN-WAIT-2",
	StateTimeWait:    "TIME-WAIT",
	StateClose:       "UNCONN",
	StateCloseWait:   "CLOSE-WAIT",
	StateLastAck:     "LAST-ACK",
	StateListen:      "LISTEN",
	StateClosing:     "CLOSING",
	StateNewSynRecv:  "NEW-SYN-RECV",
}

// StateName returns the name `ss` prints for a TCP state (e.g. "ESTAB", "LISTEN"), or "UNKNOWN".
func StateName(state uint8) string {
	if int(state) < len(stateNames) && stateNames[state] != "" {
		return stateNames[state]
	}
	return "UNKNOWN"
}

// Netlink framing, from include/uapi/linux/netlink.h.
const (
	nlmsgHdrLen = 16 // sizeof(struct nlmsghdr)
	nlaHdrLen   = 4  // sizeof(struct nlattr)

	nlmsgNoop    = 0x1 // NLMSG_NOOP
	nlmsgError   = 0x2 // NLMSG_ERROR
	nlmsgDone    = 0x3 // NLMSG_DONE
	nlmsgOverrun = 0x4 // NLMSG_OVERRUN

	nlmFRequest  = 0x01  // NLM_F_REQUEST
	nlmFMulti    = 0x02  // NLM_F_MULTI
	nlmFDumpIntr = 0x10  // NLM_F_DUMP_INTR
	nlmFRoot     = 0x100 // NLM_F_ROOT
	nlmFMatch    = 0x200 // NLM_F_MATCH
	nlmFDump     = nlmFRoot | nlmFMatch

	nlaTypeMask = 0x3fff // NLA_TYPE_MASK: ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER)

	netlinkSockDiag = 4 // NETLINK_SOCK_DIAG
)

// Message types, from include/uapi/linux/sock_diag.h and include/uapi/linux/inet_diag.h.
const (
	sockDiagByFamily = 20 // SOCK_DIAG_BY_FAMILY, sock_diag.h: the inet_diag_req_v2 request
	tcpDiagGetSock   = 18 // TCPDIAG_GETSOCK, inet_diag.h: the older inet_diag_req request, which alone
	// lets the kernel walk both families at once (it sets sdiag_family = AF_UNSPEC in inet_diag_dump_compat).
)

// Structure sizes and offsets, from include/uapi/linux/inet_diag.h.
const (
	sizeofSockID  = 48 // struct inet_diag_sockid
	sizeofReqV2   = 56 // struct inet_diag_req_v2
	sizeofReqV1   = 60 // struct inet_diag_req
	sizeofDiagMsg = 72 // struct inet_diag_msg
	sizeofMemInfo = 16 // struct inet_diag_meminfo
)

// Reply attributes (enum { INET_DIAG_NONE, ... }), from include/uapi/linux/inet_diag.h.
const (
	inetDiagMemInfo   = 1  // INET_DIAG_MEMINFO: struct inet_diag_meminfo
	inetDiagInfo      = 2  // INET_DIAG_INFO: struct tcp_info
	inetDiagSKMemInfo = 7  // INET_DIAG_SKMEMINFO: __u32[SK_MEMINFO_VARS]
	inetDiagCgroupID  = 21 // INET_DIAG_CGROUP_ID: __u64, kernel 5.7+
)

// Ext selects reply attributes. Each bit is 1<<(INET_DIAG_xxx-1), as in idiag_ext of inet_diag_req_v2
// (include/uapi/linux/inet_diag.h). INET_DIAG_CGROUP_ID is not requested: the kernel sends it unasked.
type Ext uint8

// Extensions the decoder understands.
const (
	ExtMemInfo   Ext = 1 << (inetDiagMemInfo - 1)   // INET_DIAG_MEMINFO
	ExtInfo      Ext = 1 << (inetDiagInfo - 1)      // INET_DIAG_INFO (struct tcp_info)
	ExtSKMemInfo Ext = 1 << (inetDiagSKMemInfo - 1) // INET_DIAG_SKMEMINFO
)

// sk_meminfo indexes (enum { SK_MEMINFO_RMEM_ALLOC, ... }), from include/uapi/linux/sock_diag.h.
const (
	skMemInfoRmemAlloc = iota
	skMemInfoRcvbuf
	skMemInfoWmemAlloc
	skMemInfoSndbuf
	skMemInfoFwdAlloc
	skMemInfoWmemQueued
	skMemInfoOptmem
	skMemInfoBacklog
	skMemInfoDrops
	skMemInfoVars // SK_MEMINFO_VARS
)

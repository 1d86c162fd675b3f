package sockdiag

import (
	"encoding/binary"
	"net/netip"
)

// Request selects the sockets of a dump and the attributes the kernel sends with each.
type Request struct {
	// Family is FamilyInet, FamilyInet6, or FamilyUnspec for both. Both families share one kernel hash
	// table, so FamilyUnspec asks for a single walk of it through the older TCPDIAG_GETSOCK request; if the
	// kernel rejects that, the Client falls back to one SOCK_DIAG_BY_FAMILY dump per family.
	Family uint8
	// States is a bit mask of 1<<StateXxx; 0 means DefaultStates.
	States uint32
	// Extensions selects the attributes to send, e.g. ExtSKMemInfo|ExtInfo.
	Extensions Ext
}

// RequestFlags are the netlink header flags of a dump request: NLM_F_REQUEST|NLM_F_DUMP.
const RequestFlags uint16 = nlmFRequest | nlmFDump

func (r Request) states() uint32 {
	if r.States == 0 {
		return DefaultStates
	}
	return r.States
}

// AppendPayload appends the request's payload to b and returns it with the netlink message type to send
// it with: SOCK_DIAG_BY_FAMILY and struct inet_diag_req_v2 for one family, TCPDIAG_GETSOCK and struct
// inet_diag_req for FamilyUnspec (include/uapi/linux/inet_diag.h). The socket id is left zero: a dump
// ignores it.
func (r Request) AppendPayload(b []byte) (msgType uint16, out []byte) {
	ne := binary.NativeEndian
	if r.Family == FamilyUnspec {
		// struct inet_diag_req: family, src_len, dst_len, ext, id (48 bytes), states, dbs.
		var p [sizeofReqV1]byte
		p[0] = FamilyUnspec
		p[3] = byte(r.Extensions)
		ne.PutUint32(p[4+sizeofSockID:], r.states())
		return tcpDiagGetSock, append(b, p[:]...)
	}
	// struct inet_diag_req_v2: family, protocol, ext, pad, states, id (48 bytes).
	var p [sizeofReqV2]byte
	p[0] = r.Family
	p[1] = protoTCP
	p[2] = byte(r.Extensions)
	ne.PutUint32(p[4:], r.states())
	return sockDiagByFamily, append(b, p[:]...)
}

// AppendMessage appends the whole request, netlink header included, with the given sequence number and
// port id (0 lets the kernel fill in the sender's).
func (r Request) AppendMessage(b []byte, seq, pid uint32) []byte {
	start := len(b)
	b = append(b, make([]byte, nlmsgHdrLen)...)
	typ, b := r.AppendPayload(b)
	ne := binary.NativeEndian
	h := b[start:]
	ne.PutUint32(h[0:], uint32(len(b)-start))
	ne.PutUint16(h[4:], typ)
	ne.PutUint16(h[6:], RequestFlags)
	ne.PutUint32(h[8:], seq)
	ne.PutUint32(h[12:], pid)
	return b
}

// appendLookup appends the payload of a request for one socket: struct inet_diag_req_v2 for its family with
// the socket id filled in (ports big-endian, addresses in network order, interface and cookie in host
// order), which inet_diag_find_one_icsk matches exactly; the states are ignored by a lookup.
func appendLookup(b []byte, id *Socket, ext Ext) []byte {
	ne := binary.NativeEndian
	var p [sizeofReqV2]byte
	p[0] = id.Family
	p[1] = protoTCP
	p[2] = byte(ext)
	ne.PutUint32(p[4:], ^uint32(0))
	sid := p[8:]
	binary.BigEndian.PutUint16(sid[0:], id.Src.Port())
	binary.BigEndian.PutUint16(sid[2:], id.Dst.Port())
	putAddr(sid[4:20], id.Family, id.Src.Addr())
	putAddr(sid[20:36], id.Family, id.Dst.Addr())
	ne.PutUint32(sid[36:], id.IfIndex)
	ne.PutUint32(sid[40:], uint32(id.Cookie))
	ne.PutUint32(sid[44:], uint32(id.Cookie>>32))
	return append(b, p[:]...)
}

// putAddr writes an address as struct inet_diag_sockid holds it: 4 bytes for AF_INET, 16 for AF_INET6.
func putAddr(b []byte, family uint8, a netip.Addr) {
	if family == FamilyInet {
		v4 := a.Unmap().As4()
		copy(b, v4[:])
		return
	}
	v6 := a.As16()
	copy(b, v6[:])
}

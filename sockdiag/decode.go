package sockdiag

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Decoder walks the netlink messages of an inet_diag dump reply, one received datagram at a time, and
// decodes each socket in place into one reused Socket. The zero value accepts any sequence and port id.
type Decoder struct {
	Seq uint32 // when non-zero, every message must carry this sequence number
	PID uint32 // when non-zero, every message must carry this port id (or 0)

	// StopOnInterrupt makes Decode return, without decoding it, at the first message that carries
	// NLM_F_DUMP_INTR, so that a dump about to be retried hands no more sockets to the callback.
	StopOnInterrupt bool

	// Attempt is copied into Socket.Attempt.
	Attempt int

	sock    Socket
	scratch [sizeofTCPInfo]byte
}

// Result says what one call to Decoder.Decode found.
type Result struct {
	Sockets     int  // sockets handed to the callback
	Done        bool // NLMSG_DONE was seen: the dump is complete
	Interrupted bool // a message carried NLM_F_DUMP_INTR: the kernel's tables changed during the dump
}

// Decode decodes every message in b, one netlink datagram, calling fn for each socket. The *Socket is
// reused: it is valid only during fn. Decode stops at NLMSG_DONE, at a kernel error (NLMSG_ERROR or an
// error in NLMSG_DONE, wrapping syscall.Errno), at a malformed message (ErrTruncated), or when fn fails,
// returning fn's error unchanged.
func (d *Decoder) Decode(b []byte, fn func(*Socket) error) (Result, error) {
	var res Result
	ne := binary.NativeEndian
	for len(b) >= nlmsgHdrLen {
		length := int(ne.Uint32(b[0:4]))
		typ := ne.Uint16(b[4:6])
		flags := ne.Uint16(b[6:8])
		seq := ne.Uint32(b[8:12])
		pid := ne.Uint32(b[12:16])
		if length < nlmsgHdrLen || length > len(b) {
			return res, fmt.Errorf("netlink message of %d bytes with %d received: %w", length, len(b), ErrTruncated)
		}
		if (d.Seq != 0 && seq != d.Seq) || (d.PID != 0 && pid != 0 && pid != d.PID) {
			return res, fmt.Errorf("message seq %d pid %d, want seq %d pid %d: %w", seq, pid, d.Seq, d.PID, ErrMismatch)
		}
		payload := b[nlmsgHdrLen:length]
		// The last message of a datagram need not be padded to the 4-byte alignment.
		if next := align4(length); next < len(b) {
			b = b[next:]
		} else {
			b = nil
		}

		if flags&nlmFDumpIntr != 0 {
			res.Interrupted = true
			if d.StopOnInterrupt {
				return res, nil
			}
		}
		switch typ {
		case nlmsgDone:
			// netlink_dump_done puts the dump's error code (0 on success) in NLMSG_DONE.
			if len(payload) >= 4 {
				if code := int32(ne.Uint32(payload)); code != 0 {
					return res, kernelError("NLMSG_DONE", code)
				}
			}
			res.Done = true
			return res, nil
		case nlmsgError:
			// struct nlmsgerr: int error, then the offending request's header. 0 is an acknowledgement.
			if len(payload) < 4 {
				return res, fmt.Errorf("NLMSG_ERROR of %d bytes: %w", len(payload), ErrTruncated)
			}
			if code := int32(ne.Uint32(payload)); code != 0 {
				return res, kernelError("NLMSG_ERROR", code)
			}
		case nlmsgOverrun:
			return res, ErrOverrun
		case sockDiagByFamily, tcpDiagGetSock:
			if err := decodeSocket(payload, &d.sock, &d.scratch); err != nil {
				return res, err
			}
			d.sock.Attempt = d.Attempt
			res.Sockets++
			if err := fn(&d.sock); err != nil {
				return res, err
			}
		default:
			// NLMSG_NOOP and types this package does not know carry no socket.
		}
	}
	if len(b) != 0 {
		return res, fmt.Errorf("%d bytes after the last netlink message: %w", len(b), ErrTruncated)
	}
	return res, nil
}

func align4(n int) int { return (n + 3) &^ 3 }

// DecodeSocket decodes one SOCK_DIAG_BY_FAMILY reply payload (struct inet_diag_msg and its attributes,
// without the netlink header) into s, overwriting all of it.
func DecodeSocket(b []byte, s *Socket) error {
	var scratch [sizeofTCPInfo]byte
	return decodeSocket(b, s, &scratch)
}

func decodeSocket(b []byte, s *Socket, scratch *[sizeofTCPInfo]byte) error {
	if len(b) < sizeofDiagMsg {
		return fmt.Errorf("inet_diag_msg of %d bytes, want %d: %w", len(b), sizeofDiagMsg, ErrTruncated)
	}
	ne := binary.NativeEndian
	// struct inet_diag_msg: family, state, timer, retrans, then struct inet_diag_sockid at offset 4
	// (ports big-endian, addresses in network order, the rest host order), then expires at 52.
	fam := b[0]
	src := addr(fam, b[8:24])
	dst := addr(fam, b[24:40])
	*s = Socket{
		Family:  fam,
		State:   b[1],
		Timer:   b[2],
		Retrans: b[3],
		Src:     netip.AddrPortFrom(src, binary.BigEndian.Uint16(b[4:6])),
		Dst:     netip.AddrPortFrom(dst, binary.BigEndian.Uint16(b[6:8])),
		IfIndex: ne.Uint32(b[40:44]),
		Cookie:  uint64(ne.Uint32(b[44:48])) | uint64(ne.Uint32(b[48:52]))<<32,
		Expires: ne.Uint32(b[52:56]),
		RQueue:  ne.Uint32(b[56:60]),
		WQueue:  ne.Uint32(b[60:64]),
		UID:     ne.Uint32(b[64:68]),
		Inode:   ne.Uint32(b[68:72]),
	}

	attrs := b[sizeofDiagMsg:]
	for len(attrs) >= nlaHdrLen {
		alen := int(ne.Uint16(attrs[0:2]))
		atype := ne.Uint16(attrs[2:4]) & nlaTypeMask
		if alen < nlaHdrLen || alen > len(attrs) {
			return fmt.Errorf("attribute %d of %d bytes with %d left: %w", atype, alen, len(attrs), ErrTruncated)
		}
		v := attrs[nlaHdrLen:alen]
		if next := align4(alen); next < len(attrs) {
			attrs = attrs[next:]
		} else {
			attrs = nil
		}
		switch atype {
		case inetDiagMemInfo:
			var m [sizeofMemInfo]byte
			copy(m[:], v)
			s.MemInfo = MemInfo{
				RMem: ne.Uint32(m[0:]),
				WMem: ne.Uint32(m[4:]),
				FMem: ne.Uint32(m[8:]),
				TMem: ne.Uint32(m[12:]),
			}
			s.HasMemInfo = true
		case inetDiagInfo:
			decodeTCPInfo(&s.TCPInfo, v, scratch)
			s.TCPInfoLen = len(v)
		case inetDiagSKMemInfo:
			var m [4 * skMemInfoVars]byte
			copy(m[:], v)
			s.SKMemInfo = SKMemInfo{
				RmemAlloc:  ne.Uint32(m[4*skMemInfoRmemAlloc:]),
				Rcvbuf:     ne.Uint32(m[4*skMemInfoRcvbuf:]),
				WmemAlloc:  ne.Uint32(m[4*skMemInfoWmemAlloc:]),
				Sndbuf:     ne.Uint32(m[4*skMemInfoSndbuf:]),
				FwdAlloc:   ne.Uint32(m[4*skMemInfoFwdAlloc:]),
				WmemQueued: ne.Uint32(m[4*skMemInfoWmemQueued:]),
				Optmem:     ne.Uint32(m[4*skMemInfoOptmem:]),
				Backlog:    ne.Uint32(m[4*skMemInfoBacklog:]),
				Drops:      ne.Uint32(m[4*skMemInfoDrops:]),
			}
			s.HasSKMemInfo = true
			s.SKMemInfoLen = len(v)
		case inetDiagCgroupID:
			if len(v) >= 8 {
				s.CgroupID = ne.Uint64(v)
				s.HasCgroupID = true
			}
		}
	}
	// Fewer than nlaHdrLen bytes left over are padding or trailing bytes: ignored.
	return nil
}

// addr reads an address of inet_diag_sockid: IPv4 sits in the first 4 bytes of the 16.
func addr(family uint8, b []byte) netip.Addr {
	switch family {
	case FamilyInet:
		return netip.AddrFrom4([4]byte(b[:4]))
	case FamilyInet6:
		return netip.AddrFrom16([16]byte(b[:16]))
	default:
		return netip.Addr{}
	}
}

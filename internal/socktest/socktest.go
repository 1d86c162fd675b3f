// Package socktest builds synthetic sockdiag.Socket values for the tests of the socket aggregation and the
// collectors that use it.
package socktest

import (
	"net/netip"

	"github.com/sockbuf/sockbuf_exporter/sockdiag"
)

// Sock describes a synthetic socket; zero fields take harmless defaults.
type Sock struct {
	State         uint8 // StateEstablished when 0
	Local, Remote uint16
	RQ, WQ        uint32
	Rmem, Rcvbuf  uint32
	Drops         uint32
	Cookie        uint64
	Cgroup        uint64
	Inode         uint32
	NoMem         bool // a TIME_WAIT or SYN_RECV mini-socket
	RcvWnd        int  // tcpi_rcv_wnd + 1 when tcp_info is present; 0: no tcp_info
}

func (f Sock) Socket() *sockdiag.Socket {
	s := &sockdiag.Socket{
		Family: sockdiag.FamilyInet,
		State:  f.State,
		Src:    netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), f.Local),
		Dst:    netip.AddrPortFrom(netip.MustParseAddr("10.0.0.2"), f.Remote),
		RQueue: f.RQ, WQueue: f.WQ,
		Cookie: f.Cookie, Inode: f.Inode,
		CgroupID: f.Cgroup, HasCgroupID: f.Cgroup != 0,
	}
	if s.State == 0 {
		s.State = sockdiag.StateEstablished
	}
	if s.State == sockdiag.StateListen {
		s.Dst = netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
	}
	if f.RcvWnd > 0 {
		s.TCPInfoLen = sockdiag.TCPInfoLenRcvWnd
		s.TCPInfo.RcvWnd = uint32(f.RcvWnd - 1)
	}
	if !f.NoMem {
		s.HasSKMemInfo, s.SKMemInfoLen = true, 36
		s.SKMemInfo = sockdiag.SKMemInfo{RmemAlloc: f.Rmem, Rcvbuf: f.Rcvbuf, Drops: f.Drops}
		if s.SKMemInfo.Rcvbuf == 0 {
			s.SKMemInfo.Rcvbuf = 131072
		}
	}
	return s
}

func Listen(port uint16, length, limit uint32) Sock {
	return Sock{State: sockdiag.StateListen, Local: port, RQ: length, WQ: limit}
}

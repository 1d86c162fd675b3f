package sockdiag

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestRecordings decodes every reply recorded from the kernel and compares each socket with what ss
// printed for it at the same moment (see testdata/README.md).
func TestRecordings(t *testing.T) {
	files, err := filepath.Glob("testdata/*.ss")
	if err != nil || len(files) == 0 {
		t.Fatalf("no recordings in testdata/: %v", err)
	}
	for _, ssFile := range files {
		name := strings.TrimSuffix(filepath.Base(ssFile), ".ss")
		t.Run(name, func(t *testing.T) {
			reply := readFile(t, "testdata/"+name+".nlmsg")
			ssOut := readFile(t, ssFile)
			diff, err := diffRecording(reply, string(ssOut))
			if err != nil {
				t.Fatalf("decoding: %v", err)
			}
			if diff != "" {
				t.Errorf("decoded reply differs from ss (-ss +decoded):\n%s", diff)
			}
		})
	}
}

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRecordingsDetail checks, on the recorded replies, what ss does not print: families, message
// types, attribute presence and lengths as this kernel sends them.
func TestRecordingsDetail(t *testing.T) {
	for _, tc := range []struct {
		name                          string
		sockets, v4, v6               int
		tcpInfoLen, skmemLen          int
		meminfo, cgroup, timeWaitSeen bool
	}{
		{name: "unspec_all_ext", sockets: 24, v4: 12, v6: 12, tcpInfoLen: 280, skmemLen: 36, meminfo: true, cgroup: true, timeWaitSeen: true},
		{name: "inet6_skmem", sockets: 12, v6: 12, skmemLen: 36, cgroup: true},
		{name: "inet_default_info", sockets: 11, v4: 11, tcpInfoLen: 280, cgroup: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d Decoder
			var n, v4, v6 int
			var timeWait bool
			res, err := d.Decode(readFile(t, "testdata/"+tc.name+".nlmsg"), func(s *Socket) error {
				n++
				switch s.Family {
				case FamilyInet:
					v4++
				case FamilyInet6:
					v6++
				}
				if s.State == StateTimeWait || (s.State == StateFinWait2 && s.Inode == 0) {
					timeWait = timeWait || s.State == StateTimeWait
					return nil // mini-sockets carry no attributes
				}
				if s.TCPInfoLen != tc.tcpInfoLen || s.SKMemInfoLen != tc.skmemLen || s.HasMemInfo != tc.meminfo || s.HasCgroupID != tc.cgroup {
					t.Errorf("%v -> %v: tcp_info %d bytes, skmeminfo %d, meminfo %v, cgroup %v", s.Src, s.Dst,
						s.TCPInfoLen, s.SKMemInfoLen, s.HasMemInfo, s.HasCgroupID)
				}
				if s.TCPInfoLen > 0 && s.IsListen() && (s.TCPInfo.Unacked != s.AcceptQueue() || s.TCPInfo.Sacked != s.AcceptQueueLimit()) {
					// On a listener, tcp_get_info puts the accept queue in tcpi_unacked and its limit in tcpi_sacked.
					t.Errorf("%v: listener tcp_info unacked %d sacked %d, Recv-Q %d Send-Q %d", s.Src,
						s.TCPInfo.Unacked, s.TCPInfo.Sacked, s.RQueue, s.WQueue)
				}
				if s.TCPInfoLen > 0 && !s.IsListen() && (s.TCPInfo.State != s.State || s.TCPInfo.AdvMSS == 0 || s.TCPInfo.RcvSpace == 0 || !s.HasRcvWnd()) {
					t.Errorf("%v -> %v: implausible tcp_info %+v", s.Src, s.Dst, s.TCPInfo)
				}
				return nil
			})
			if err != nil || !res.Done || res.Interrupted {
				t.Fatalf("Decode: %+v, %v", res, err)
			}
			if n != tc.sockets || res.Sockets != n || v4 != tc.v4 || v6 != tc.v6 || timeWait != tc.timeWaitSeen {
				t.Errorf("%d sockets (%d v4, %d v6, TIME_WAIT %v), want %d (%d, %d, %v)", n, v4, v6, timeWait,
					tc.sockets, tc.v4, tc.v6, tc.timeWaitSeen)
			}
		})
	}
}

func TestRecordedErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		errno syscall.Errno
		is    error
	}{
		{"error_einval", syscall.EINVAL, nil},
		{"error_enoent", syscall.ENOENT, os.ErrNotExist},
	} {
		var d Decoder
		_, err := d.Decode(readFile(t, "testdata/"+tc.name+".nlmsg"), func(*Socket) error { return nil })
		var errno syscall.Errno
		if !errors.As(err, &errno) || errno != tc.errno || (tc.is != nil && !errors.Is(err, tc.is)) {
			t.Errorf("%s: error %v, want errno %v (and errors.Is %v)", tc.name, err, tc.errno, tc.is)
		}
	}
}

// Builders of hand-made replies, for what this kernel does not send.

func nlmsg(typ, flags uint16, seq, pid uint32, payload []byte) []byte {
	b := make([]byte, nlmsgHdrLen, nlmsgHdrLen+len(payload)+3)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(nlmsgHdrLen+len(payload)))
	ne.PutUint16(b[4:], typ)
	ne.PutUint16(b[6:], flags)
	ne.PutUint32(b[8:], seq)
	ne.PutUint32(b[12:], pid)
	b = append(b, payload...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func nlattr(typ uint16, v []byte) []byte {
	b := make([]byte, nlaHdrLen, nlaHdrLen+len(v)+3)
	binary.NativeEndian.PutUint16(b[0:], uint16(nlaHdrLen+len(v)))
	binary.NativeEndian.PutUint16(b[2:], typ)
	b = append(b, v...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func u32s(vs ...uint32) []byte {
	b := make([]byte, 4*len(vs))
	for i, v := range vs {
		binary.NativeEndian.PutUint32(b[4*i:], v)
	}
	return b
}

// diagMsg builds struct inet_diag_msg followed by attrs.
func diagMsg(state uint8, src, dst netip.AddrPort, rq, wq uint32, attrs ...[]byte) []byte {
	b := make([]byte, sizeofDiagMsg)
	b[0] = FamilyInet6
	if src.Addr().Is4() {
		b[0] = FamilyInet
	}
	b[1] = state
	binary.BigEndian.PutUint16(b[4:], src.Port())
	binary.BigEndian.PutUint16(b[6:], dst.Port())
	s, d := src.Addr().AsSlice(), dst.Addr().AsSlice()
	copy(b[8:24], s)
	copy(b[24:40], d)
	ne := binary.NativeEndian
	ne.PutUint32(b[44:], 0x11223344) // cookie low
	ne.PutUint32(b[48:], 0x55667788) // cookie high
	ne.PutUint32(b[56:], rq)
	ne.PutUint32(b[60:], wq)
	ne.PutUint32(b[64:], 1000)
	ne.PutUint32(b[68:], 4242)
	for _, a := range attrs {
		b = append(b, a...)
	}
	return b
}

// tcpInfo builds a struct tcp_info of n bytes with recognizable values in the fields the exporter uses.
func tcpInfo(n int) []byte {
	b := make([]byte, max(n, 300))
	b[0] = StateEstablished
	b[6] = 7<<4 | 9 // rcv_wscale 7, snd_wscale 9
	put := func(off int, v uint32) { binary.NativeEndian.PutUint32(b[off:], v) }
	put(20, 536)                                    // rcv_mss
	put(64, 64000)                                  // rcv_ssthresh
	put(68, 35)                                     // rtt
	put(84, 65483)                                  // advmss
	put(92, 120)                                    // rcv_rtt
	put(96, 65495)                                  // rcv_space
	binary.NativeEndian.PutUint64(b[128:], 1<<33+5) // bytes_received
	put(140, 77)                                    // segs_in
	put(232, 65536)                                 // rcv_wnd
	put(244, 9)                                     // total_rto_time
	put(252, 0xdead)                                // past what the decoder knows
	return b[:n]
}

var (
	src4 = netip.MustParseAddrPort("10.1.2.3:443")
	dst4 = netip.MustParseAddrPort("192.0.2.9:50000")
	src6 = netip.MustParseAddrPort("[2001:db8::1]:8080")
	dst6 = netip.MustParseAddrPort("[2001:db8::2]:65535")
)

func TestDecodeSocket(t *testing.T) {
	full := TCPInfo{State: StateEstablished, SndWscale: 9, RcvWscale: 7, RcvMSS: 536, RcvSsthresh: 64000, RTT: 35,
		AdvMSS: 65483, RcvRTT: 120, RcvSpace: 65495, BytesReceived: 1<<33 + 5, SegsIn: 77, RcvWnd: 65536, TotalRTOTime: 9}
	base := Socket{Family: FamilyInet, State: StateEstablished, Src: src4, Dst: dst4, RQueue: 10, WQueue: 20, UID: 1000,
		Inode: 4242, Cookie: 0x5566778811223344}
	with := func(f func(*Socket)) Socket {
		s := base
		f(&s)
		return s
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want Socket
	}{
		{"no attributes", diagMsg(StateEstablished, src4, dst4, 10, 20), base},
		{"ipv6", diagMsg(StateListen, src6, dst6, 3, 128), Socket{Family: FamilyInet6, State: StateListen, Src: src6,
			Dst: dst6, RQueue: 3, WQueue: 128, UID: 1000, Inode: 4242, Cookie: 0x5566778811223344}},
		{"tcp_info of today's kernel with bytes this decoder does not know",
			diagMsg(StateEstablished, src4, dst4, 10, 20, nlattr(inetDiagInfo, tcpInfo(300))),
			with(func(s *Socket) { s.TCPInfo, s.TCPInfoLen = full, 300 })},
		{"tcp_info of 6.7 (248 bytes)",
			diagMsg(StateEstablished, src4, dst4, 10, 20, nlattr(inetDiagInfo, tcpInfo(248))),
			with(func(s *Socket) { s.TCPInfo, s.TCPInfoLen = full, 248 })},
		{"tcp_info of 5.4 (232 bytes, no rcv_wnd)",
			diagMsg(StateEstablished, src4, dst4, 10, 20, nlattr(inetDiagInfo, tcpInfo(232))),
			with(func(s *Socket) {
				s.TCPInfo, s.TCPInfoLen = full, 232
				s.TCPInfo.RcvWnd, s.TCPInfo.TotalRTOTime = 0, 0
			})},
		{"tcp_info of 2.6 (104 bytes)",
			diagMsg(StateEstablished, src4, dst4, 10, 20, nlattr(inetDiagInfo, tcpInfo(104))),
			with(func(s *Socket) {
				s.TCPInfo, s.TCPInfoLen = full, 104
				s.TCPInfo.BytesReceived, s.TCPInfo.SegsIn, s.TCPInfo.RcvWnd, s.TCPInfo.TotalRTOTime = 0, 0, 0, 0
			})},
		{"tcp_info cut mid-field (7 bytes)",
			diagMsg(StateEstablished, src4, dst4, 10, 20, nlattr(inetDiagInfo, tcpInfo(7))),
			with(func(s *Socket) {
				s.TCPInfo = TCPInfo{State: StateEstablished, SndWscale: 9, RcvWscale: 7}
				s.TCPInfoLen = 7
			})},
		{"skmeminfo of today's kernel",
			diagMsg(StateEstablished, src4, dst4, 10, 20, nlattr(inetDiagSKMemInfo, u32s(1, 2, 3, 4, 5, 6, 7, 8, 9))),
			with(func(s *Socket) {
				s.SKMemInfo = SKMemInfo{1, 2, 3, 4, 5, 6, 7, 8, 9}
				s.HasSKMemInfo, s.SKMemInfoLen = true, 36
			})},
		{"skmeminfo without drops (older kernel)",
			diagMsg(StateEstablished, src4, dst4, 10, 20, nlattr(inetDiagSKMemInfo, u32s(1, 2, 3, 4, 5, 6, 7, 8))),
			with(func(s *Socket) {
				s.SKMemInfo = SKMemInfo{1, 2, 3, 4, 5, 6, 7, 8, 0}
				s.HasSKMemInfo, s.SKMemInfoLen = true, 32
			})},
		{"skmeminfo with a field from the future",
			diagMsg(StateEstablished, src4, dst4, 10, 20, nlattr(inetDiagSKMemInfo, u32s(1, 2, 3, 4, 5, 6, 7, 8, 9, 10))),
			with(func(s *Socket) {
				s.SKMemInfo = SKMemInfo{1, 2, 3, 4, 5, 6, 7, 8, 9}
				s.HasSKMemInfo, s.SKMemInfoLen = true, 40
			})},
		{"meminfo, cgroup id, unknown and nested-flagged attributes, trailing bytes",
			append(diagMsg(StateEstablished, src4, dst4, 10, 20,
				nlattr(inetDiagMemInfo, u32s(11, 12, 13, 14)),
				nlattr(99, []byte("future")),
				nlattr(inetDiagCgroupID|0x8000, u32s(0x9abc, 1)),
				nlattr(inetDiagCgroupID, []byte{1, 2, 3})), // too short for a u64: ignored
				0, 0, 0),
			with(func(s *Socket) {
				s.MemInfo, s.HasMemInfo = MemInfo{11, 12, 13, 14}, true
				s.CgroupID, s.HasCgroupID = 1<<32|0x9abc, true
			})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got Socket
			got.Attempt = 5 // DecodeSocket must overwrite everything
			if err := DecodeSocket(tc.in, &got); err != nil {
				t.Fatalf("DecodeSocket: %v", err)
			}
			if tc.want.TCPInfoLen == 0 {
				tc.want.TCPInfo = TCPInfo{}
			}
			if diff := cmp.Diff(tc.want, got, cmpAddr); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	sock := diagMsg(StateEstablished, src4, dst4, 0, 0, nlattr(inetDiagSKMemInfo, u32s(1, 2, 3)))
	good := nlmsg(sockDiagByFamily, nlmFMulti, 1, 7, sock)
	done := nlmsg(nlmsgDone, nlmFMulti, 1, 7, u32s(0))
	badAttr := append([]byte(nil), sock...)
	binary.NativeEndian.PutUint16(badAttr[sizeofDiagMsg:], 200) // attribute longer than what follows
	for _, tc := range []struct {
		name    string
		in      []byte
		sockets int
		done    bool
		is      []error
	}{
		{name: "complete", in: cat(good, good, done), sockets: 2, done: true},
		{name: "no done yet", in: cat(good, good), sockets: 2},
		{name: "last message not padded", in: nlmsg(sockDiagByFamily, nlmFMulti, 1, 7, sock)[:nlmsgHdrLen+len(sock)], sockets: 1},
		{name: "noop and unknown types are skipped", in: cat(nlmsg(nlmsgNoop, 0, 1, 7, nil), nlmsg(0x77, 0, 1, 7, []byte{1}), good, done), sockets: 1, done: true},
		{name: "pid 0 from the kernel", in: nlmsg(sockDiagByFamily, nlmFMulti, 1, 0, sock), sockets: 1},
		{name: "message cut short", in: good[:len(good)-10], is: []error{ErrTruncated}},
		{name: "length below header", in: cat(good, u32s(8, 3, 1, 7)), sockets: 1, is: []error{ErrTruncated}},
		{name: "bytes after the last message", in: cat(good, []byte{1, 2, 3, 4}), sockets: 1, is: []error{ErrTruncated}},
		{name: "inet_diag_msg too short", in: nlmsg(sockDiagByFamily, nlmFMulti, 1, 7, sock[:40]), is: []error{ErrTruncated}},
		{name: "attribute past the end", in: nlmsg(sockDiagByFamily, nlmFMulti, 1, 7, badAttr), is: []error{ErrTruncated}},
		{name: "wrong sequence", in: nlmsg(sockDiagByFamily, nlmFMulti, 2, 7, sock), is: []error{ErrMismatch}},
		{name: "wrong port id", in: nlmsg(sockDiagByFamily, nlmFMulti, 1, 8, sock), is: []error{ErrMismatch}},
		{name: "EPERM", in: nlmsg(nlmsgError, 0, 1, 7, negErrno(syscall.EPERM)), is: []error{os.ErrPermission, syscall.EPERM}},
		{name: "ENOENT", in: nlmsg(nlmsgError, 0, 1, 7, negErrno(syscall.ENOENT)), is: []error{os.ErrNotExist}},
		{name: "short NLMSG_ERROR", in: nlmsg(nlmsgError, 0, 1, 7, []byte{1}), is: []error{ErrTruncated}},
		{name: "ack is not an error", in: cat(nlmsg(nlmsgError, 0, 1, 7, u32s(0)), done), done: true},
		{name: "error in NLMSG_DONE", in: cat(good, nlmsg(nlmsgDone, nlmFMulti, 1, 7, negErrno(syscall.ENOBUFS))), sockets: 1, is: []error{syscall.ENOBUFS}},
		{name: "overrun", in: nlmsg(nlmsgOverrun, 0, 1, 7, nil), is: []error{ErrOverrun}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Decoder{Seq: 1, PID: 7}
			res, err := d.Decode(tc.in, func(*Socket) error { return nil })
			if res.Sockets != tc.sockets || res.Done != tc.done {
				t.Errorf("result %+v, want %d sockets, done %v", res, tc.sockets, tc.done)
			}
			if tc.is == nil && err != nil {
				t.Errorf("error %v", err)
			}
			for _, want := range tc.is {
				if !errors.Is(err, want) {
					t.Errorf("error %v, want errors.Is %v", err, want)
				}
			}
		})
	}
}

func TestDecodeInterrupted(t *testing.T) {
	sock := diagMsg(StateEstablished, src4, dst4, 0, 0)
	in := cat(nlmsg(sockDiagByFamily, nlmFMulti, 1, 7, sock), nlmsg(sockDiagByFamily, nlmFMulti|nlmFDumpIntr, 1, 7, sock),
		nlmsg(sockDiagByFamily, nlmFMulti, 1, 7, sock), nlmsg(nlmsgDone, nlmFMulti|nlmFDumpIntr, 1, 7, u32s(0)))
	for _, stop := range []bool{false, true} {
		d := Decoder{StopOnInterrupt: stop, Attempt: 2}
		var attempts []int
		res, err := d.Decode(in, func(s *Socket) error { attempts = append(attempts, s.Attempt); return nil })
		want := Result{Sockets: 3, Done: true, Interrupted: true}
		if stop {
			want = Result{Sockets: 1, Interrupted: true}
		}
		if err != nil || res != want || len(attempts) != want.Sockets || attempts[0] != 2 {
			t.Errorf("StopOnInterrupt %v: %+v, %v, attempts %v; want %+v", stop, res, err, attempts, want)
		}
	}
}

func TestDecodeCallbackError(t *testing.T) {
	sock := nlmsg(sockDiagByFamily, nlmFMulti, 1, 7, diagMsg(StateEstablished, src4, dst4, 0, 0))
	stop := errors.New("stop")
	var d Decoder
	n := 0
	res, err := d.Decode(cat(sock, sock, sock), func(*Socket) error {
		n++
		if n == 2 {
			return stop
		}
		return nil
	})
	if err != stop || n != 2 || res.Sockets != 2 {
		t.Errorf("got %v after %d callbacks (%+v), want the callback's error after 2", err, n, res)
	}
}

func TestRequestPayload(t *testing.T) {
	for _, tc := range []struct {
		req  Request
		typ  uint16
		want []byte
	}{
		{Request{Family: FamilyInet6, Extensions: ExtSKMemInfo | ExtInfo}, sockDiagByFamily,
			cat([]byte{10, 6, 0x42, 0, 0xb6, 0x0f, 0, 0}, make([]byte, 48))},
		{Request{Family: FamilyInet, States: 1 << StateListen, Extensions: ExtMemInfo}, sockDiagByFamily,
			cat([]byte{2, 6, 0x01, 0, 0x00, 0x04, 0, 0}, make([]byte, 48))},
		{Request{Family: FamilyUnspec, Extensions: ExtSKMemInfo | ExtInfo}, tcpDiagGetSock,
			cat([]byte{0, 0, 0, 0x42}, make([]byte, 48), []byte{0xb6, 0x0f, 0, 0, 0, 0, 0, 0})},
	} {
		typ, got := tc.req.AppendPayload(nil)
		if typ != tc.typ || !cmp.Equal(got, tc.want) {
			t.Errorf("%+v: type %d, payload\n% x\nwant type %d\n% x", tc.req, typ, got, tc.typ, tc.want)
		}
		msg := tc.req.AppendMessage([]byte{0xff}, 3, 4)
		wantMsg := cat([]byte{0xff}, nlmsg(tc.typ, RequestFlags, 3, 4, tc.want))
		if !cmp.Equal(msg, wantMsg) {
			t.Errorf("%+v: message\n% x\nwant\n% x", tc.req, msg, wantMsg)
		}
	}
}

func TestSocketAccessors(t *testing.T) {
	l := Socket{State: StateListen, RQueue: 3, WQueue: 128}
	e := Socket{State: StateEstablished, RQueue: 1000, WQueue: 20, SKMemInfoLen: 32}
	if !l.IsListen() || l.AcceptQueue() != 3 || l.AcceptQueueLimit() != 128 || l.RecvQueue() != 0 || l.SendQueue() != 0 {
		t.Errorf("listener accessors wrong: %+v", l)
	}
	if e.IsListen() || e.AcceptQueue() != 0 || e.AcceptQueueLimit() != 0 || e.RecvQueue() != 1000 || e.SendQueue() != 20 {
		t.Errorf("established accessors wrong: %+v", e)
	}
	if e.SKMemInfoHasDrops() || e.HasRcvWnd() || StateName(StateCloseWait) != "CLOSE-WAIT" || StateName(99) != "UNKNOWN" {
		t.Error("presence helpers or state names wrong")
	}
}

// TestDecodeAllocs shows that decoding a recorded dump allocates nothing.
func TestDecodeAllocs(t *testing.T) {
	reply := readFile(t, "testdata/unspec_all_ext.nlmsg")
	var d Decoder
	var sum uint64
	fn := func(s *Socket) error { sum += uint64(s.SKMemInfo.Rcvbuf); return nil }
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := d.Decode(reply, fn); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Decode allocates %v times per dump, want 0", allocs)
	}
}

// negErrno is how the kernel puts an errno in NLMSG_ERROR and NLMSG_DONE.
func negErrno(e syscall.Errno) []byte {
	n := -int32(e)
	return u32s(uint32(n))
}

func cat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

// TestAppendLookup checks the lookup request's struct inet_diag_req_v2 byte by byte: ports big-endian,
// addresses in network order (4 bytes for AF_INET, 16 for AF_INET6), interface and cookie in host order.
func TestAppendLookup(t *testing.T) {
	ne := binary.NativeEndian
	for _, id := range []Socket{
		{Family: FamilyInet, Src: netip.MustParseAddrPort("10.1.2.3:8080"), Dst: netip.MustParseAddrPort("10.4.5.6:40000"),
			IfIndex: 7, Cookie: 0x1122334455667788},
		{Family: FamilyInet6, Src: netip.MustParseAddrPort("[2001:db8::1]:443"), Dst: netip.MustParseAddrPort("[::ffff:10.0.0.1]:5555"),
			Cookie: 42},
	} {
		b := appendLookup(nil, &id, ExtInfo)
		if len(b) != sizeofReqV2 {
			t.Fatalf("%d bytes, want %d", len(b), sizeofReqV2)
		}
		if b[0] != id.Family || b[1] != protoTCP || Ext(b[2]) != ExtInfo {
			t.Errorf("family/protocol/ext = %d/%d/%d", b[0], b[1], b[2])
		}
		sid := b[8:]
		if got := binary.BigEndian.Uint16(sid[0:]); got != id.Src.Port() {
			t.Errorf("sport %d, want %d", got, id.Src.Port())
		}
		if got := binary.BigEndian.Uint16(sid[2:]); got != id.Dst.Port() {
			t.Errorf("dport %d, want %d", got, id.Dst.Port())
		}
		if got := addr(id.Family, sid[4:20]); got != id.Src.Addr() {
			t.Errorf("src %v, want %v", got, id.Src.Addr())
		}
		if got := addr(id.Family, sid[20:36]); got != id.Dst.Addr() {
			t.Errorf("dst %v, want %v", got, id.Dst.Addr())
		}
		if got := ne.Uint32(sid[36:]); got != id.IfIndex {
			t.Errorf("if %d, want %d", got, id.IfIndex)
		}
		if got := uint64(ne.Uint32(sid[40:])) | uint64(ne.Uint32(sid[44:]))<<32; got != id.Cookie {
			t.Errorf("cookie %x, want %x", got, id.Cookie)
		}
	}
}

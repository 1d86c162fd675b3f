package sockdiag

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
)

// scriptTransport is the Client's transport over nltest: requests go through netlink.Conn.Send to an
// nltest.Func (so nltest.CheckRequest sees exactly what the Client sends), and the Func's reply messages
// come back through Recv, perDatagram of them per read, as the kernel packs a dump.
type scriptTransport struct {
	conn        *netlink.Conn
	perDatagram int
	mangle      func(datagrams [][]byte) [][]byte // to truncate or corrupt what the kernel would send
	sendErr     error
	datagrams   [][]byte
	closed      bool

	// hang makes Recv block, as a kernel that never finishes the dump does, until the deadline passes.
	hang     bool
	mu       sync.Mutex // SetDeadline comes from another goroutine when a context ends
	deadline time.Time
	wake     chan struct{} // signalled by SetDeadline
}

func newScript(fn nltest.Func, perDatagram int, mangle func([][]byte) [][]byte) *scriptTransport {
	s := &scriptTransport{perDatagram: perDatagram, mangle: mangle, wake: make(chan struct{}, 1)}
	s.conn = nltest.Dial(func(req []netlink.Message) ([]netlink.Message, error) {
		msgs, err := fn(req)
		if err != nil {
			s.sendErr = err
			return nil, nil
		}
		var d [][]byte
		for i := 0; i < len(msgs); i += s.perDatagram {
			var b []byte
			for _, m := range msgs[i:min(i+s.perDatagram, len(msgs))] {
				b = append(b, nlmsg(uint16(m.Header.Type), uint16(m.Header.Flags), m.Header.Sequence, m.Header.PID, m.Data)...)
			}
			d = append(d, b)
		}
		if s.mangle != nil {
			d = s.mangle(d)
		}
		s.datagrams = append(s.datagrams, d...)
		return nil, nil
	})
	return s
}

func (s *scriptTransport) Send(m netlink.Message) (netlink.Message, error) {
	s.sendErr = nil
	sent, err := s.conn.Send(m)
	if err == nil {
		err = s.sendErr
	}
	return sent, err
}

// Recv returns io.EOF when the script has nothing more: on a real socket that would block until the
// deadline, which the Client must not wait for.
func (s *scriptTransport) Recv(b []byte) (int, error) {
	if len(s.datagrams) == 0 && s.hang {
		return 0, s.waitDeadline()
	}
	if len(s.datagrams) == 0 {
		return 0, io.EOF
	}
	d := s.datagrams[0]
	s.datagrams = s.datagrams[1:]
	return copy(b, d), nil
}

// waitDeadline blocks until the deadline passes, as a read of a real socket does, bounded to 10 s.
func (s *scriptTransport) waitDeadline() error {
	limit := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		d := s.deadline
		s.mu.Unlock()
		wait := time.Hour
		if !d.IsZero() {
			if wait = time.Until(d); wait <= 0 {
				return os.ErrDeadlineExceeded
			}
		}
		select {
		case <-s.wake:
		case <-time.After(wait):
		case <-limit:
			return errors.New("script transport: no deadline ended the blocked read within 10s")
		}
	}
}

func (s *scriptTransport) SetDeadline(d time.Time) error {
	s.mu.Lock()
	s.deadline = d
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}
func (s *scriptTransport) Close() error { s.closed = true; return s.conn.Close() }

// scriptClient returns a Client whose every (re)dial scripts fn; dials counts the transports opened.
func scriptClient(t *testing.T, fn nltest.Func, perDatagram int, mangle func([][]byte) [][]byte) (*Client, *int) {
	t.Helper()
	dials := new(int)
	c, err := newClient(nil, func() (transport, error) {
		*dials++
		return newScript(fn, perDatagram, mangle), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, dials
}

// reply answers a dump request with one message per socket and NLMSG_DONE, echoing the request's
// sequence number and port id as the kernel does.
func reply(req netlink.Message, flags netlink.HeaderFlags, socks ...[]byte) []netlink.Message {
	var msgs []netlink.Message
	for _, s := range socks {
		msgs = append(msgs, netlink.Message{
			Header: netlink.Header{Type: req.Header.Type, Flags: netlink.Multi | flags, Sequence: req.Header.Sequence, PID: req.Header.PID},
			Data:   s,
		})
	}
	return append(msgs, netlink.Message{
		Header: netlink.Header{Type: netlink.Done, Flags: netlink.Multi | flags, Sequence: req.Header.Sequence, PID: req.Header.PID},
		Data:   u32s(0),
	})
}

var (
	sockA = diagMsg(StateEstablished, src4, dst4, 1, 2, nlattr(inetDiagSKMemInfo, u32s(1, 2, 3, 4, 5, 6, 7, 8, 9)))
	sockB = diagMsg(StateListen, src6, dst6, 3, 128, nlattr(inetDiagInfo, tcpInfo(280)))
)

type seen struct {
	Src     string
	RQueue  uint32
	Attempt int
}

func collect(into *[]seen) func(*Socket) error {
	return func(s *Socket) error {
		*into = append(*into, seen{s.Src.Addr().String(), s.RQueue, s.Attempt})
		return nil
	}
}

// TestNLRequest checks the exact bytes of both request shapes against what the kernel expects.
func TestNLRequest(t *testing.T) {
	for _, tc := range []struct {
		req  Request
		typ  netlink.HeaderType
		data []byte
	}{
		// struct inet_diag_req_v2: AF_INET6, IPPROTO_TCP, ext INFO|SKMEMINFO, pad, states, zero sockid.
		{Request{Family: FamilyInet6, Extensions: ExtInfo | ExtSKMemInfo}, sockDiagByFamily,
			cat([]byte{10, 6, 0x42, 0, 0xb6, 0x0f, 0, 0}, make([]byte, 48))},
		// struct inet_diag_req: AF_UNSPEC, src_len, dst_len, ext, zero sockid, states, dbs.
		{Request{Family: FamilyUnspec, States: 1<<StateEstablished | 1<<StateListen, Extensions: ExtSKMemInfo}, tcpDiagGetSock,
			cat([]byte{0, 0, 0, 0x40}, make([]byte, 48), []byte{0x02, 0x04, 0, 0, 0, 0, 0, 0})},
	} {
		var gotData []byte
		fn := nltest.CheckRequest([]netlink.HeaderType{tc.typ}, []netlink.HeaderFlags{netlink.Request | netlink.Dump},
			func(req []netlink.Message) ([]netlink.Message, error) {
				gotData = req[0].Data
				return reply(req[0], 0), nil
			})
		c, _ := scriptClient(t, fn, 1, nil)
		if _, err := c.Dump(tc.req, func(*Socket) error { return nil }); err != nil {
			t.Fatalf("%+v: Dump: %v", tc.req, err)
		}
		if !cmp.Equal(gotData, tc.data) {
			t.Errorf("%+v: request payload\n% x\nwant\n% x", tc.req, gotData, tc.data)
		}
	}
}

func TestNLMultipart(t *testing.T) {
	for _, per := range []int{1, 2, 100} {
		fn := func(req []netlink.Message) ([]netlink.Message, error) {
			return reply(req[0], 0, sockA, sockB, sockA, sockB, sockA), nil
		}
		c, _ := scriptClient(t, fn, per, nil)
		var got []seen
		st, err := c.Dump(Request{Family: FamilyInet}, collect(&got))
		if err != nil {
			t.Fatalf("%d per datagram: %v", per, err)
		}
		want := []seen{{"10.1.2.3", 1, 0}, {"2001:db8::1", 3, 0}, {"10.1.2.3", 1, 0}, {"2001:db8::1", 3, 0}, {"10.1.2.3", 1, 0}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%d per datagram (-want +got):\n%s", per, diff)
		}
		wantBytes := 3*(nlmsgHdrLen+len(sockA)) + 2*(nlmsgHdrLen+len(sockB)) + nlmsgHdrLen + 4
		if st != (DumpStats{Sockets: 5, Bytes: wantBytes}) {
			t.Errorf("%d per datagram: stats %+v, want 5 sockets, %d bytes", per, st, wantBytes)
		}
		// A second dump on the same socket works: the first one was read to its end.
		if _, err := c.Dump(Request{Family: FamilyInet}, func(*Socket) error { return nil }); err != nil {
			t.Errorf("second dump: %v", err)
		}
	}
}

func TestNLError(t *testing.T) {
	for _, tc := range []struct {
		errno syscall.Errno
		is    error
	}{
		{syscall.EPERM, os.ErrPermission},
		{syscall.EACCES, os.ErrPermission},
		{syscall.ENOENT, os.ErrNotExist},
		{syscall.EBUSY, syscall.EBUSY},
	} {
		fn := func(req []netlink.Message) ([]netlink.Message, error) { return nltest.Error(int(tc.errno), req) }
		c, _ := scriptClient(t, fn, 1, nil)
		_, err := c.Dump(Request{Family: FamilyInet6}, func(*Socket) error { return nil })
		var errno syscall.Errno
		if !errors.Is(err, tc.is) || !errors.As(err, &errno) || errno != tc.errno {
			t.Errorf("%v: got %v, want errors.Is %v and errno %v", tc.errno, err, tc.is, tc.errno)
		}
	}
}

// TestNLDumpInterrupted: the kernel marks a dump inconsistent; Dump starts over until it is clean, or
// delivers the last attempt and reports it.
func TestNLDumpInterrupted(t *testing.T) {
	for _, tc := range []struct {
		name        string
		interrupted int // attempts the kernel marks
		want        DumpStats
		wantSeen    []seen
	}{
		{"clean after two", 2, DumpStats{Sockets: 2, Retries: 2},
			[]seen{{"10.1.2.3", 1, 0}, {"10.1.2.3", 1, 1}, {"10.1.2.3", 1, 2}, {"2001:db8::1", 3, 2}}},
		{"always", 100, DumpStats{Sockets: 2, Retries: 3, Inconsistent: true},
			[]seen{{"10.1.2.3", 1, 0}, {"10.1.2.3", 1, 1}, {"10.1.2.3", 1, 2}, {"10.1.2.3", 1, 3}, {"2001:db8::1", 3, 3}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			fn := func(req []netlink.Message) ([]netlink.Message, error) {
				calls++
				msgs := reply(req[0], 0, sockA, sockB)
				if calls <= tc.interrupted {
					// As nl_dump_check_consistent does: the flag appears from the second message on.
					msgs[1].Header.Flags |= netlink.DumpInterrupted
					msgs[2].Header.Flags |= netlink.DumpInterrupted
				}
				return msgs, nil
			}
			c, dials := scriptClient(t, fn, 1, nil)
			var got []seen
			st, err := c.Dump(Request{Family: FamilyInet}, collect(&got))
			if err != nil {
				t.Fatalf("Dump: %v", err)
			}
			if st.Bytes == 0 {
				t.Error("no bytes counted")
			}
			st.Bytes = 0
			if st != tc.want {
				t.Errorf("stats %+v, want %+v", st, tc.want)
			}
			if diff := cmp.Diff(tc.wantSeen, got); diff != "" {
				t.Errorf("sockets (-want +got):\n%s", diff)
			}
			// Each abandoned attempt left a dump half read: the socket is replaced, not reused.
			if *dials != 1+tc.want.Retries {
				t.Errorf("%d sockets opened, want %d", *dials, 1+tc.want.Retries)
			}
		})
	}
}

func TestNLTruncated(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mangle func([][]byte) [][]byte
	}{
		{"datagram cut inside a message", func(d [][]byte) [][]byte {
			d[0] = d[0][:len(d[0])-7]
			return d
		}},
		{"datagram cut inside a header", func(d [][]byte) [][]byte {
			d[1] = append(d[1], 1, 2, 3, 4, 5, 6)
			return d
		}},
		{"datagram larger than the buffer", func(d [][]byte) [][]byte {
			d[0] = make([]byte, MinBufferSize+1)
			return d
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fn := func(req []netlink.Message) ([]netlink.Message, error) { return reply(req[0], 0, sockA, sockB), nil }
			c, dials := scriptClient(t, fn, 1, tc.mangle)
			_, err := c.Dump(Request{Family: FamilyInet}, func(*Socket) error { return nil })
			if !errors.Is(err, ErrTruncated) {
				t.Fatalf("got %v, want ErrTruncated", err)
			}
			if _, err := c.Dump(Request{Family: FamilyInet}, func(*Socket) error { return nil }); !errors.Is(err, ErrTruncated) || *dials != 2 {
				t.Errorf("after an aborted dump: %v with %d sockets opened, want a fresh socket", err, *dials)
			}
		})
	}
}

// TestNLNoDone: the reply stops before NLMSG_DONE. Dump must return, not wait forever.
func TestNLNoDone(t *testing.T) {
	fn := func(req []netlink.Message) ([]netlink.Message, error) {
		msgs := reply(req[0], 0, sockA, sockB)
		return msgs[:len(msgs)-1], nil
	}
	c, _ := scriptClient(t, fn, 1, nil)
	var got []seen
	done := make(chan error, 1)
	go func() {
		_, err := c.Dump(Request{Family: FamilyInet}, collect(&got))
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrNoDone) || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("got %v, want ErrNoDone", err)
		}
		if len(got) != 2 {
			t.Errorf("%d sockets delivered before the end, want 2", len(got))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Dump hangs on a reply without NLMSG_DONE")
	}
}

func TestNLMismatchedSequence(t *testing.T) {
	fn := func(req []netlink.Message) ([]netlink.Message, error) {
		msgs := reply(req[0], 0, sockA)
		msgs[0].Header.Sequence++
		return msgs, nil
	}
	c, _ := scriptClient(t, fn, 1, nil)
	if _, err := c.Dump(Request{Family: FamilyInet}, func(*Socket) error { return nil }); !errors.Is(err, ErrMismatch) {
		t.Errorf("got %v, want ErrMismatch", err)
	}
}

// TestNLUnspecFallback: a kernel without TCPDIAG_GETSOCK answers it with an error; the Client then dumps
// the two families one after the other, and remembers.
func TestNLUnspecFallback(t *testing.T) {
	var types []netlink.HeaderType
	var families []byte
	fn := func(req []netlink.Message) ([]netlink.Message, error) {
		types = append(types, req[0].Header.Type)
		if req[0].Header.Type == tcpDiagGetSock {
			return nltest.Error(int(syscall.EINVAL), req)
		}
		families = append(families, req[0].Data[0])
		if req[0].Data[0] == FamilyInet {
			return reply(req[0], 0, sockA), nil
		}
		return reply(req[0], 0, sockB), nil
	}
	c, _ := scriptClient(t, fn, 1, nil)
	for range 2 {
		var got []seen
		st, err := c.Dump(Request{Family: FamilyUnspec}, collect(&got))
		if err != nil || st.Sockets != 2 || len(got) != 2 {
			t.Fatalf("Dump: %+v, %v, %v", st, err, got)
		}
	}
	wantTypes := []netlink.HeaderType{tcpDiagGetSock, sockDiagByFamily, sockDiagByFamily, sockDiagByFamily, sockDiagByFamily}
	if diff := cmp.Diff(wantTypes, types); diff != "" {
		t.Errorf("request types (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]byte{2, 10, 2, 10}, families); diff != "" {
		t.Errorf("families (-want +got):\n%s", diff)
	}
}

// TestNLUnspecOtherError: an error that does not mean "unknown request" is returned, not papered over.
func TestNLUnspecOtherError(t *testing.T) {
	fn := func(req []netlink.Message) ([]netlink.Message, error) { return nltest.Error(int(syscall.EPERM), req) }
	c, _ := scriptClient(t, fn, 1, nil)
	if _, err := c.Dump(Request{Family: FamilyUnspec}, func(*Socket) error { return nil }); !errors.Is(err, os.ErrPermission) {
		t.Errorf("got %v, want os.ErrPermission", err)
	}
}

func TestNLCallbackError(t *testing.T) {
	fn := func(req []netlink.Message) ([]netlink.Message, error) { return reply(req[0], 0, sockA, sockB), nil }
	c, dials := scriptClient(t, fn, 1, nil)
	stop := errors.New("stop")
	_, err := c.Dump(Request{Family: FamilyInet}, func(*Socket) error { return stop })
	if !errors.Is(err, stop) {
		t.Fatalf("got %v, want the callback's error", err)
	}
	st, err := c.Dump(Request{Family: FamilyInet}, func(*Socket) error { return nil })
	if err != nil || st.Sockets != 2 || *dials != 2 {
		t.Errorf("dump after a callback error: %+v, %v, %d sockets opened", st, err, *dials)
	}
}

func TestNLSendError(t *testing.T) {
	fn := func(req []netlink.Message) ([]netlink.Message, error) { return nil, syscall.ENOBUFS }
	c, _ := scriptClient(t, fn, 1, nil)
	if _, err := c.Dump(Request{Family: FamilyInet}, func(*Socket) error { return nil }); !errors.Is(err, syscall.ENOBUFS) {
		t.Errorf("got %v, want ENOBUFS", err)
	}
}

// hangingClient returns a Client whose dumps send a reply that never ends: one socket, then a read that
// blocks until the deadline, as when the kernel is slow to walk a huge table. Setting *hang to false makes
// the sockets opened after it end the dump (without NLMSG_DONE: ErrNoDone).
func hangingClient(t *testing.T) (c *Client, opened *[]*scriptTransport, hang *bool) {
	t.Helper()
	opened, hang = new([]*scriptTransport), new(bool)
	*hang = true
	var err error
	c, err = newClient(nil, func() (transport, error) {
		s := newScript(func(req []netlink.Message) ([]netlink.Message, error) {
			msgs := reply(req[0], 0, sockA)
			return msgs[:1], nil // no NLMSG_DONE
		}, 1, nil)
		s.hang = *hang
		*opened = append(*opened, s)
		return s, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, opened, hang
}

// TestNLDumpContext checks that a context's deadline and its cancellation stop a dump blocked in a read,
// with an error that matches the context's, and that they do not outlive the dump.
func TestNLDumpContext(t *testing.T) {
	for _, tc := range []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 50*time.Millisecond)
		}, context.DeadlineExceeded},
		{"cancel", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(50*time.Millisecond, cancel)
			return ctx, cancel
		}, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, opened, hang := hangingClient(t)
			ctx, cancel := tc.ctx()
			defer cancel()
			start := time.Now()
			var got []seen
			st, err := c.DumpContext(ctx, Request{Family: FamilyInet}, collect(&got))
			if !errors.Is(err, tc.want) || !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("DumpContext = %v, want errors.Is %v and os.ErrDeadlineExceeded", err, tc.want)
			}
			if el := time.Since(start); el > 5*time.Second {
				t.Errorf("DumpContext returned %v after the context ended at 50ms", el)
			}
			if st.Sockets != 1 || len(got) != 1 {
				t.Errorf("%d sockets in the stats, %d to the callback before the hang; want 1", st.Sockets, len(got))
			}
			if !(*opened)[0].closed {
				t.Error("the socket of the interrupted dump was kept: the kernel would answer EBUSY")
			}

			// The next dump on the same Client, with a live context, gets no leftover deadline.
			*hang = false
			var ok []seen
			if _, err := c.DumpContext(context.Background(), Request{Family: FamilyInet}, collect(&ok)); !errors.Is(err, ErrNoDone) {
				t.Errorf("dump after an interrupted one: %v, want ErrNoDone from the script, not a deadline", err)
			}
			s := (*opened)[len(*opened)-1]
			s.mu.Lock()
			d := s.deadline
			s.mu.Unlock()
			if !d.IsZero() {
				t.Errorf("deadline %v left on the socket after DumpContext without a deadline", d)
			}
		})
	}

	// A context that has already ended sends nothing.
	c, opened, _ := hangingClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.DumpContext(ctx, Request{Family: FamilyInet}, func(*Socket) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("DumpContext with an ended context = %v, want context.Canceled", err)
	}
	if s := (*opened)[0]; len(s.datagrams) != 0 || s.closed {
		t.Error("DumpContext with an ended context sent a request")
	}
}

// TestNLDumpContextSetDeadline checks that SetDeadline's deadline still applies under DumpContext when it is
// the earlier one, and is back on the socket after the dump.
func TestNLDumpContextSetDeadline(t *testing.T) {
	c, opened, hang := hangingClient(t)
	early := time.Now().Add(30 * time.Millisecond)
	if err := c.SetDeadline(early); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	_, err := c.DumpContext(ctx, Request{Family: FamilyInet}, func(*Socket) error { return nil })
	if !errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("DumpContext past SetDeadline's deadline = %v, want os.ErrDeadlineExceeded only", err)
	}
	later := time.Now().Add(time.Hour)
	if err := c.SetDeadline(later); err != nil {
		t.Fatal(err)
	}
	*hang = false
	_, _ = c.DumpContext(context.Background(), Request{Family: FamilyInet}, func(*Socket) error { return nil })
	s := (*opened)[len(*opened)-1]
	s.mu.Lock()
	d := s.deadline
	s.mu.Unlock()
	if !d.Equal(later) {
		t.Errorf("socket deadline after DumpContext = %v, want SetDeadline's %v", d, later)
	}
}

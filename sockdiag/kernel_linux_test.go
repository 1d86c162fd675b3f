//go:build linux

package sockdiag

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/sockbuf/sockbuf_exporter/internal/population"
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

var (
	lo4 = netip.MustParseAddr("127.0.0.1")
	lo6 = netip.MustParseAddr("::1")
)

// allStates asks for every state, TIME_WAIT and SYN_RECV included, as `ss -a` shows them.
const allStates = 1<<(StateNewSynRecv+1) - 2

// knownSet opens, in the calling thread's namespace, a set of connections covering what the exporter
// must see: v4 and v6, bytes left unread in receive queues, a zero window with a full send queue, a
// listener with connections waiting in its accept queue, a half-closed pair and a TIME_WAIT socket.
func knownSet(s *population.Set) error {
	// pair connects to a listener and accepts; conn also keeps both ends open until the test ends.
	pair := func(lfd int, dst netip.AddrPort) (int, int, error) {
		c, err := population.Connect(dst)
		if err != nil {
			return -1, -1, err
		}
		a, err := population.Accept(lfd)
		if err != nil {
			unix.Close(c)
			return -1, -1, err
		}
		return c, a, nil
	}
	conn := func(lfd int, dst netip.AddrPort) (int, int, error) {
		c, a, err := pair(lfd, dst)
		if err == nil {
			s.Add(c, a)
		}
		return c, a, err
	}
	for _, addr := range []netip.Addr{lo4, lo6} {
		lfd, dst, err := population.Listen(addr, 16)
		if err != nil {
			return err
		}
		s.Add(lfd)
		// Idle; 1000 bytes unread by the server; 5000 unread by the client.
		if _, _, err := conn(lfd, dst); err != nil {
			return err
		}
		c, a, err := conn(lfd, dst)
		if err != nil {
			return err
		}
		if err := population.Write(c, 1000); err != nil {
			return err
		}
		if err := population.Write(a, 5000); err != nil {
			return err
		}
	}

	// A sender stuck on a zero window: the receiver never reads, so its receive queue fills and the
	// rest waits in the sender's send queue (Send-Q).
	lfd, dst, err := population.Listen(lo4, 16)
	if err != nil {
		return err
	}
	s.Add(lfd)
	c, _, err := conn(lfd, dst)
	if err != nil {
		return err
	}
	if err := unix.SetNonblock(c, true); err != nil {
		return err
	}
	chunk := make([]byte, 64<<10)
	for range 1000 {
		if _, err := unix.Write(c, chunk); err == unix.EAGAIN {
			break
		} else if err != nil {
			return fmt.Errorf("filling the window: %w", err)
		}
	}

	// A listener with three connections it never accepts: Recv-Q 3, Send-Q the backlog 8.
	lfd, dst, err = population.Listen(lo6, 8)
	if err != nil {
		return err
	}
	s.Add(lfd)
	for range 3 {
		c, err := population.Connect(dst)
		if err != nil {
			return err
		}
		s.Add(c)
	}

	// Half-closed (FIN_WAIT2 / CLOSE_WAIT), and closed by both (TIME_WAIT on the side closing first).
	lfd, dst, err = population.Listen(lo4, 16)
	if err != nil {
		return err
	}
	s.Add(lfd)
	c1, a1, err := pair(lfd, dst)
	if err != nil {
		return err
	}
	s.Add(a1)
	unix.Close(c1)
	c2, a2, err := pair(lfd, dst)
	if err != nil {
		return err
	}
	unix.Close(c2)
	time.Sleep(10 * time.Millisecond)
	unix.Close(a2)
	// Let loopback deliver everything written and the FIN/ACK exchanges settle.
	time.Sleep(100 * time.Millisecond)
	return nil
}

// knownClient dials a Client into a fresh namespace holding knownSet.
func knownClient(t *testing.T) *Client {
	t.Helper()
	_, nsfd := knownNetNS(t)
	c, err := Dial(&Config{NetNS: nsfd})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// knownNetNS creates a namespace holding knownSet and returns it with an open descriptor of it.
func knownNetNS(t *testing.T) (*testenv.NetNS, int) {
	t.Helper()
	ns := testenv.NewNetNS(t)
	pop := &population.Set{}
	t.Cleanup(func() { pop.Close() }) // before the namespace goes: cleanups run last-in first-out
	if err := ns.Do(func() error { return knownSet(pop) }); err != nil {
		t.Fatalf("opening connections in %s: %v", ns.Name, err)
	}
	f, err := os.Open(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return ns, int(f.Fd())
}

func dumpView(t *testing.T, c *Client, req Request) []ssSocket {
	t.Helper()
	var got []ssSocket
	if _, err := c.Dump(req, func(s *Socket) error {
		got = append(got, ssComparable(ssView(s)))
		return nil
	}); err != nil {
		t.Fatalf("Dump(%+v): %v", req, err)
	}
	sortSS(got)
	return got
}

// TestDumpMatchesSS checks every socket of a namespace against `ss -tanmie` run in it: the same set of
// sockets, and for each its state, Recv-Q, Send-Q, inode, cookie, skmem and the tcp_info fields ss prints.
func TestDumpMatchesSS(t *testing.T) {
	testenv.RequireRoot(t)
	ss := testenv.RequireBinary(t, "ss", "iproute2")
	ns, nsfd := knownNetNS(t)

	c, err := Dial(&Config{NetNS: nsfd})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()

	for _, tc := range []struct {
		name string
		req  Request
	}{
		{"both families in one walk", Request{Family: FamilyUnspec, States: allStates, Extensions: ExtSKMemInfo | ExtInfo}},
		{"AF_INET", Request{Family: FamilyInet, States: allStates, Extensions: ExtSKMemInfo | ExtInfo}},
		{"AF_INET6", Request{Family: FamilyInet6, States: allStates, Extensions: ExtSKMemInfo | ExtInfo}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"-tanmieH"}
			switch tc.req.Family {
			case FamilyInet:
				args = append(args, "-4")
			case FamilyInet6:
				args = append(args, "-6")
			}
			// Both readings are snapshots: retry a few times in case a timer moved a value in between.
			var diff string
			for range 3 {
				got := dumpView(t, c, tc.req)
				socks, err := parseSS(ns.MustRun(t, ss, args...))
				if err != nil {
					t.Fatalf("parsing ss output: %v", err)
				}
				var want []ssSocket
				for _, s := range socks {
					want = append(want, ssComparable(s))
				}
				sortSS(want)
				if diff = cmp.Diff(want, got, cmpAddr); diff == "" {
					if len(got) < 10 {
						t.Fatalf("only %d sockets; the known set has more", len(got))
					}
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
			t.Errorf("dump differs from ss (-ss +dump):\n%s", diff)
		})
	}
}

// TestDumpKnownSet checks the values the known set was built to have, and that default states leave out
// TIME_WAIT.
func TestDumpKnownSet(t *testing.T) {
	testenv.RequireRoot(t)
	c := knownClient(t)

	count := map[string]int{}
	var listenWithQueue, unread1000, unread5000, fullSendQ, v6 int
	st, err := c.Dump(Request{Family: FamilyUnspec, Extensions: ExtSKMemInfo | ExtInfo | ExtMemInfo}, func(s *Socket) error {
		count[StateName(s.State)]++
		if s.Family == FamilyInet6 {
			v6++
		}
		if s.State == StateFinWait2 && s.Inode == 0 {
			// An orphaned FIN_WAIT2 socket is an inet_timewait_sock: no memory, no attributes.
			if s.HasSKMemInfo || s.TCPInfoLen != 0 {
				t.Errorf("orphaned FIN_WAIT2 socket with attributes: %+v", s)
			}
			return nil
		}
		if !s.HasSKMemInfo || s.TCPInfoLen < TCPInfoLenTotalRTO || !s.HasMemInfo || !s.HasCgroupID {
			t.Errorf("socket %v -> %v lacks attributes: %+v", s.Src, s.Dst, s)
		}
		if s.TCPInfo.State != s.State {
			t.Errorf("tcpi_state %d, idiag_state %d", s.TCPInfo.State, s.State)
		}
		switch {
		case s.IsListen() && s.AcceptQueue() == 3:
			listenWithQueue++
			if s.AcceptQueueLimit() != 8 || s.RecvQueue() != 0 {
				t.Errorf("listener with pending connections: limit %d, RecvQueue %d", s.AcceptQueueLimit(), s.RecvQueue())
			}
		case s.RecvQueue() == 1000:
			unread1000++
		case s.RecvQueue() == 5000:
			unread5000++
		case s.SendQueue() > 100000:
			fullSendQ++
		}
		if !s.IsListen() && s.MemInfo.RMem != s.SKMemInfo.RmemAlloc {
			t.Errorf("meminfo rmem %d, skmeminfo %d", s.MemInfo.RMem, s.SKMemInfo.RmemAlloc)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Dump: %v", err)
	}
	want := map[string]int{"LISTEN": 5, "ESTAB": 2*2*2 + 2 + 3*2, "FIN-WAIT-2": 1, "CLOSE-WAIT": 1}
	if diff := cmp.Diff(want, count); diff != "" {
		t.Errorf("sockets per state (-want +got):\n%s", diff)
	}
	if listenWithQueue != 1 || unread1000 != 2 || unread5000 != 2 || fullSendQ != 1 || v6 != 5+7 {
		t.Errorf("listener with queue %d, unread 1000 %d, unread 5000 %d, full send queue %d, v6 %d; want 1 2 2 1 12",
			listenWithQueue, unread1000, unread5000, fullSendQ, v6)
	}
	if st.Sockets != 23 || st.Bytes == 0 || st.Retries != 0 || st.Inconsistent {
		t.Errorf("stats %+v", st)
	}
}

// TestDumpAllocs: a dump allocates a small constant (the request message netlink.Conn.Send builds), not
// per socket; BenchmarkDump shows the same 12 allocations on 40,000 sockets.
func TestDumpAllocs(t *testing.T) {
	testenv.RequireRoot(t)
	c := knownClient(t)
	var n int
	fn := func(s *Socket) error { n += int(s.SKMemInfo.Rcvbuf & 1); return nil }
	req := Request{Family: FamilyUnspec, Extensions: ExtSKMemInfo | ExtInfo | ExtMemInfo}
	allocs := testing.AllocsPerRun(20, func() {
		if _, err := c.Dump(req, fn); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 16 {
		t.Errorf("Dump allocates %v times per dump of 23 sockets, want a small constant", allocs)
	}
}

// TestDumpDeadline: a deadline that has passed aborts the dump with os.ErrDeadlineExceeded, and the
// Client works again once it is lifted.
func TestDumpDeadline(t *testing.T) {
	testenv.RequireRoot(t)
	c := knownClient(t)
	if err := c.SetDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Dump(Request{}, func(*Socket) error { return nil }); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("dump past its deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	if err := c.SetDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if st, err := c.Dump(Request{Family: FamilyInet6}, func(*Socket) error { return nil }); err != nil || st.Sockets == 0 {
		t.Errorf("dump after lifting the deadline: %+v, %v", st, err)
	}
}

// TestLookupKnownSet looks every ESTABLISHED socket of the known set up by the identity a dump without
// tcp_info reported, asking for tcp_info: each answer is that socket, with tcp_info, and its advertised
// window (tcpi_rcv_wnd, what zero-window evidence uses) is the one a dump with tcp_info shows. A socket that
// is not there is os.ErrNotExist.
func TestLookupKnownSet(t *testing.T) {
	testenv.RequireRoot(t)
	c := knownClient(t)
	var ids []Socket
	if _, err := c.Dump(Request{Family: FamilyUnspec, States: 1 << StateEstablished, Extensions: ExtSKMemInfo}, func(s *Socket) error {
		ids = append(ids, *s)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := map[uint64]uint32{}
	if _, err := c.Dump(Request{Family: FamilyUnspec, States: 1 << StateEstablished, Extensions: ExtInfo}, func(s *Socket) error {
		if s.HasRcvWnd() {
			want[s.Cookie] = s.TCPInfo.RcvWnd
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(ids) == 0 || len(want) != len(ids) {
		t.Fatalf("the known set has %d established sockets, %d with tcpi_rcv_wnd", len(ids), len(want))
	}
	ctx := context.Background()
	got := map[uint64]uint32{}
	for i := range ids {
		id := &ids[i]
		err := c.LookupContext(ctx, id, ExtInfo|ExtSKMemInfo, func(s *Socket) error {
			if s.Cookie != id.Cookie || s.Src != id.Src || s.Dst != id.Dst || s.RQueue != id.RQueue {
				t.Errorf("lookup of %v -> %v (cookie %x) answered %v -> %v (cookie %x), Recv-Q %d, want %d",
					id.Src, id.Dst, id.Cookie, s.Src, s.Dst, s.Cookie, s.RQueue, id.RQueue)
			}
			if !s.HasRcvWnd() || !s.HasSKMemInfo {
				t.Errorf("lookup of %v -> %v: no tcp_info or skmeminfo: %+v", id.Src, id.Dst, s)
			}
			got[s.Cookie] = s.TCPInfo.RcvWnd
			return nil
		})
		if err != nil {
			t.Errorf("lookup of %v -> %v: %v", id.Src, id.Dst, err)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tcpi_rcv_wnd by cookie (-dump with tcp_info +lookups):\n%s", diff)
	}
	gone := ids[0]
	gone.Cookie++
	if err := c.LookupContext(ctx, &gone, ExtInfo, func(*Socket) error { return nil }); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lookup of a socket that is not there: %v, want os.ErrNotExist", err)
	}
	// The client still dumps after lookups, a failed one included.
	if _, err := c.Dump(Request{Family: FamilyUnspec}, func(*Socket) error { return nil }); err != nil {
		t.Errorf("dump after lookups: %v", err)
	}
}

// BenchmarkLookup is the cost of one socket lookup with tcp_info (what the sockets collector pays per full
// socket for its window), against a dump of the same sockets with tcp_info (what --collector.sockets.tcp-info
// pays for every socket): compare ns/socket.
func BenchmarkLookup(b *testing.B) {
	testenv.RequireRoot(b)
	ns := testenv.NewNetNS(b)
	pop := &population.Set{}
	b.Cleanup(func() { pop.Close() })
	if err := ns.Do(func() error { return knownSet(pop) }); err != nil {
		b.Fatal(err)
	}
	f, err := os.Open(ns.Path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	c, err := Dial(&Config{NetNS: int(f.Fd())})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := Request{Family: FamilyUnspec, States: 1 << StateEstablished, Extensions: ExtInfo | ExtSKMemInfo}
	var ids []Socket
	if _, err := c.Dump(req, func(s *Socket) error { ids = append(ids, *s); return nil }); err != nil {
		b.Fatal(err)
	}
	nop := func(*Socket) error { return nil }
	b.Run("lookup", func(b *testing.B) {
		ctx := context.Background()
		for i := 0; b.Loop(); i++ {
			if err := c.LookupContext(ctx, &ids[i%len(ids)], ExtInfo, nop); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/socket")
	})
	b.Run("dump-tcpinfo", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.Dump(req, nop); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ids)), "ns/socket")
	})
}

//go:build linux

package sockiter_test

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockbuf/sockbuf_exporter/bpf/sockiter"
	"github.com/sockbuf/sockbuf_exporter/internal/sockpop"
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

// churn holds stable connections to a listener of its own and, until stop, opens and closes one more
// connection at a time to it (SO_LINGER 0: no TIME_WAIT), and every 64 connections a listener on a port of
// its own that it closes again (runListeners). It must run on a thread in the namespace (testenv.NetNS.Do).
type churn struct {
	port    uint16
	stable  int
	conns   atomic.Int64 // churned connections
	listens atomic.Int64 // churned listeners
}

func sockaddr4(port uint16) *unix.SockaddrInet4 {
	return &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: int(port)}
}

func listen4() (int, uint16, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, 0, err
	}
	if err := unix.Bind(fd, sockaddr4(0)); err != nil {
		unix.Close(fd)
		return -1, 0, err
	}
	if err := unix.Listen(fd, 128); err != nil {
		unix.Close(fd)
		return -1, 0, err
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return -1, 0, err
	}
	return fd, uint16(sa.(*unix.SockaddrInet4).Port), nil
}

func closeReset(fd int) {
	_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	unix.Close(fd)
}

// pair connects to port and accepts the connection on lfd.
func pair(lfd int, port uint16) (c, a int, err error) {
	c, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, -1, err
	}
	if err := unix.Connect(c, sockaddr4(port)); err != nil {
		unix.Close(c)
		return -1, -1, err
	}
	a, _, err = unix.Accept4(lfd, unix.SOCK_CLOEXEC)
	if err != nil {
		closeReset(c)
		return -1, -1, err
	}
	return c, a, nil
}

// run is the whole churn, bounded by maxConns and maxTime; ready receives the port once the stable
// connections are up.
func (ch *churn) run(stop <-chan struct{}, ready chan<- uint16, maxConns int, maxTime time.Duration) error {
	lfd, port, err := listen4()
	if err != nil {
		close(ready)
		return err
	}
	defer unix.Close(lfd)
	var held []int
	defer func() {
		for _, fd := range held {
			closeReset(fd)
		}
	}()
	for range ch.stable {
		c, a, err := pair(lfd, port)
		if err != nil {
			close(ready)
			return err
		}
		held = append(held, c, a)
	}
	ch.port = port
	ready <- port
	deadline := time.Now().Add(maxTime)
	for ch.conns.Load() < int64(maxConns) && time.Now().Before(deadline) {
		select {
		case <-stop:
			return nil
		default:
		}
		c, a, err := pair(lfd, port)
		if err != nil {
			return fmt.Errorf("churn connection %d: %w", ch.conns.Load(), err)
		}
		closeReset(c)
		closeReset(a)
		ch.conns.Add(1)
	}
	return nil
}

// runListeners opens and closes listeners on ports of their own until stop, so that listeners appear and
// go during the walks.
func (ch *churn) runListeners(stop <-chan struct{}, maxListens int, maxTime time.Duration) error {
	deadline := time.Now().Add(maxTime)
	for ch.listens.Load() < int64(maxListens) && time.Now().Before(deadline) {
		select {
		case <-stop:
			return nil
		default:
		}
		fd, _, err := listen4()
		if err != nil {
			return err
		}
		unix.Close(fd)
		ch.listens.Add(1)
	}
	return nil
}

// TestEqualUnderChurn walks, with both engines, a population of which one part stays and another opens and
// closes connections and listeners all along. Under churn "agree" means:
//   - every group and listener of the stable part (the population of TestEqualNetlink) is exactly what
//     both engines saw before the churn started, in every walk: churn elsewhere never moves, drops or
//     double-counts a socket that stays;
//   - each churned group (server and client role of the churn port) has, in every walk, at least the
//     stable connections it always holds, and at most those plus one for every churn connection that was
//     open at some moment of the walk (the one open when it started and each one opened during it): a walk
//     is not a snapshot, it sees each socket that exists when it passes the socket's hash bucket, so two
//     connections that never coexisted can both be counted, one that opens behind it is not;
//   - the bpf walk never fails. (It never walks twice here either: the kernel walks the whole listening
//     hash before the established one and never goes back, so a listener that opens during the walk is
//     not seen at all, as one opening between the netlink path's LISTEN dump and its main dump is not.)
//
// These bounds hold for the bpf engine, and the test fails when it leaves them. For the netlink dump they
// are only logged: inet_diag resumes each datagram at a socket offset within a hash bucket
// (inet_diag_dump_icsk), so a socket closing or opening ahead of the resume point in that bucket can make
// a socket that stays be sent twice or skipped. The walks of the bpf engine here take one read each, so they
// never resume (and the TCP iterator of 2025 kernels resumes a bucket by socket cookie, not by offset).
func TestEqualUnderChurn(t *testing.T) {
	testenv.RequireRoot(t)
	ns := testenv.NewNetNS(t)
	sockpop.OpenIn(t, ns)
	e := openEngine(t, false)
	nl := netlinkFolder(t, ns)
	quiet := cloneResult(walkIn(t, ns, e))
	if d := cmp2(groupsByKey(quiet, true, false), groupsByKey(fold(t, nl), true, false)); d != "" {
		t.Fatalf("before churn, engines differ: %s", d)
	}

	const stable = 10
	ch := &churn{stable: stable}
	stop, ready, done := make(chan struct{}), make(chan uint16, 1), make(chan error, 1)
	go func() { done <- ns.Do(func() error { return ch.run(stop, ready, 200000, 20*time.Second) }) }()
	port, ok := <-ready
	if !ok {
		t.Fatalf("churn: %v", <-done)
	}
	doneL := make(chan error, 1)
	go func() { doneL <- ns.Do(func() error { return ch.runListeners(stop, 1000000, 20*time.Second) }) }()

	stableGroups := groupsByKey(quiet, true, false)
	var passes2, walks, nlOff int
	for round := range 40 {
		for _, engine := range []string{"bpf", "netlink"} {
			var r *sockiter.Result
			opened := ch.conns.Load()
			if engine == "bpf" {
				r = cloneResult(walkIn(t, ns, e))
				walks++
				if r.Passes == 2 {
					passes2++
				}
			} else {
				r = fold(t, nl)
			}
			report := t.Errorf
			if engine == "netlink" {
				report = func(format string, args ...any) { nlOff++; t.Logf("netlink off: "+format, args...) }
			}
			during := ch.conns.Load() - opened
			got := groupsByKey(r, true, false)
			churned := map[sockiter.Role]uint64{}
			for k, s := range got {
				if k.Port == port {
					churned[k.Role] += s.Sockets
					delete(got, k)
				}
			}
			if d := cmp2(stableGroups, got); d != "" {
				report("round %d, %s: stable groups moved (-before churn +now):\n%s", round, engine, d)
			}
			for _, role := range []sockiter.Role{sockiter.RoleServer, sockiter.RoleClient} {
				if n := churned[role]; n < stable || n > stable+1+uint64(during) {
					report("round %d, %s: churned group role %d has %d sockets, want [%d, %d]", round, engine, role, n, stable, stable+1+during)
				}
			}
			for _, l := range quiet.Listeners {
				if !hasListener(r.Listeners, l) {
					report("round %d, %s: stable listener %+v missing or changed", round, engine, l)
				}
			}
		}
	}
	close(stop)
	if err := errors.Join(<-done, <-doneL); err != nil {
		t.Fatalf("churn: %v", err)
	}
	if n := ch.conns.Load(); n < 100 {
		t.Errorf("only %d churn connections during the walks: the test churned too little to mean anything", n)
	}
	t.Logf("%d connections and %d listeners churned during %d bpf walks (%d walked twice); the netlink dumps left the bounds %d times",
		ch.conns.Load(), ch.listens.Load(), walks, passes2, nlOff)
}

func hasListener(ls []sockiter.Listener, want sockiter.Listener) bool {
	for _, l := range ls {
		if l == want {
			return true
		}
	}
	return false
}

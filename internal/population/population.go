//go:build linux

// Package population opens TCP connections on loopback for the tests and benchmarks of sockdiag,
// bpf/sockiter and collector. It uses plain blocking file descriptors, not the net package, so that
// 100,000 connections cost no goroutines and little memory in the process that holds them. Every socket
// belongs to the network namespace of the thread that creates it: call these functions inside
// testenv.NetNS.Do, or in a process started with `ip netns exec`.
package population

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strings"

	"golang.org/x/sys/unix"
)

// Set is the file descriptors of a population; Close closes them all.
type Set struct {
	FDs []int
}

// Add records fds to be closed by Close.
func (s *Set) Add(fds ...int) { s.FDs = append(s.FDs, fds...) }

// Close closes every descriptor of the set. SO_LINGER 0 makes the kernel reset instead of keeping
// thousands of sockets in TIME_WAIT.
func (s *Set) Close() error {
	var errs []error
	for _, fd := range s.FDs {
		_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		if err := unix.Close(fd); err != nil {
			errs = append(errs, err)
		}
	}
	s.FDs = nil
	return errors.Join(errs...)
}

func sockaddr(a netip.AddrPort) unix.Sockaddr {
	if a.Addr().Is4() {
		return &unix.SockaddrInet4{Addr: a.Addr().As4(), Port: int(a.Port())}
	}
	return &unix.SockaddrInet6{Addr: a.Addr().As16(), Port: int(a.Port())}
}

func family(a netip.Addr) int {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// Listen opens a TCP socket listening on addr with an ephemeral port and the given backlog.
func Listen(addr netip.Addr, backlog int) (int, netip.AddrPort, error) {
	fd, err := unix.Socket(family(addr), unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return -1, netip.AddrPort{}, fmt.Errorf("socket: %w", err)
	}
	if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(addr, 0))); err != nil {
		unix.Close(fd)
		return -1, netip.AddrPort{}, fmt.Errorf("bind %s: %w", addr, err)
	}
	if err := unix.Listen(fd, backlog); err != nil {
		unix.Close(fd)
		return -1, netip.AddrPort{}, fmt.Errorf("listen: %w", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return -1, netip.AddrPort{}, fmt.Errorf("getsockname: %w", err)
	}
	var port int
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		port = sa.Port
	case *unix.SockaddrInet6:
		port = sa.Port
	}
	return fd, netip.AddrPortFrom(addr, uint16(port)), nil
}

// Connect opens a TCP connection to dst. On loopback the handshake completes inside connect(2).
func Connect(dst netip.AddrPort) (int, error) {
	fd, err := unix.Socket(family(dst.Addr()), unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	if err := unix.Connect(fd, sockaddr(dst)); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("connect %s: %w", dst, err)
	}
	return fd, nil
}

// Accept takes one connection from a listener's accept queue.
func Accept(lfd int) (int, error) {
	fd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("accept: %w", err)
	}
	return fd, nil
}

// Write writes n bytes to fd, which the peer then holds unread in its receive queue.
func Write(fd, n int) error {
	b := make([]byte, n)
	for len(b) > 0 {
		w, err := unix.Write(fd, b)
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		b = b[w:]
	}
	return nil
}

// perListener keeps each listener well under the 64,512 ports of the widened ephemeral range, so that
// connect(2) finds a free source port quickly.
const perListener = 20000

// Loopback opens n connections over 127.0.0.1 (2n sockets plus one listener per 20,000 connections) and
// accepts each, leaving every socket ESTABLISHED and idle. It needs RaiseNoFile(2n+...) first.
func Loopback(n int) (*Set, error) {
	s := &Set{}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_local_port_range", []byte("1024 65535"), 0o644); err != nil {
		return nil, fmt.Errorf("widening ip_local_port_range: %w", err)
	}
	var (
		lfd int
		dst netip.AddrPort
		err error
	)
	for i := range n {
		if i%perListener == 0 {
			lfd, dst, err = Listen(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 4096)
			if err != nil {
				s.Close()
				return nil, err
			}
			s.Add(lfd)
		}
		c, err := Connect(dst)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("connection %d: %w", i, err)
		}
		a, err := Accept(lfd)
		if err != nil {
			unix.Close(c)
			s.Close()
			return nil, fmt.Errorf("connection %d: %w", i, err)
		}
		s.Add(c, a)
	}
	return s, nil
}

// PerProcess is how many connections (two descriptors each) one process can hold: RLIMIT_NOFILE's hard
// limit, which only CAP_SYS_RESOURCE can raise, bounds it (20,000 descriptors on the machine this was
// written on), less room for the runtime's own descriptors. The soft limit is raised to the hard one.
func PerProcess() (int, error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			return 0, fmt.Errorf("raising RLIMIT_NOFILE to %d: %w", lim.Max, err)
		}
	}
	return max(int(min(lim.Max, 1<<20)-256)/2, 1), nil
}

// Hold is the whole of a holder process: it opens n connections, writes "ready" to w, and keeps them
// open until r reaches end of file (its parent closed the pipe or died).
func Hold(n int, r io.Reader, w io.Writer) error {
	if _, err := PerProcess(); err != nil {
		return err
	}
	s, err := Loopback(n)
	if err != nil {
		return err
	}
	defer s.Close()
	if _, err := fmt.Fprintln(w, "ready"); err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, r)
	return err
}

// Holders starts processes until they hold total connections between them, each made by newCmd for n
// connections (a command that calls Hold, started in the target namespace). stop ends them all.
func Holders(total int, newCmd func(n int) *exec.Cmd) (stop func() error, err error) {
	per, err := PerProcess()
	if err != nil {
		return nil, err
	}
	var stdins []io.Closer
	var cmds []*exec.Cmd
	stop = func() error {
		var errs []error
		for _, in := range stdins {
			in.Close()
		}
		for _, c := range cmds {
			if err := c.Wait(); err != nil {
				errs = append(errs, fmt.Errorf("holder: %w", err))
			}
		}
		stdins, cmds = nil, nil
		return errors.Join(errs...)
	}
	for left := total; left > 0; {
		n := min(left, per)
		cmd := newCmd(n)
		in, err := cmd.StdinPipe()
		if err != nil {
			stop()
			return nil, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			stop()
			return nil, err
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			stop()
			return nil, fmt.Errorf("starting holder: %w", err)
		}
		stdins, cmds = append(stdins, in), append(cmds, cmd)
		line, err := bufio.NewReader(out).ReadString('\n')
		if strings.TrimSpace(line) != "ready" {
			stop()
			return nil, fmt.Errorf("holder of %d connections did not get ready: %q, %v", n, line, err)
		}
		left -= n
	}
	return stop, nil
}

// RaiseNoFile raises RLIMIT_NOFILE of the process to at least n descriptors.
func RaiseNoFile(n uint64) error {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("getrlimit: %w", err)
	}
	if lim.Cur >= n {
		return nil
	}
	lim.Cur = n
	if lim.Max < n {
		lim.Max = n
	}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raising RLIMIT_NOFILE to %d: %w", n, err)
	}
	return nil
}

package trafficgen

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultAddr is where listeners bind when the caller names no address: loopback, so that traffic never
// leaves the namespace.
const DefaultAddr = "127.0.0.1:0"

// ListenConfig describes a listener.
type ListenConfig struct {
	// Addr is the address to bind, "127.0.0.1:0" when empty (port 0: the kernel picks one).
	Addr string
	// RcvBuf, when positive, is set with SO_RCVBUF before listen(). The kernel doubles it and locks it
	// (SOCK_RCVBUF_LOCK), and accepted sockets inherit both, so their buffers never autotune.
	RcvBuf int
	// Backlog is the accept-queue limit passed to listen(); 0 means 4096. The kernel caps it at
	// net.core.somaxconn and holds Backlog+1 connections before it drops SYNs.
	Backlog int
	// NoAccept leaves connections in the accept queue forever (until Close), so the queue fills.
	NoAccept bool
}

// Server is a listener that accepts connections and holds them without ever reading from them, so whatever
// clients send stays in the server side's receive queues.
type Server struct {
	ln   *net.TCPListener
	port int

	mu     sync.Mutex
	conns  []*net.TCPConn
	notify chan struct{} // closed and replaced whenever a connection is accepted
	closed bool
	done   chan struct{} // closed when the accept loop has ended
}

// Listen opens a listener in the calling thread's network namespace and, unless cfg.NoAccept, starts
// accepting. The socket is built by hand because net.Listen sets neither the backlog nor a receive buffer
// before listen().
func Listen(cfg ListenConfig) (*Server, error) {
	addr := cfg.Addr
	if addr == "" {
		addr = DefaultAddr
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("parsing listen address %q: %w", addr, err)
	}
	backlog := cfg.Backlog
	if backlog <= 0 {
		backlog = 4096
	}
	fd, err := socketFor(ap)
	if err != nil {
		return nil, err
	}
	if err := listenFD(fd, ap, cfg.RcvBuf, backlog); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listening on %s: %w", ap, err)
	}
	f := os.NewFile(uintptr(fd), "trafficgen-listener")
	l, err := net.FileListener(f) // dups the descriptor into Go's poller
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("wrapping listener on %s: %w", ap, err)
	}
	ln := l.(*net.TCPListener)
	s := &Server{
		ln:     ln,
		port:   ln.Addr().(*net.TCPAddr).Port,
		notify: make(chan struct{}),
		done:   make(chan struct{}),
	}
	if cfg.NoAccept {
		close(s.done)
	} else {
		go s.acceptLoop()
	}
	return s, nil
}

func socketFor(ap netip.AddrPort) (int, error) {
	family := unix.AF_INET
	if ap.Addr().Is6() && !ap.Addr().Is4In6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("opening TCP socket: %w", err)
	}
	return fd, nil
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is6() && !ap.Addr().Is4In6() {
		return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().Unmap().As4()}
}

func listenFD(fd int, ap netip.AddrPort, rcvbuf, backlog int) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fmt.Errorf("setting SO_REUSEADDR: %w", err)
	}
	if rcvbuf > 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf); err != nil {
			return fmt.Errorf("setting SO_RCVBUF=%d: %w", rcvbuf, err)
		}
	}
	if err := unix.Bind(fd, sockaddr(ap)); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	if err := unix.Listen(fd, backlog); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	return nil
}

func (s *Server) acceptLoop() {
	defer close(s.done)
	for {
		c, err := s.ln.AcceptTCP()
		if err != nil {
			// Close ends the loop; any other error (EMFILE) would repeat forever, so it ends it too.
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns = append(s.conns, c)
		close(s.notify)
		s.notify = make(chan struct{})
		s.mu.Unlock()
	}
}

// Port is the port the listener is bound to.
func (s *Server) Port() int { return s.port }

// Addr is the listener's address, for Dial.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Listener is the listening socket, e.g. for SocketMemInfo or ss checks of its queue.
func (s *Server) Listener() *net.TCPListener { return s.ln }

// Conns returns the accepted connections so far (server side).
func (s *Server) Conns() []*net.TCPConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*net.TCPConn(nil), s.conns...)
}

// WaitAccepted waits until at least n connections have been accepted, or timeout passes.
func (s *Server) WaitAccepted(n int, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		got, notify := len(s.conns), s.notify
		s.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-notify:
		case <-s.done:
			return fmt.Errorf("listener on port %d stopped after accepting %d of %d connections", s.port, got, n)
		case <-deadline.C:
			return fmt.Errorf("accepted %d of %d connections on port %d within %s", got, n, s.port, timeout)
		}
	}
}

// Close closes the listener and every accepted connection; unread data is thrown away (the kernel answers
// with RST).
func (s *Server) Close() error {
	err := s.ln.Close()
	<-s.done
	s.mu.Lock()
	s.closed = true
	conns := s.conns
	s.conns = nil
	s.mu.Unlock()
	for _, c := range conns {
		err = errors.Join(err, c.Close())
	}
	return err
}

// dropConns closes the accepted connections but keeps listening.
func (s *Server) dropConns() {
	s.mu.Lock()
	conns := s.conns
	s.conns = nil
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

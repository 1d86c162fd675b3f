package trafficgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Conns is a set of listeners with the connections made to them.
type Conns struct {
	Servers []*Server
	Clients *Clients
}

// Close closes the clients, then the listeners and what they accepted.
func (c *Conns) Close() error {
	if c == nil {
		return nil
	}
	err := c.Clients.Close()
	for _, s := range c.Servers {
		err = errors.Join(err, s.Close())
	}
	c.Servers = nil
	return err
}

// serverConns returns every accepted connection of every listener.
func (c *Conns) serverConns() []*net.TCPConn {
	var out []*net.TCPConn
	for _, s := range c.Servers {
		out = append(out, s.Conns()...)
	}
	return out
}

// UnreadConfig describes connections with data left unread on the server side.
type UnreadConfig struct {
	Listen ListenConfig // the listener (Addr, RcvBuf); NoAccept is ignored
	Conns  int
	// Bytes is what each client writes and the server leaves in its receive queue. It must fit the
	// receive window (a few tens of KiB is safe with default buffers), or Unread fails waiting for it.
	Bytes int
}

// Unread opens a listener and cfg.Conns connections to it, writes cfg.Bytes on each, and returns once every
// server-side socket holds exactly cfg.Bytes in its receive queue (Recv-Q in ss), within 5 seconds.
func Unread(ctx context.Context, cfg UnreadConfig) (*Conns, error) {
	lc := cfg.Listen
	lc.NoAccept = false
	srv, err := Listen(lc)
	if err != nil {
		return nil, err
	}
	c := &Conns{Servers: []*Server{srv}}
	if c.Clients, err = Dial(ctx, srv.Addr(), cfg.Conns, DialConfig{}); err != nil {
		c.Close()
		return nil, err
	}
	if err := srv.WaitAccepted(cfg.Conns, 5*time.Second); err != nil {
		c.Close()
		return nil, err
	}
	payload := make([]byte, cfg.Bytes)
	for _, cl := range c.Clients.Conns {
		cl.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := cl.Write(payload); err != nil {
			c.Close()
			return nil, fmt.Errorf("writing %d bytes: %w", cfg.Bytes, err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, sc := range srv.Conns() {
		for {
			n, err := RecvQueue(sc)
			if err != nil {
				c.Close()
				return nil, err
			}
			if n == cfg.Bytes {
				break
			}
			if time.Now().After(deadline) {
				c.Close()
				return nil, fmt.Errorf("receive queue holds %d of %d bytes after 5s", n, cfg.Bytes)
			}
			time.Sleep(time.Millisecond)
		}
	}
	return c, nil
}

// Backlogged is a listener that never accepts, with a full accept queue and more connections knocking.
type Backlogged struct {
	Server *Server
	// Queued are the Backlog+1 client connections that completed the handshake and sit in the accept queue.
	Queued *Clients
	// pending are raw sockets whose SYNs the kernel drops (ListenOverflows, ListenDrops) and retransmits.
	pending []int
}

// Close closes every connection and the listener.
func (b *Backlogged) Close() error {
	err := b.Queued.Close()
	for _, fd := range b.pending {
		err = errors.Join(err, unix.Close(fd))
	}
	b.pending = nil
	return errors.Join(err, b.Server.Close())
}

// Pending is the number of connections still trying to get in.
func (b *Backlogged) Pending() int { return len(b.pending) }

// FullAcceptQueue opens a listener with the given backlog (addr as in ListenConfig) that never accepts,
// fills its accept queue with backlog+1 connections (the kernel's limit: sk_acceptq_is_full is ack_backlog >
// max_ack_backlog), then starts pending more connects that do not wait: their SYNs are dropped and counted
// as listen overflows and drops, and retransmitted by the kernel until Close.
func FullAcceptQueue(ctx context.Context, addr string, backlog, pending int) (*Backlogged, error) {
	if backlog <= 0 {
		return nil, fmt.Errorf("backlog must be positive, got %d", backlog)
	}
	srv, err := Listen(ListenConfig{Addr: addr, Backlog: backlog, NoAccept: true})
	if err != nil {
		return nil, err
	}
	b := &Backlogged{Server: srv}
	if b.Queued, err = Dial(ctx, srv.Addr(), backlog+1, DialConfig{}); err != nil {
		b.Close()
		return nil, err
	}
	ap, err := netip.ParseAddrPort(srv.Addr())
	if err != nil {
		b.Close()
		return nil, err
	}
	for range pending {
		fd, err := socketFor(ap)
		if err != nil {
			b.Close()
			return nil, err
		}
		b.pending = append(b.pending, fd)
		if err := unix.SetNonblock(fd, true); err != nil {
			b.Close()
			return nil, fmt.Errorf("setting O_NONBLOCK: %w", err)
		}
		if err := unix.Connect(fd, sockaddr(ap)); err != nil && !errors.Is(err, unix.EINPROGRESS) {
			b.Close()
			return nil, fmt.Errorf("starting connect to %s: %w", ap, err)
		}
	}
	return b, nil
}

// AcceptQueue reports a listening socket's accept queue: its length and its limit (what ss shows as Recv-Q
// and Send-Q of a LISTEN socket). For a listener, the kernel's tcp_info carries them in tcpi_unacked and
// tcpi_sacked (tcp_get_info in net/ipv4/tcp.c).
func AcceptQueue(l *net.TCPListener) (length, limit int, err error) {
	rc, err := l.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var info *unix.TCPInfo
	var ierr error
	if err := rc.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil {
		return 0, 0, err
	}
	if ierr != nil {
		return 0, 0, fmt.Errorf("getsockopt(TCP_INFO): %w", ierr)
	}
	return int(info.Unacked), int(info.Sacked), nil
}

// FanoutConfig describes many connections spread over many listening ports.
type FanoutConfig struct {
	// Host is the address the listeners bind and the clients dial, 127.0.0.1 when empty.
	Host string
	// Ports is the number of listeners, each on a port of its own: BasePort, BasePort+1, ... or, when
	// BasePort is 0, ports the kernel picks.
	Ports    int
	BasePort int
	// Conns is the number of connections in all, spread round-robin over the ports.
	Conns int
	// NoAccept leaves the connections in the listeners' accept queues: the server ends then cost no
	// descriptor, and they are still ESTABLISHED sockets for sock_diag and ss. Each queue must hold
	// Conns/Ports+1 at most (the backlog is 4096, capped by net.core.somaxconn).
	NoAccept bool
	// ListenOnly opens only the listeners, DialOnly only the connections (to BasePort.. on Host, opened
	// by another Fanout, possibly in another process), so that the descriptors spread over processes.
	ListenOnly, DialOnly bool
}

// Fanout opens cfg.Ports listeners and cfg.Conns connections spread over them, e.g. 20,000 connections over
// 2,000 ports for a cardinality test. With both ends in this process and accepting it needs about
// 2×Conns+Ports descriptors (Conns+Ports with NoAccept): call RaiseNoFile first.
func Fanout(ctx context.Context, cfg FanoutConfig) (*Conns, error) {
	if cfg.Ports <= 0 {
		return nil, fmt.Errorf("ports must be positive, got %d", cfg.Ports)
	}
	if cfg.DialOnly && cfg.BasePort == 0 {
		return nil, errors.New("DialOnly needs BasePort")
	}
	host := cfg.Host
	if host == "" {
		host = "127.0.0.1"
	}
	c := &Conns{}
	addrs := make([]string, 0, cfg.Ports)
	for i := range cfg.Ports {
		port := 0
		if cfg.BasePort > 0 {
			port = cfg.BasePort + i
		}
		addr := net.JoinHostPort(host, strconv.Itoa(port))
		if cfg.DialOnly {
			addrs = append(addrs, addr)
			continue
		}
		s, err := Listen(ListenConfig{Addr: addr, NoAccept: cfg.NoAccept})
		if err != nil {
			c.Close()
			return nil, err
		}
		c.Servers = append(c.Servers, s)
		addrs = append(addrs, s.Addr())
	}
	if cfg.ListenOnly {
		return c, nil
	}
	var err error
	if c.Clients, err = DialEach(ctx, addrs, cfg.Conns, DialConfig{}); err != nil {
		c.Close()
		return nil, err
	}
	if cfg.NoAccept {
		return c, nil
	}
	for i, s := range c.Servers {
		want := cfg.Conns / cfg.Ports
		if i < cfg.Conns%cfg.Ports {
			want++
		}
		if err := s.WaitAccepted(want, 10*time.Second); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

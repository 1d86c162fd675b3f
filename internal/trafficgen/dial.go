package trafficgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DialConfig describes client connections.
type DialConfig struct {
	// RcvBuf and SndBuf, when positive, are set with SO_RCVBUF / SO_SNDBUF before connect().
	RcvBuf, SndBuf int
	// Timeout bounds each connect; 5s when zero.
	Timeout time.Duration
}

// Clients is a set of client connections; Close closes them all.
type Clients struct {
	Conns []*net.TCPConn
}

// Dial opens n connections to addr, spreading nothing: see Fanout for many ports. TCP_NODELAY is on, so each
// Write leaves as its own segment. On error, the connections opened so far are closed.
func Dial(ctx context.Context, addr string, n int, cfg DialConfig) (*Clients, error) {
	return DialEach(ctx, []string{addr}, n, cfg)
}

// DialEach opens n connections spread round-robin over addrs (connection i goes to addrs[i%len(addrs)]).
func DialEach(ctx context.Context, addrs []string, n int, cfg DialConfig) (*Clients, error) {
	if len(addrs) == 0 {
		return nil, errors.New("no address to dial")
	}
	d := dialer(cfg)
	c := &Clients{Conns: make([]*net.TCPConn, 0, n)}
	for i := range n {
		// Dialing happens on the calling goroutine: see the package comment on namespaces.
		conn, err := d.DialContext(ctx, "tcp", addrs[i%len(addrs)])
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("dialing connection %d of %d to %s: %w", i+1, n, addrs[i%len(addrs)], err)
		}
		tc := conn.(*net.TCPConn)
		if err := tc.SetNoDelay(true); err != nil {
			tc.Close()
			c.Close()
			return nil, fmt.Errorf("setting TCP_NODELAY: %w", err)
		}
		c.Conns = append(c.Conns, tc)
	}
	return c, nil
}

func dialer(cfg DialConfig) *net.Dialer {
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return &net.Dialer{
		Timeout: timeout,
		// Keepalives would add segments the tests do not account for.
		KeepAlive: -1,
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				if cfg.RcvBuf > 0 {
					serr = errors.Join(serr, unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, cfg.RcvBuf))
				}
				if cfg.SndBuf > 0 {
					serr = errors.Join(serr, unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, cfg.SndBuf))
				}
			})
			return errors.Join(err, serr)
		},
	}
}

// Close closes every connection.
func (c *Clients) Close() error {
	if c == nil {
		return nil
	}
	var err error
	for _, conn := range c.Conns {
		err = errors.Join(err, conn.Close())
	}
	c.Conns = nil
	return err
}

// tryWrite writes b once without blocking and reports how many bytes went; a full send buffer is not an
// error, just 0 bytes.
func tryWrite(c *net.TCPConn, b []byte) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var werr error
	err = rc.Write(func(fd uintptr) bool {
		n, werr = unix.Write(int(fd), b)
		return true // never wait for writability: the caller moves on to the next connection
	})
	if err != nil {
		return 0, err
	}
	if errors.Is(werr, unix.EAGAIN) {
		return 0, nil
	}
	if n < 0 {
		n = 0
	}
	return n, werr
}

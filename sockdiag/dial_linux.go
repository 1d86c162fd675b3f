//go:build linux

package sockdiag

import (
	"os"
	"syscall"
	"time"
	"unsafe"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Dial opens a netlink sock_diag socket, in the network namespace cfg.NetNS if set. cfg may be nil.
func Dial(cfg *Config) (*Client, error) {
	var ns int
	if cfg != nil {
		ns = cfg.NetNS
	}
	return newClient(cfg, func() (transport, error) { return dialRaw(ns) })
}

// rawTransport sends through netlink.Conn but reads with its own recvfrom loop into the Client's one
// buffer. netlink.Conn.Execute (v1.11.2) peeks and allocates a buffer per datagram, a Message per socket,
// and gathers the whole dump in memory: more than twice the time of a raw loop, an allocation per socket and
// a peak RSS that grows with the dump. This transport stays close to the raw loop with a fixed number of
// allocations per dump whatever its size; sockdiag/bench.sh measures both side by side (figures in the
// README).
type rawTransport struct {
	*netlink.Conn
	rc     syscall.RawConn
	readFn func(fd uintptr) bool // t.read bound once, so a Recv does not allocate a closure

	p     []byte
	n     int
	errno syscall.Errno
}

func dialRaw(netns int) (*rawTransport, error) {
	conn, err := netlink.Dial(netlinkSockDiag, &netlink.Config{NetNS: netns})
	if err != nil {
		return nil, err
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, err
	}
	t := &rawTransport{Conn: conn, rc: rc}
	t.readFn = t.read
	return t, nil
}

func (t *rawTransport) Recv(b []byte) (int, error) {
	t.p = b
	err := t.rc.Read(t.readFn)
	t.p = nil
	if err != nil {
		return 0, err
	}
	if t.errno != 0 {
		return 0, os.NewSyscallError("recvfrom", t.errno)
	}
	return t.n, nil
}

// read is one recvfrom(2) on the non-blocking socket; it returns false to wait in the runtime poller.
// MSG_TRUNC makes netlink return the datagram's full length, so a truncation cannot go unnoticed. The
// raw system call avoids unix.Recvfrom's allocation of the sender address.
func (t *rawTransport) read(fd uintptr) bool {
	for {
		n, _, e := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(unsafe.SliceData(t.p))), uintptr(len(t.p)),
			unix.MSG_TRUNC, 0, 0)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		t.n, t.errno = int(n), e
		return true
	}
}

func (t *rawTransport) SetDeadline(d time.Time) error { return t.Conn.SetDeadline(d) }

//go:build linux

// Package benchref holds what the netlink benchmarks (sockdiag, bpf/sockiter, collector) measure against:
// a plain recvfrom loop with a reused buffer that only counts messages (the floor: what the kernel costs),
// and mdlayher/netlink's Execute, which gathers the whole dump into memory.
package benchref

import (
	"encoding/binary"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/sockbuf/sockbuf_exporter/sockdiag"
)

// Raw is a blocking netlink sock_diag socket read with plain system calls.
type Raw struct {
	fd  int
	seq uint32
	buf []byte
	req []byte
}

// NewRaw opens the socket in the calling thread's network namespace.
func NewRaw() (*Raw, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind: %w", err)
	}
	return &Raw{fd: fd, buf: make([]byte, sockdiag.MinBufferSize)}, nil
}

// Close closes the socket.
func (r *Raw) Close() error { return unix.Close(r.fd) }

// Dump sends req and reads the reply to NLMSG_DONE, counting messages and bytes without decoding them.
func (r *Raw) Dump(req sockdiag.Request) (msgs, bytes int, err error) {
	r.seq++
	r.req = req.AppendMessage(r.req[:0], r.seq, 0)
	if err := unix.Sendto(r.fd, r.req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, 0, fmt.Errorf("sendto: %w", err)
	}
	for {
		n, _, err := unix.Recvfrom(r.fd, r.buf, 0)
		if err != nil {
			return msgs, bytes, fmt.Errorf("recvfrom: %w", err)
		}
		bytes += n
		for b := r.buf[:n]; len(b) >= 16; {
			l := int(binary.NativeEndian.Uint32(b))
			switch binary.NativeEndian.Uint16(b[4:]) {
			case unix.NLMSG_DONE:
				return msgs, bytes, nil
			case unix.NLMSG_ERROR:
				return msgs, bytes, fmt.Errorf("NLMSG_ERROR")
			}
			msgs++
			if l < 16 || (l+3)&^3 > len(b) {
				break
			}
			b = b[(l+3)&^3:]
		}
	}
}

// Execute dumps req through netlink.Conn.Execute, which returns the whole dump as one []netlink.Message,
// then decodes every message.
func Execute(conn *netlink.Conn, req sockdiag.Request, fn func(*sockdiag.Socket)) (int, error) {
	typ, payload := req.AppendPayload(nil)
	msgs, err := conn.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: netlink.HeaderFlags(sockdiag.RequestFlags)},
		Data:   payload,
	})
	if err != nil {
		return 0, err
	}
	var s sockdiag.Socket
	for _, m := range msgs {
		if err := sockdiag.DecodeSocket(m.Data, &s); err != nil {
			return 0, err
		}
		fn(&s)
	}
	return len(msgs), nil
}

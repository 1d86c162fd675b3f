package sockdiag

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
)

// Config configures a Client.
type Config struct {
	// NetNS is an open file descriptor of a network namespace (e.g. of /run/netns/<name> or
	// /proc/<pid>/ns/net) whose sockets to dump; 0 means the namespace of the calling thread. The caller
	// keeps it open for the Client's life: the Client reopens its socket after an aborted dump.
	NetNS int
	// BufferSize is the size of the one buffer every recvmsg reads into. It is raised to MinBufferSize,
	// which is also the default: the kernel fills dump datagrams up to 32 KiB, never more.
	BufferSize int
}

// MinBufferSize is the smallest and default Config.BufferSize. A dump datagram is at most
// SKB_WITH_OVERHEAD(32768) bytes (net/netlink/af_netlink.c caps max_recvmsg_len there), so 32 KiB always
// holds one whole.
const MinBufferSize = 32 << 10

// maxRetries bounds how often Dump starts over after the kernel marked a dump inconsistent.
const maxRetries = 3

// DumpStats describes one Dump.
type DumpStats struct {
	Sockets      int  // sockets handed to the callback by the last attempt
	Retries      int  // attempts started over because of NLM_F_DUMP_INTR
	Inconsistent bool // NLM_F_DUMP_INTR persisted after the retries; the data was delivered anyway
	Bytes        int  // netlink bytes read by the last attempt
}

// transport is the netlink socket under a Client: the real one reads with raw recvmsg, tests script
// replies through nltest.
type transport interface {
	// Send sends a request as netlink.Conn.Send does, returning it with sequence and port id filled in.
	Send(m netlink.Message) (netlink.Message, error)
	// Recv reads one datagram into b and returns its full length, which exceeds len(b) if it was
	// truncated. io.EOF means no more datagrams will come.
	Recv(b []byte) (int, error)
	SetDeadline(t time.Time) error
	Close() error
}

// Client dumps sockets over one netlink sock_diag socket. Its methods are safe for concurrent use; dumps
// run one at a time.
type Client struct {
	dial func() (transport, error)

	mu  sync.Mutex // serializes dumps; guards everything below but tmu's fields
	buf []byte
	req []byte
	dec Decoder
	// unspec records whether the kernel takes the single-walk FamilyUnspec request: 0 unknown, 1 yes,
	// -1 no (then both families are dumped one after the other).
	unspec int8

	tmu      sync.Mutex // guards t, deadline, limit and dumpGen, so SetDeadline and a context can reach a dump in progress
	t        transport
	deadline time.Time // SetDeadline's
	limit    time.Time // the deadline of the DumpContext in progress, in the past once its context ended; zero when none
	dumpGen  uint64    // counts DumpContext calls, so that a late cancellation cannot reach the next dump
}

// expired is a deadline in the past: set on a socket, it makes a blocked read return at once.
var expired = time.Unix(1, 0)

func newClient(cfg *Config, dial func() (transport, error)) (*Client, error) {
	size := MinBufferSize
	if cfg != nil && cfg.BufferSize > size {
		size = cfg.BufferSize
	}
	c := &Client{dial: dial, buf: make([]byte, size), req: make([]byte, 0, sizeofReqV1)}
	if _, err := c.transport(); err != nil {
		return nil, err
	}
	return c, nil
}

// Close closes the netlink socket.
func (c *Client) Close() error {
	c.tmu.Lock()
	defer c.tmu.Unlock()
	if c.t == nil {
		return nil
	}
	err := c.t.Close()
	c.t = nil
	return err
}

// SetDeadline bounds every read and write of this and later dumps; a dump that runs past it fails with an
// error that matches os.ErrDeadlineExceeded. The zero time removes the deadline.
func (c *Client) SetDeadline(t time.Time) error {
	c.tmu.Lock()
	defer c.tmu.Unlock()
	c.deadline = t
	return c.applyDeadline()
}

// applyDeadline sets the earlier of SetDeadline's deadline and the dump's on the open socket. c.tmu is held.
func (c *Client) applyDeadline() error {
	if c.t == nil {
		return nil
	}
	return c.t.SetDeadline(c.effectiveDeadline())
}

// effectiveDeadline is the earlier non-zero one of SetDeadline's deadline and the dump's. c.tmu is held.
func (c *Client) effectiveDeadline() time.Time {
	if c.limit.IsZero() || (!c.deadline.IsZero() && c.deadline.Before(c.limit)) {
		return c.deadline
	}
	return c.limit
}

// setLimit makes d the deadline of the dump in progress, if that is still dump gen.
func (c *Client) setLimit(gen uint64, d time.Time) error {
	c.tmu.Lock()
	defer c.tmu.Unlock()
	if gen != c.dumpGen {
		return nil
	}
	c.limit = d
	return c.applyDeadline()
}

// transport returns the open socket, dialing a new one if the last dump was aborted.
func (c *Client) transport() (transport, error) {
	c.tmu.Lock()
	defer c.tmu.Unlock()
	if c.t != nil {
		return c.t, nil
	}
	t, err := c.dial()
	if err != nil {
		return nil, fmt.Errorf("opening netlink sock_diag socket: %w", err)
	}
	if d := c.effectiveDeadline(); !d.IsZero() {
		if err := t.SetDeadline(d); err != nil {
			t.Close()
			return nil, fmt.Errorf("setting deadline: %w", err)
		}
	}
	c.t = t
	return t, nil
}

// abort closes a socket left in the middle of a dump: the kernel would answer the next request with
// EBUSY until the rest was read, and reading it costs as much as a new dump.
func (c *Client) abort() {
	c.tmu.Lock()
	defer c.tmu.Unlock()
	if c.t != nil {
		c.t.Close()
		c.t = nil
	}
}

// Dump streams every TCP socket that matches req to fn, in the order the kernel walks them. The *Socket is
// reused: it is valid only during fn. An error from fn stops the dump and is returned wrapped.
//
// When the kernel marks the dump inconsistent (NLM_F_DUMP_INTR), Dump stops calling fn and starts over, at
// most 3 times; the last attempt is delivered whole and reported as Inconsistent. Sockets of a restarted
// attempt come again with a higher Socket.Attempt, so a caller that sums must reset when it changes.
func (c *Client) Dump(req Request, fn func(*Socket) error) (DumpStats, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dump(req, fn)
}

// DumpContext is Dump bounded by ctx: its deadline applies to the dump (together with SetDeadline's, the
// earlier one wins), and its end interrupts a read blocked in the kernel. A dump stopped that way returns
// an error that matches both os.ErrDeadlineExceeded and ctx.Err(), so errors.Is(err,
// context.DeadlineExceeded) holds when the deadline passed.
func (c *Client) DumpContext(ctx context.Context, req Request, fn func(*Socket) error) (DumpStats, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var st DumpStats
	err := c.withContext(ctx, "dumping "+familyName(req.Family)+" sockets", func() (err error) {
		st, err = c.dump(req, fn)
		return err
	})
	return st, err
}

// withContext runs op (which talks to the kernel) with ctx's deadline on the socket and ctx's end
// interrupting a blocked read; what names the operation in errors. The caller holds c.mu.
func (c *Client) withContext(ctx context.Context, what string, op func() error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	deadline, _ := ctx.Deadline()
	c.tmu.Lock()
	c.dumpGen++
	gen := c.dumpGen
	c.limit = deadline
	err := c.applyDeadline()
	c.tmu.Unlock()
	if err != nil {
		return fmt.Errorf("setting the deadline: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.setLimit(gen, expired) })
	err = op()
	stop()
	c.tmu.Lock()
	c.dumpGen++ // a cancellation still on its way finds another generation and does nothing
	c.limit = time.Time{}
	restoreErr := c.applyDeadline()
	c.tmu.Unlock()
	if err != nil {
		if cerr := contextError(ctx, deadline); cerr != nil && errors.Is(err, os.ErrDeadlineExceeded) {
			err = fmt.Errorf("%w (%w)", err, cerr)
		}
		return err
	}
	if restoreErr != nil {
		return fmt.Errorf("resetting the deadline after %s: %w", what, restoreErr)
	}
	return nil
}

// LookupContext asks the kernel for one socket, identified as a dump reported it (family, addresses,
// ports, bound interface and cookie), with the attributes ext, and hands it to fn: a request per socket, so
// that attributes costly to format for every socket (tcp_info) are fetched only for the few that need them.
// A socket closed since returns an error matching os.ErrNotExist. ctx bounds it as it bounds DumpContext.
func (c *Client) LookupContext(ctx context.Context, id *Socket, ext Ext, fn func(*Socket) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.withContext(ctx, "looking up a socket", func() error { return c.lookup(id, ext, fn) })
}

func (c *Client) lookup(id *Socket, ext Ext, fn func(*Socket) error) error {
	t, err := c.transport()
	if err != nil {
		return err
	}
	c.req = appendLookup(c.req[:0], id, ext)
	sent, err := t.Send(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(sockDiagByFamily), Flags: netlink.HeaderFlags(nlmFRequest)},
		Data:   c.req,
	})
	if err != nil {
		c.abort()
		return fmt.Errorf("sending a socket lookup: %w", err)
	}
	c.dec.Seq, c.dec.PID = sent.Header.Sequence, sent.Header.PID
	c.dec.StopOnInterrupt, c.dec.Attempt = false, 0
	// The reply is one message: the socket, or NLMSG_ERROR (ENOENT when it has gone).
	n, err := t.Recv(c.buf)
	switch {
	case err == nil && n == 0:
		err = ErrNoDone
	case err == nil && n > len(c.buf):
		err = fmt.Errorf("datagram of %d bytes does not fit the %d-byte buffer: %w", n, len(c.buf), ErrTruncated)
	}
	if err != nil {
		c.abort()
		return fmt.Errorf("looking up a socket: %w", err)
	}
	res, err := c.dec.Decode(c.buf[:n], fn)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("looking up socket %x: %w", id.Cookie, os.ErrNotExist)
		}
		return fmt.Errorf("looking up socket %x: %w", id.Cookie, err)
	}
	if res.Sockets != 1 {
		return fmt.Errorf("looking up socket %x: %d sockets in the reply: %w", id.Cookie, res.Sockets, ErrTruncated)
	}
	return nil
}

// contextError is ctx.Err(), or context.DeadlineExceeded if the deadline has passed but the context's timer
// has not fired yet: the socket's deadline, set to the same time, may fire first.
func contextError(ctx context.Context, deadline time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !deadline.IsZero() && !time.Now().Before(deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

func (c *Client) dump(req Request, fn func(*Socket) error) (DumpStats, error) {
	var st DumpStats
	for attempt := 0; ; attempt++ {
		st.Sockets, st.Bytes = 0, 0
		last := attempt == maxRetries
		intr, err := c.dumpFamilies(req, fn, attempt, last, &st)
		if err != nil || !intr {
			return st, err
		}
		if last {
			st.Inconsistent = true
			return st, nil
		}
		st.Retries++
	}
}

func (c *Client) dumpFamilies(req Request, fn func(*Socket) error, attempt int, last bool, st *DumpStats) (bool, error) {
	if req.Family != FamilyUnspec {
		return c.dumpOnce(req, fn, attempt, last, st)
	}
	if c.unspec >= 0 {
		intr, err := c.dumpOnce(req, fn, attempt, last, st)
		switch {
		case err == nil:
			c.unspec = 1
			return intr, nil
		case c.unspec == 0 && st.Sockets == 0 && isNotSupported(err):
			c.unspec = -1 // this kernel only has per-family dumps
		default:
			return intr, err
		}
	}
	var intr bool
	for _, fam := range [...]uint8{FamilyInet, FamilyInet6} {
		r := req
		r.Family = fam
		i, err := c.dumpOnce(r, fn, attempt, last, st)
		if err != nil {
			return false, err
		}
		if i && !last {
			return true, nil
		}
		intr = intr || i
	}
	return intr, nil
}

// dumpOnce sends one dump request and decodes its reply, reporting whether it was interrupted.
func (c *Client) dumpOnce(req Request, fn func(*Socket) error, attempt int, last bool, st *DumpStats) (bool, error) {
	t, err := c.transport()
	if err != nil {
		return false, err
	}
	var typ uint16
	typ, c.req = req.AppendPayload(c.req[:0])
	sent, err := t.Send(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: netlink.HeaderFlags(RequestFlags)},
		Data:   c.req,
	})
	if err != nil {
		c.abort()
		return false, fmt.Errorf("sending %s dump request: %w", familyName(req.Family), err)
	}
	c.dec.Seq, c.dec.PID = sent.Header.Sequence, sent.Header.PID
	c.dec.StopOnInterrupt = !last
	c.dec.Attempt = attempt

	var intr bool
	for {
		n, err := t.Recv(c.buf)
		switch {
		case errors.Is(err, io.EOF) || (err == nil && n == 0):
			err = ErrNoDone
		case err == nil && n > len(c.buf):
			err = fmt.Errorf("datagram of %d bytes does not fit the %d-byte buffer: %w", n, len(c.buf), ErrTruncated)
		}
		if err != nil {
			c.abort()
			return false, fmt.Errorf("dumping %s sockets: %w", familyName(req.Family), err)
		}
		st.Bytes += n
		res, err := c.dec.Decode(c.buf[:n], fn)
		st.Sockets += res.Sockets
		intr = intr || res.Interrupted
		switch {
		case err != nil:
			// After NLMSG_ERROR the kernel sends nothing more, but after a callback error or a bad
			// message the rest of the dump is still queued.
			c.abort()
			return false, fmt.Errorf("dumping %s sockets: %w", familyName(req.Family), err)
		case intr && !last:
			c.abort()
			return true, nil
		case res.Done:
			return intr, nil
		}
	}
}

func familyName(f uint8) string {
	switch f {
	case FamilyInet:
		return "AF_INET"
	case FamilyInet6:
		return "AF_INET6"
	case FamilyUnspec:
		return "AF_INET and AF_INET6"
	default:
		return fmt.Sprintf("family %d", f)
	}
}

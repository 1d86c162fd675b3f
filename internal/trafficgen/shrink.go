package trafficgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/sockbuf/sockbuf_exporter/internal/sysutil"
)

// Defaults of Shrink: what each connection holds unread before its buffer shrinks, and the buffer it
// shrinks to (the kernel doubles it).
const (
	DefaultShrinkFill   = 32 << 10
	DefaultShrinkRcvBuf = 4096
)

// Shrink sets the stage for RcvPruned on every connection, without depending on timing: each client sends
// fill bytes, which the server leaves unread, and then the server lowers its socket's SO_RCVBUF to rcvbuf,
// far below what the queue already holds. The window the receiver advertised stays open (Linux does not
// shrink an advertised window), so what the clients send next arrives within it, finds the queue over its
// buffer even after collapsing (the unread data alone is larger than the buffer), and the kernel prunes
// and drops it: PruneCalled and RcvPruned (and TCPRcvQDrop) rise with every segment of the following Run.
// The load must have been opened with autotuned buffers (Options.RcvBuf < 0) for fill to fit the window.
func (l *Load) Shrink(ctx context.Context, fill, rcvbuf int) error {
	if fill <= 0 {
		fill = DefaultShrinkFill
	}
	if rcvbuf <= 0 {
		rcvbuf = DefaultShrinkRcvBuf
	}
	payload := make([]byte, fill)
	for _, c := range l.clients.Conns {
		if err := writeAll(c, payload); err != nil {
			return fmt.Errorf("filling the queue: %w", err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, sc := range l.server.Conns() {
		for {
			n, err := RecvQueue(sc)
			if err != nil {
				return err
			}
			if n >= fill {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("receive queue holds %d of %d bytes after the fill: %w", n, fill, context.DeadlineExceeded)
			}
			time.Sleep(time.Millisecond)
		}
		if err := sc.SetReadBuffer(rcvbuf); err != nil {
			return fmt.Errorf("shrinking SO_RCVBUF: %w", err)
		}
	}
	return nil
}

// PruneData drives RcvPruned (data already received thrown away) in the calling thread's namespace: a load
// with autotuned buffers, Shrink, then 1-byte writes until opts.Until holds or a bound of opts is reached.
// opts.RcvBuf and opts.Renew are ignored.
func PruneData(ctx context.Context, opts Options) (Result, error) {
	opts.RcvBuf = -1
	opts.Renew = 0
	l, err := NewLoad(ctx, opts)
	if err != nil {
		return Result{}, err
	}
	if err := l.Shrink(ctx, 0, 0); err != nil {
		return Result{}, errors.Join(err, l.Close())
	}
	res, err := l.Run(ctx)
	return res, errors.Join(err, l.Close())
}

// holeLength is the payload size PruneOfo never lets through: no other write of the load has it.
const holeLength = 1000

// PruneOfo drives OfoPruned (out-of-order data thrown away) in the calling thread's namespace, every time:
// each connection of a load with autotuned buffers first sends a holeLength-byte segment that AddHoleRule
// drops, again and again (with net.ipv4.tcp_retrans_collapse off in the namespace for the run, a
// retransmission keeps its size), then DefaultShrinkFill bytes that wait out of order behind the hole. Once
// they have arrived, the server shrinks its buffers below them (as in Shrink), so that collapsing cannot
// bring the socket back under its buffer. Then the rule goes, the hole's next retransmission arrives, and
// the kernel prunes the out-of-order data behind it. It needs nft; the sysctl is put back when it returns.
func PruneOfo(ctx context.Context, opts Options) (Result, error) {
	opts.RcvBuf, opts.Renew = -1, 0
	restore, err := sysutil.SetSysctl("net/ipv4/tcp_retrans_collapse", "0")
	if err != nil {
		return Result{}, err
	}
	l, err := NewLoad(ctx, opts)
	if err != nil {
		return Result{}, errors.Join(err, restore())
	}
	remove, err := AddHoleRule(l.Port(), holeLength)
	if err != nil {
		return Result{}, errors.Join(err, l.Close(), restore())
	}
	fail := func(err error) (Result, error) { return Result{}, errors.Join(err, remove(), l.Close(), restore()) }
	before, err := ReadNetstat()
	if err != nil {
		return fail(err)
	}
	hole, fill := make([]byte, holeLength), make([]byte, DefaultShrinkFill)
	for _, c := range l.clients.Conns {
		if err := writeAll(c, hole); err != nil {
			return fail(err)
		}
		if err := writeAll(c, fill); err != nil {
			return fail(err)
		}
	}
	// Every connection's fill waits in its out-of-order queue once TCPOFOQueue has counted it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		now, err := ReadNetstat()
		if err != nil {
			return fail(err)
		}
		if q := now.Sub(before)["TcpExt"]["TCPOFOQueue"]; q >= uint64(len(l.clients.Conns)) {
			break
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("out-of-order segments did not arrive within 5s: %w", context.DeadlineExceeded))
		}
		time.Sleep(time.Millisecond)
	}
	for _, sc := range l.server.Conns() {
		if err := sc.SetReadBuffer(DefaultShrinkRcvBuf); err != nil {
			return fail(fmt.Errorf("shrinking SO_RCVBUF: %w", err))
		}
	}
	// Now let the hole's retransmission through. The kernel prunes only out-of-order data that lies after
	// the segment being received, so it is this segment, arriving over a full buffer, that makes the kernel
	// throw the fill away.
	if err := remove(); err != nil {
		// Once more, so that the table is not left behind in the namespace.
		return Result{}, errors.Join(err, remove(), l.Close(), restore())
	}
	res, err := l.Run(ctx)
	return res, errors.Join(err, l.Close(), restore())
}

// writeAll writes b within 5 seconds.
func writeAll(c *net.TCPConn, b []byte) error {
	if err := c.SetWriteDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return err
	}
	if _, err := c.Write(b); err != nil {
		return fmt.Errorf("writing %d bytes: %w", len(b), err)
	}
	return c.SetWriteDeadline(time.Time{})
}

// Package sockpop opens one known population of loopback TCP sockets, the same for every test that compares
// the two sockets engines (bpf/sockiter's and collector's): listeners and established sockets, IPv4 and IPv6,
// full and pinned receive buffers, a full accept queue. Run it inside a network namespace the test created.
package sockpop

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
	"github.com/sockbuf/sockbuf_exporter/internal/trafficgen"
)

// Population is the open sockets; Close closes them all.
type Population struct {
	Pinned int // sockets whose SO_RCVBUF was set (listeners excluded: they are not in groups)
	Ports  struct {
		Plain   uint16 // the IPv4 listener with unread data, and the port the pinned clients dialled
		Full    uint16 // the IPv6 listener pinned at 8192 whose connections are full
		Pinned  uint16 // the IPv6 listener pinned at 65536
		Backlog uint16 // the listener with a full accept queue
	}
	closers []io.Closer
}

// Close closes every socket of the population, the last opened first.
func (p *Population) Close() error {
	var errs []error
	for i := len(p.closers) - 1; i >= 0; i-- {
		errs = append(errs, p.closers[i].Close())
	}
	return errors.Join(errs...)
}

// Open opens, in the calling thread's namespace: an IPv4 listener whose 8 connections hold 30,000 unread
// bytes each; an IPv6 listener pinned at SO_RCVBUF 8192 whose 6 connections are filled until the writers
// block (full receive buffers); an IPv6 listener pinned at 65536 with 5 connections holding 1,000 bytes; 4
// clients pinned at SO_RCVBUF 32768 to the first listener; and a listener with a full accept queue and two
// connections stuck in SYN-SENT.
func Open(ctx context.Context) (*Population, error) {
	p := &Population{}
	fail := func(err error) (*Population, error) { p.Close(); return nil, err }

	plain, err := trafficgen.Unread(ctx, trafficgen.UnreadConfig{Listen: trafficgen.ListenConfig{Addr: "127.0.0.1:0"}, Conns: 8, Bytes: 30000})
	if err != nil {
		return fail(err)
	}
	p.closers = append(p.closers, plain)
	p.Ports.Plain = uint16(plain.Servers[0].Port())

	full, err := trafficgen.Listen(trafficgen.ListenConfig{Addr: "[::1]:0", RcvBuf: 8192})
	if err != nil {
		return fail(err)
	}
	p.closers = append(p.closers, full)
	p.Ports.Full = uint16(full.Port())
	fc, err := trafficgen.Dial(ctx, full.Addr(), 6, trafficgen.DialConfig{})
	if err != nil {
		return fail(err)
	}
	p.closers = append(p.closers, fc)
	if err := full.WaitAccepted(6, 5*time.Second); err != nil {
		return fail(err)
	}
	p.Pinned += 6
	junk := make([]byte, 4<<20)
	for _, c := range fc.Conns {
		c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := c.Write(junk); err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return fail(fmt.Errorf("filling a pinned receive buffer: the write should block, got %v", err))
		}
	}

	pinned, err := trafficgen.Unread(ctx, trafficgen.UnreadConfig{Listen: trafficgen.ListenConfig{Addr: "[::1]:0", RcvBuf: 65536}, Conns: 5, Bytes: 1000})
	if err != nil {
		return fail(err)
	}
	p.closers = append(p.closers, pinned)
	p.Ports.Pinned = uint16(pinned.Servers[0].Port())
	p.Pinned += 5

	pc, err := trafficgen.Dial(ctx, plain.Servers[0].Addr(), 4, trafficgen.DialConfig{RcvBuf: 32768})
	if err != nil {
		return fail(err)
	}
	p.closers = append(p.closers, pc)
	p.Pinned += 4

	bl, err := trafficgen.FullAcceptQueue(ctx, "127.0.0.1:0", 2, 2)
	if err != nil {
		return fail(err)
	}
	p.closers = append(p.closers, bl)
	p.Ports.Backlog = uint16(bl.Server.Port())
	return p, nil
}

// OpenIn opens the population inside ns, failing the test on an error, and closes it when the test ends.
func OpenIn(t testing.TB, ns *testenv.NetNS) *Population {
	t.Helper()
	var p *Population
	if err := ns.Do(func() (err error) {
		p, err = Open(context.Background())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("closing the socket population: %v", err)
		}
	})
	return p
}

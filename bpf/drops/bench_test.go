//go:build linux

package drops

import (
	"context"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
	"github.com/sockbuf/sockbuf_exporter/internal/trafficgen"
)

// The benchmarks compare the same loopback traffic in a fresh namespace without and with the tracer
// attached (sub-benchmarks off and on); bench.sh runs them and prints the ratios and the added CPU per drop.
// Loopback delivers a packet in the sender's own system call (softirq on the sending CPU), so the sender's
// CPU time covers the receive path, the drop and the BPF program.

// conn is one established loopback connection in a fresh namespace.
type conn struct {
	ns      *testenv.NetNS
	srv     *trafficgen.Server
	clients *trafficgen.Clients
}

func newConn(b *testing.B) *conn {
	b.Helper()
	c := &conn{ns: testenv.NewNetNS(b)}
	err := c.ns.Do(func() (err error) {
		if c.srv, err = trafficgen.Listen(trafficgen.ListenConfig{}); err != nil {
			return err
		}
		if c.clients, err = trafficgen.Dial(context.Background(), c.srv.Addr(), 1, trafficgen.DialConfig{}); err != nil {
			return err
		}
		return c.srv.WaitAccepted(1, 5*time.Second)
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.clients.Close(); c.srv.Close() })
	return c
}

// tracer attaches a tracer for every namespace (the default, and the most work per drop) with the
// namespace described, so that each drop takes the client path: two map lookups before the count.
func (c *conn) tracer(b *testing.B) *Tracer {
	b.Helper()
	tr := openTracer(b, nil)
	ino, err := NetNSInode(c.ns.Path)
	if err != nil {
		b.Fatal(err)
	}
	if err := tr.SetListening(ino, []uint16{uint16(c.srv.Port())}); err != nil {
		b.Fatal(err)
	}
	return tr
}

// segment builds an IPv4+TCP segment from the server's port to the client's whose sequence number is far
// outside the client's receive window (before or after it, depending on the initial sequence numbers):
// tcp_validate_incoming drops it (tcp_old_sequence or tcp_invalid_sequence) on the client socket, counted in
// its sk_drops, and answers with at most two duplicate ACKs a second.
func segment(from, to uint16) []byte {
	p := make([]byte, 40)
	p[0], p[8], p[9] = 0x45, 64, unix.IPPROTO_TCP // version 4, IHL 5; TTL; protocol
	binary.BigEndian.PutUint16(p[2:], 40)
	copy(p[12:16], net.IPv4(127, 0, 0, 1).To4())
	copy(p[16:20], net.IPv4(127, 0, 0, 1).To4())
	t := p[20:]
	binary.BigEndian.PutUint16(t[0:], from)
	binary.BigEndian.PutUint16(t[2:], to)
	binary.BigEndian.PutUint32(t[4:], 0x7fff0000) // sequence: any, the client's window is 64 KiB somewhere else
	binary.BigEndian.PutUint32(t[8:], 1)
	t[12], t[13] = 5<<4, 0x10 // data offset 5 words; ACK
	binary.BigEndian.PutUint16(t[14:], 65535)
	// Checksum over the pseudo-header (addresses, protocol, TCP length) and the segment: loopback does not
	// vouch for packets from a raw socket, so the receiver checks it.
	var sum uint32
	for i := 12; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(p[i:]))
	}
	sum += unix.IPPROTO_TCP + 20
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(t[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(t[16:], ^uint16(sum))
	return p
}

// threadCPU is the calling thread's CPU time, system time included: on loopback that is where the
// receiving side's softirq work runs.
func threadCPU() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_THREAD, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// tracedAndNot runs fn as two sub-benchmarks on a fresh connection each: "off", without a tracer (tr is
// nil), and "on", with a tracer restricted to the connection's namespace.
func tracedAndNot(b *testing.B, fn func(b *testing.B, c *conn, tr *Tracer)) {
	for _, traced := range []bool{false, true} {
		name := "off"
		if traced {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			c := newConn(b)
			var tr *Tracer
			if traced {
				tr = c.tracer(b)
			}
			fn(b, c, tr)
		})
	}
}

// BenchmarkDropStorm injects b.N segments that the kernel drops on an established client socket, through
// a raw socket in the namespace, and reports the CPU time per drop.
func BenchmarkDropStorm(b *testing.B) {
	tracedAndNot(b, func(b *testing.B, c *conn, tr *Tracer) {
		local := uint16(c.clients.Conns[0].LocalAddr().(*net.TCPAddr).Port)
		pkt := segment(uint16(c.srv.Port()), local)
		skDrops := func() uint64 {
			mi, err := trafficgen.SocketMemInfo(c.clients.Conns[0])
			if err != nil {
				b.Fatal(err)
			}
			return uint64(mi.Drops)
		}
		before := skDrops()
		var elapsed, cpu time.Duration
		err := c.ns.Do(func() error {
			b.ResetTimer()
			start, startCPU := time.Now(), threadCPU()
			err := inject(pkt, b.N)
			elapsed, cpu = time.Since(start), threadCPU()-startCPU
			b.StopTimer()
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		dropped := skDrops() - before
		if dropped != uint64(b.N) {
			b.Fatalf("the client's sk_drops rose by %d for %d segments", dropped, b.N)
		}
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/drop")
		b.ReportMetric(float64(b.N)/elapsed.Seconds(), "drops/s")
		if tr == nil {
			return
		}
		s := read(b, tr)
		var counted uint64
		for _, d := range s.Drops {
			if d.Role == RoleClient && d.Port == uint16(c.srv.Port()) {
				counted += d.Packets
			}
		}
		if counted != dropped {
			b.Errorf("tracer counted %d drops on the client, its sk_drops %d", counted, dropped)
		}
		// Then, untimed, the kernel's own account of the program's run time (BPF_ENABLE_STATS, back off
		// when closed): the program's part of the cost, free of the scheduling noise of the A/B above.
		stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
		if err != nil {
			b.Fatalf("enabling BPF run-time statistics: %v", err)
		}
		defer stats.Close()
		prog := tr.coll.Programs["on_kfree_skb"]
		st0, err := prog.Stats()
		if err != nil {
			b.Fatal(err)
		}
		if err := c.ns.Do(func() error { return inject(pkt, min(b.N, 100_000)) }); err != nil {
			b.Fatal(err)
		}
		st1, err := prog.Stats()
		if err != nil {
			b.Fatal(err)
		}
		if n := st1.RunCount - st0.RunCount; n > 0 {
			b.ReportMetric(float64((st1.Runtime-st0.Runtime).Nanoseconds())/float64(n), "bpf-ns/drop")
		}
	})
}

// inject sends pkt n times through a raw socket of the calling thread's namespace.
func inject(pkt []byte, n int) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	dst := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	for range n {
		if err := unix.Sendto(fd, pkt, 0, dst); err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkNoDrops moves one byte back and forth over the connection (nothing is dropped, so the
// kfree_skb tracepoint never fires) and reports the CPU time per round trip.
func BenchmarkNoDrops(b *testing.B) {
	tracedAndNot(b, func(b *testing.B, c *conn, tr *Tracer) {
		if tr != nil {
			stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME)) // run counts need it
			if err != nil {
				b.Fatalf("enabling BPF run-time statistics: %v", err)
			}
			defer stats.Close()
		}
		runs := func() uint64 {
			if tr == nil {
				return 0
			}
			st, err := tr.coll.Programs["on_kfree_skb"].Stats()
			if err != nil {
				b.Fatal(err)
			}
			return st.RunCount
		}
		cl, sv := c.clients.Conns[0], c.srv.Conns()[0]
		buf := []byte{'x'}
		var cpu time.Duration
		// On a locked thread, so that the thread's CPU time is the loop's; the kernel answers a write
		// with the segment's delivery in the same call, so the read never waits.
		runs0 := runs()
		err := c.ns.Do(func() error {
			b.ResetTimer()
			startCPU := threadCPU()
			for range b.N {
				if _, err := cl.Write(buf); err != nil {
					return err
				}
				if _, err := sv.Read(buf); err != nil {
					return err
				}
			}
			cpu = threadCPU() - startCPU
			b.StopTimer()
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
		if tr != nil {
			// Program runs during the loop, all namespaces of the host included: ~0 per round trip.
			b.ReportMetric(float64(runs()-runs0)/float64(b.N), "bpf-runs/op")
		}
	})
}

// BenchmarkRead reads a tracer whose attributed map holds 2,000 groups (put there from user space): the
// cost of a scrape. Allocations are the result's slices only.
func BenchmarkRead(b *testing.B) {
	tr := openTracer(b, nil)
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		b.Fatal(err)
	}
	values := make([]uint64, ncpu)
	for i := range values {
		values[i] = 1
	}
	const groups = 2000
	for i := range groups {
		k := dropsDropKey{Cgroup: uint64(i), Reason: 20, Port: uint16(i), Role: uint8(RoleServer)}
		if err := tr.drops.Put(k, values); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		s, err := tr.Read()
		if err != nil {
			b.Fatal(err)
		}
		if len(s.Drops) < groups {
			b.Fatalf("read %d groups, want %d", len(s.Drops), groups)
		}
	}
}

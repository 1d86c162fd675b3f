//go:build linux

package sockdiag_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/sockbuf/sockbuf_exporter/internal/benchref"
	"github.com/sockbuf/sockbuf_exporter/internal/population"
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
	"github.com/sockbuf/sockbuf_exporter/sockdiag"
)

// BenchmarkDump dumps a population of idle loopback connections (SOCKDIAG_BENCH_CONNS, default 20,000,
// i.e. 40,000 sockets) in a namespace with its own small established-hash table, through:
//
//	raw      a plain recvfrom loop that only counts messages (the floor: the kernel's cost)
//	sockdiag Client.Dump, decoding every socket
//	execute  netlink.Conn.Execute, which gathers the dump in memory, then decoding
//	ss       `ss -tnmi` run in the namespace, output to /dev/null
//
// each with skmeminfo + tcp_info, and logs the ratios against raw. sockdiag/bench.sh runs the full
// 100,000 connections with peak RSS; run this one with
//
//	go test -run '^$' -bench BenchmarkDump -benchtime 20x ./sockdiag/
//
// holdEnv, set, turns the test binary into a holder of that many connections for BenchmarkDump.
const holdEnv = "SOCKDIAG_HOLD"

func TestMain(m *testing.M) {
	if v := os.Getenv(holdEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err == nil {
			err = population.Hold(n, os.Stdin, os.Stdout)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "holder:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func BenchmarkDump(b *testing.B) {
	conns := 20000
	if v := os.Getenv("SOCKDIAG_BENCH_CONNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("SOCKDIAG_BENCH_CONNS=%q: want a positive number", v)
		}
		conns = n
	}
	testenv.RequireRoot(b)
	ss := testenv.RequireBinary(b, "ss", "iproute2")
	// The dump walks the whole established-hash table of the namespace: a namespace created after this
	// gets a table of its own, 1024 buckets, so the host's sockets do not count.
	ns := testenv.NewIsolatedNetNS(b, 1024)
	// One process may hold only RLIMIT_NOFILE descriptors: holder processes (this test binary, see
	// TestMain) share the connections.
	start := time.Now()
	stop, err := population.Holders(conns, func(n int) *exec.Cmd {
		cmd := ns.Command(context.Background(), os.Args[0])
		cmd.Env = append(os.Environ(), holdEnv+"="+strconv.Itoa(n))
		return cmd
	})
	if err != nil {
		b.Fatalf("opening %d connections: %v", conns, err)
	}
	b.Cleanup(func() {
		if err := stop(); err != nil {
			b.Error(err)
		}
	})
	var raw *benchref.Raw
	if err := ns.Do(func() (err error) { raw, err = benchref.NewRaw(); return err }); err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	b.Logf("%d connections open after %v", conns, time.Since(start).Round(time.Millisecond))
	nsf, err := os.Open(ns.Path)
	if err != nil {
		b.Fatal(err)
	}
	defer nsf.Close()
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer devnull.Close()

	perOp := map[string]time.Duration{}
	record := func(b *testing.B, name string, sockets int) {
		perOp[name] = b.Elapsed() / time.Duration(b.N)
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*max(sockets, 1)), "ns/socket")
	}

	for _, fam := range []struct {
		name string
		f    uint8
	}{{"unspec", sockdiag.FamilyUnspec}, {"inet", sockdiag.FamilyInet}} {
		req := sockdiag.Request{Family: fam.f, Extensions: sockdiag.ExtSKMemInfo | sockdiag.ExtInfo}

		b.Run("raw/"+fam.name, func(b *testing.B) {
			var msgs int
			for b.Loop() {
				n, _, err := raw.Dump(req)
				if err != nil {
					b.Fatal(err)
				}
				msgs = n
			}
			record(b, "raw/"+fam.name, msgs)
		})

		b.Run("sockdiag/"+fam.name, func(b *testing.B) {
			c, err := sockdiag.Dial(&sockdiag.Config{NetNS: int(nsf.Fd())})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			var sum uint64
			fn := func(s *sockdiag.Socket) error {
				sum += uint64(s.SKMemInfo.RmemAlloc) + uint64(s.TCPInfo.RcvSpace) + uint64(s.Src.Port())
				return nil
			}
			var st sockdiag.DumpStats
			b.ReportAllocs()
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			for b.Loop() {
				if st, err = c.Dump(req, fn); err != nil {
					b.Fatal(err)
				}
			}
			runtime.ReadMemStats(&m1)
			record(b, "sockdiag/"+fam.name, st.Sockets)
			b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/float64(b.N*max(st.Sockets, 1)), "allocs/socket")
		})
	}

	b.Run("execute/inet", func(b *testing.B) {
		conn, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, &netlink.Config{NetNS: int(nsf.Fd())})
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		req := sockdiag.Request{Family: sockdiag.FamilyInet, Extensions: sockdiag.ExtSKMemInfo | sockdiag.ExtInfo}
		var n int
		var sum uint64
		b.ReportAllocs()
		for b.Loop() {
			if n, err = benchref.Execute(conn, req, func(s *sockdiag.Socket) { sum += uint64(s.SKMemInfo.RmemAlloc) }); err != nil {
				b.Fatal(err)
			}
		}
		record(b, "execute/inet", n)
	})

	b.Run("ss-tnmi", func(b *testing.B) {
		for b.Loop() {
			cmd := ns.Command(b.Context(), ss, "-tnmi")
			cmd.Stdout = devnull
			if err := cmd.Run(); err != nil {
				b.Fatal(err)
			}
		}
		record(b, "ss-tnmi", 2*conns)
	})

	ratio := func(a, c string) float64 { return float64(perOp[a]) / float64(perOp[c]) }
	b.Logf("sockets %d: raw/unspec %v, sockdiag/unspec %v (%.3fx raw), raw/inet %v, sockdiag/inet %v (%.3fx raw), "+
		"execute/inet %v (%.2fx raw), ss -tnmi %v (%.2fx sockdiag/unspec)",
		2*conns, perOp["raw/unspec"], perOp["sockdiag/unspec"], ratio("sockdiag/unspec", "raw/unspec"),
		perOp["raw/inet"], perOp["sockdiag/inet"], ratio("sockdiag/inet", "raw/inet"),
		perOp["execute/inet"], ratio("execute/inet", "raw/inet"), perOp["ss-tnmi"], ratio("ss-tnmi", "sockdiag/unspec"))
}

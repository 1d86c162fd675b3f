//go:build linux

// Command sockbench measures sockdiag on a large population, for sockdiag/bench.sh (run by hand, as root,
// inside a network namespace: `ip netns exec NS sockbench -conns 100000`). It opens the connections, then
// times, round after round and interleaved, a raw recvfrom loop, sockdiag's Dump, netlink's Execute and
// `ss -tnmi`, and prints medians, ratios and allocations. Then it starts itself again in -mode dump (or
// execute), a process that only dumps, and prints that process's peak RSS (VmHWM).
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/sockbuf/sockbuf_exporter/internal/benchref"
	"github.com/sockbuf/sockbuf_exporter/internal/population"
	"github.com/sockbuf/sockbuf_exporter/sockdiag"
)

var (
	conns  = flag.Int("conns", 100000, "loopback connections to open (two sockets each)")
	rounds = flag.Int("rounds", 7, "measurement rounds; medians are reported")
	mode   = flag.String("mode", "bench", "bench; or, used by bench: hold (keep -conns connections open until stdin closes), dump / execute (dump once, print peak RSS)")
	family = flag.String("family", "unspec,inet", "request families to measure: unspec (one walk of both), inet")
)

var req = sockdiag.Request{Extensions: sockdiag.ExtSKMemInfo | sockdiag.ExtInfo}

func main() {
	flag.Parse()
	log.SetFlags(0)
	switch *mode {
	case "bench":
		bench()
	case "dump", "execute":
		dumpOnly(*mode)
	case "hold":
		if err := population.Hold(*conns, os.Stdin, os.Stdout); err != nil {
			log.Fatal(err)
		}
	default:
		log.Fatalf("-mode %q: want bench, dump or execute", *mode)
	}
}

// dumpOnly is the whole of a process that dumps every socket once and reports its peak RSS.
func dumpOnly(how string) {
	setFamily(*family)
	var n int
	var sum uint64
	switch how {
	case "dump":
		c, err := sockdiag.Dial(nil)
		if err != nil {
			log.Fatal(err)
		}
		st, err := c.Dump(req, func(s *sockdiag.Socket) error { sum += uint64(s.SKMemInfo.RmemAlloc); return nil })
		if err != nil {
			log.Fatal(err)
		}
		n = st.Sockets
	case "execute":
		conn, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, nil)
		if err != nil {
			log.Fatal(err)
		}
		if n, err = benchref.Execute(conn, req, func(s *sockdiag.Socket) { sum += uint64(s.SKMemInfo.RmemAlloc) }); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Printf("%s %d %s\n", how, n, benchref.Status("VmHWM"))
}

func setFamily(f string) {
	switch f {
	case "unspec":
		req.Family = sockdiag.FamilyUnspec
	case "inet":
		req.Family = sockdiag.FamilyInet
	default:
		log.Fatalf("-family %q: want unspec or inet", f)
	}
}

func bench() {
	self, err := os.Executable()
	if err != nil {
		log.Fatal(err)
	}
	// One process may hold only RLIMIT_NOFILE descriptors: holder processes share the connections.
	start := time.Now()
	stop, err := population.Holders(*conns, func(n int) *exec.Cmd {
		return exec.Command(self, "-mode", "hold", "-conns", strconv.Itoa(n))
	})
	if err != nil {
		log.Fatal(err)
	}
	defer stop()
	log.Printf("%d connections open after %v", *conns, time.Since(start).Round(time.Millisecond))
	for _, f := range strings.Split(*family, ",") {
		setFamily(f)
		measure(f)
	}
}

// measure runs the rounds for req and prints the results.
func measure(fam string) {
	raw, err := benchref.NewRaw()
	if err != nil {
		log.Fatal(err)
	}
	c, err := sockdiag.Dial(nil)
	if err != nil {
		log.Fatal(err)
	}
	conn, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, nil)
	if err != nil {
		log.Fatal(err)
	}
	ss, err := exec.LookPath("ss")
	if err != nil {
		log.Fatal(err)
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		log.Fatal(err)
	}

	var sum uint64
	fn := func(s *sockdiag.Socket) error {
		sum += uint64(s.SKMemInfo.RmemAlloc) + uint64(s.TCPInfo.RcvSpace) + uint64(s.Src.Port())
		return nil
	}
	var sockets, rawBytes int
	var allocs uint64
	times := map[string][]time.Duration{}
	timeIt := func(name string, f func() error) {
		t0 := time.Now()
		if err := f(); err != nil {
			log.Fatalf("%s: %v", name, err)
		}
		times[name] = append(times[name], time.Since(t0))
	}
	for range *rounds {
		timeIt("raw", func() error { _, b, err := raw.Dump(req); rawBytes = b; return err })
		timeIt("sockdiag", func() error {
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			st, err := c.Dump(req, fn)
			runtime.ReadMemStats(&m1)
			sockets, allocs = st.Sockets, m1.Mallocs-m0.Mallocs
			return err
		})
		timeIt("execute", func() error {
			_, err := benchref.Execute(conn, req, func(s *sockdiag.Socket) { sum += uint64(s.SKMemInfo.RmemAlloc) })
			return err
		})
		timeIt("ss -tnmi", func() error {
			cmd := exec.Command(ss, "-tnmi")
			cmd.Stdout = devnull
			return cmd.Run()
		})
	}
	med := func(name string) time.Duration {
		d := slices.Clone(times[name])
		slices.Sort(d)
		return d[len(d)/2]
	}
	fmt.Printf("\nfamily %s, %d sockets, %d bytes of netlink data (%d per socket), %d rounds, medians:\n",
		fam, sockets, rawBytes, rawBytes/max(sockets, 1), *rounds)
	for _, name := range []string{"raw", "sockdiag", "execute", "ss -tnmi"} {
		fmt.Printf("  %-9s %9v  %6.0f ns/socket  %.3fx raw\n", name, med(name).Round(time.Microsecond),
			float64(med(name).Nanoseconds())/float64(max(sockets, 1)), float64(med(name))/float64(med("raw")))
	}
	fmt.Printf("sockdiag vs raw: %.3fx (target <= 1.15)\n", float64(med("sockdiag"))/float64(med("raw")))
	fmt.Printf("ss -tnmi vs sockdiag: %.2fx faster (target >= 3.5)\n", float64(med("ss -tnmi"))/float64(med("sockdiag")))
	fmt.Printf("sockdiag allocations: %d per dump, %.5f per socket\n", allocs, float64(allocs)/float64(max(sockets, 1)))

	self, err := os.Executable()
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range []string{"dump", "execute"} {
		out, err := exec.Command(self, "-mode", m, "-family", fam).Output()
		if err != nil {
			log.Fatalf("-mode %s: %v", m, err)
		}
		var how, hwm, unit string
		var n int
		fmt.Sscan(string(out), &how, &n, &hwm, &unit)
		fmt.Printf("peak RSS of a process that only dumps (%s): %s %s for %d sockets\n", m, hwm, unit, n)
	}
}

//go:build linux

// Command sockiterbench times the sockiter engine against the netlink path on a large population, for
// bpf/sockiter/bench.sh (run by hand, as root, inside a network namespace). It starts holder processes
// (sockdiag's sockbench -mode hold, whose path -holder names) until -conns connections are open, then
// times, interleaved round by round: the raw netlink dump (a recvfrom loop that only counts messages, as
// internal/benchref.Raw; skmeminfo, and skmeminfo+tcp_info), the LISTEN-only dump, the netlink
// fold (the collector's two dumps and its folding, internal/nlfold), and the bpf engine's Walk. It prints
// medians and ratios, the bpf walk's phases and the program's own run time (BPF_ENABLE_STATS), and the
// allocations per walk; then it starts itself again in -mode rss-bpf and rss-netlink, processes that only
// walk or fold, and prints their RSS after each of 5 scrapes and their peak.
package main

import (
	"context"
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

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/sockbuf/sockbuf_exporter/bpf/sockiter"
	"github.com/sockbuf/sockbuf_exporter/bpf/sockiter/internal/nlfold"
	"github.com/sockbuf/sockbuf_exporter/internal/benchref"
	"github.com/sockbuf/sockbuf_exporter/internal/population"
	"github.com/sockbuf/sockbuf_exporter/sockdiag"
)

var (
	conns  = flag.Int("conns", 100000, "loopback connections to hold (two sockets each)")
	rounds = flag.Int("rounds", 7, "measurement rounds; medians are reported")
	mode   = flag.String("mode", "bench", "bench; or, used by bench: rss-bpf, rss-netlink")
	holder = flag.String("holder", "", "path of sockdiag's sockbench binary (-mode hold)")
)

// The collector's buckets (collector/sockets_agg.go).
var (
	fillBounds   = []float64{0, 0.1, 0.25, 0.5, 0.75, 0.9, 1, 1.5}
	rcvbufBounds = []float64{65536, 131072, 262144, 425984, 1048576, 2097151, 2097152, 4194303, 4194304, 6291456, 8388608, 16777216, 33554432}
)

func main() {
	flag.Parse()
	log.SetFlags(0)
	switch *mode {
	case "bench":
		bench()
	case "rss-bpf", "rss-netlink":
		rss(*mode)
	default:
		log.Fatalf("-mode %q: want bench, rss-bpf or rss-netlink", *mode)
	}
}

func openEngine() *sockiter.Engine {
	e, err := sockiter.Open(sockiter.Options{FillBounds: fillBounds, RcvbufBounds: rcvbufBounds, Cgroups: true, Drops: true})
	if err != nil {
		log.Fatal(err)
	}
	return e
}

func openFolder() *nlfold.Folder {
	c, err := sockdiag.Dial(nil)
	if err != nil {
		log.Fatal(err)
	}
	return &nlfold.Folder{Client: c, FullRatio: 0.9, FillBounds: fillBounds, RcvbufBounds: rcvbufBounds, Cgroups: true}
}

// holders starts sockbench -mode hold processes until they hold n connections; stop ends them.
func holders(n int) (stop func() error, err error) {
	start := time.Now()
	stop, err = population.Holders(n, func(k int) *exec.Cmd {
		return exec.Command(*holder, "-mode", "hold", "-conns", strconv.Itoa(k))
	})
	if err != nil {
		return nil, err
	}
	log.Printf("%d connections held, opened in %s", n, time.Since(start).Round(time.Second))
	return stop, nil
}

type series struct {
	name string
	run  func() (sockets uint64)
	d    []time.Duration
	n    uint64
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func sockets(r *sockiter.Result) uint64 {
	n := r.OverflowSockets + r.States[sockdiag.StateListen]
	for _, g := range r.Groups {
		n += g.Sockets
	}
	return n
}

func bench() {
	if *holder == "" {
		log.Fatal("-holder: path of sockbench is needed")
	}
	stop, err := holders(*conns)
	if err != nil {
		log.Fatal(err)
	}
	defer stop()

	e := openEngine()
	defer e.Close()
	floor, err := sockiter.Open(sockiter.Options{IterateOnly: true})
	if err != nil {
		log.Fatal(err)
	}
	defer floor.Close()
	bare, err := sockiter.Open(sockiter.Options{FillBounds: fillBounds, RcvbufBounds: rcvbufBounds})
	if err != nil {
		log.Fatal(err)
	}
	defer bare.Close()
	f := openFolder()
	rw, err := benchref.NewRaw()
	if err != nil {
		log.Fatal(err)
	}
	defer rw.Close()
	ctx := context.Background()
	var phases []sockiter.Phases
	memReq := sockdiag.Request{States: sockdiag.DefaultStates, Extensions: sockdiag.ExtSKMemInfo}
	infoReq := sockdiag.Request{States: sockdiag.DefaultStates, Extensions: sockdiag.ExtSKMemInfo | sockdiag.ExtInfo}
	all := []*series{
		{name: "raw netlink dump, skmeminfo", run: func() uint64 {
			n, _, err := rw.Dump(memReq)
			if err != nil {
				log.Fatal(err)
			}
			return uint64(n)
		}},
		{name: "raw netlink dump, skmeminfo+tcp_info", run: func() uint64 {
			n, _, err := rw.Dump(infoReq)
			if err != nil {
				log.Fatal(err)
			}
			return uint64(n)
		}},
		{name: "raw netlink dump, LISTEN only", run: func() uint64 {
			n, _, err := rw.Dump(sockdiag.Request{States: 1 << sockdiag.StateListen})
			if err != nil {
				log.Fatal(err)
			}
			return uint64(n)
		}},
		{name: "netlink fold (collector path)", run: func() uint64 {
			r, err := f.Fold(ctx)
			if err != nil {
				log.Fatal(err)
			}
			return sockets(r)
		}},
		{name: "bpf iterator alone (empty program)", run: func() uint64 {
			r, err := floor.Walk(ctx)
			if err != nil {
				log.Fatal(err)
			}
			return r.Visited
		}},
		{name: "bpf walk without cgroup and drops", run: func() uint64 {
			r, err := bare.Walk(ctx)
			if err != nil {
				log.Fatal(err)
			}
			return sockets(r)
		}},
		{name: "bpf engine walk", run: func() uint64 {
			r, err := e.Walk(ctx)
			if err != nil {
				log.Fatal(err)
			}
			phases = append(phases, r.Phases)
			return sockets(r)
		}},
	}
	for _, s := range all { // warm up: maps grown, buffers allocated
		s.n = s.run()
	}
	phases = phases[:0]
	var allocs uint64
	for round := range *rounds {
		for i := range all {
			s := all[(i+round)%len(all)]
			runtime.GC()
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			t := time.Now()
			s.n = s.run()
			s.d = append(s.d, time.Since(t))
			runtime.ReadMemStats(&m1)
			if s.name == "bpf engine walk" {
				allocs = max(allocs, m1.Mallocs-m0.Mallocs)
			}
		}
	}
	var load string
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	fmt.Printf("%d connections, %d rounds interleaved, load %s; medians:\n", *conns, *rounds, load)
	for _, s := range all {
		fmt.Printf("  %-40s %10s  (min %10s; %d sockets/messages)\n", s.name, median(s.d).Round(time.Microsecond), slices.Min(s.d).Round(time.Microsecond), s.n)
	}
	rawMem, rawInfo, fold, empty, walk := median(all[0].d), median(all[1].d), median(all[3].d), median(all[4].d), median(all[6].d)
	fmt.Printf("ratios of medians: bpf/raw(skmeminfo) %.2f (target <= 0.5), bpf/raw(skmeminfo+tcp_info) %.2f, fold/raw(skmeminfo) %.2f, bpf/fold %.2f, empty iterator/raw(skmeminfo) %.2f\n",
		ratio(walk, rawMem), ratio(walk, rawInfo), ratio(fold, rawMem), ratio(walk, fold), ratio(empty, rawMem))
	fmt.Printf("ratios of minimums: bpf/raw(skmeminfo) %.2f, fold/raw(skmeminfo) %.2f, empty iterator/raw(skmeminfo) %.2f\n",
		ratio(slices.Min(all[6].d), slices.Min(all[0].d)), ratio(slices.Min(all[3].d), slices.Min(all[0].d)), ratio(slices.Min(all[4].d), slices.Min(all[0].d)))
	var reset, iter, collect []time.Duration
	for _, p := range phases {
		reset, iter, collect = append(reset, p.Reset), append(iter, p.Iterate), append(collect, p.Collect)
	}
	fmt.Printf("bpf walk phases (medians): reset %s, kernel walk %s, collect %s; allocations per walk: %d\n",
		median(reset).Round(time.Microsecond), median(iter).Round(time.Microsecond), median(collect).Round(time.Microsecond), allocs)
	// Run-time statistics cost two clock reads per run, so they are on only for these extra walks.
	if stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME)); err != nil {
		log.Printf("no BPF run-time statistics: %v", err)
	} else {
		r0, t0, _ := e.ProgramStats()
		for range 3 {
			if _, err := e.Walk(ctx); err != nil {
				log.Fatal(err)
			}
		}
		stats.Close()
		if rc, rt, ok := e.ProgramStats(); ok && rc > r0 {
			fmt.Printf("bpf program (3 walks with BPF_ENABLE_STATS): %.0f ns per socket in the program itself, clock reads included\n",
				float64((rt-t0).Nanoseconds())/float64(rc-r0))
		}
	}

	for _, m := range []string{"rss-bpf", "rss-netlink"} {
		cmd := exec.Command("/proc/self/exe", "-mode", m)
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			log.Fatalf("%s: %v", m, err)
		}
		fmt.Print(string(out))
	}
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }

// rss is a process that only scrapes, 5 times, and reports its RSS after each and its peak.
func rss(m string) {
	ctx := context.Background()
	var rs []string
	var n uint64
	if m == "rss-bpf" {
		e := openEngine()
		defer e.Close()
		for range 5 {
			r, err := e.Walk(ctx)
			if err != nil {
				log.Fatal(err)
			}
			n = sockets(r)
			rs = append(rs, benchref.Status("VmRSS"))
		}
	} else {
		f := openFolder()
		for range 5 {
			r, err := f.Fold(ctx)
			if err != nil {
				log.Fatal(err)
			}
			n = sockets(r)
			rs = append(rs, benchref.Status("VmRSS"))
		}
	}
	fmt.Printf("%s: %d sockets; RSS after each of 5 scrapes: %s; peak %s\n", m, n, strings.Join(rs, ", "), benchref.Status("VmHWM"))
}

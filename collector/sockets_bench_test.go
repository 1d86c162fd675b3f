//go:build linux

package collector

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockbuf/sockbuf_exporter/internal/benchref"
	"github.com/sockbuf/sockbuf_exporter/internal/e2e"
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
	"github.com/sockbuf/sockbuf_exporter/sockdiag"
)

// BenchmarkSocketsScrape measures one scrape of the sockets collector on real sockets: idle loopback
// connections (SOCKBUF_BENCH_CONNS, default 8,000, i.e. 16,000 sockets plus 100 listeners) in a namespace
// with its own hash table, against sockdiag's bare dump of the same sockets with the same attributes:
//
//	dump            sockdiag.Client.Dump with skmeminfo and a callback that does nothing
//	scrape          the collector (LISTEN dump, full dump, aggregation, metrics), attribution off
//	scrape-cgroup   the same with cgroup attribution (the default)
//	scrape-process  the same with process attribution too (/proc/*/fd scan)
//
// go test -run '^$' -bench BenchmarkSocketsScrape -benchtime 20x ./collector/
func BenchmarkSocketsScrape(b *testing.B) {
	conns := 8000
	if v := os.Getenv("SOCKBUF_BENCH_CONNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("SOCKBUF_BENCH_CONNS=%q: want a positive number", v)
		}
		conns = n
	}
	e2e.Require(b)
	ns := testenv.NewIsolatedNetNS(b, 1024)
	// Held by sockbuf-trafficgen processes, as in BenchmarkSocketsScale: listeners that never accept hold the
	// server ends without descriptors, and each dialing process holds at most 19,000 client ends, under a
	// hard RLIMIT_NOFILE of 20,000.
	const basePort = 20000
	tg := buildTrafficgen(b)
	startInNS(b, ns, "trafficgen: port=", tg, "--mode=fanout", "--fanout-side=listen",
		fmt.Sprint("--port=", basePort), "--ports=100", "--hold=60m")
	for left := conns; left > 0; left -= 19000 {
		startInNS(b, ns, "trafficgen: port=", tg, "--mode=fanout", "--fanout-side=dial",
			fmt.Sprint("--port=", basePort), "--ports=100", fmt.Sprint("--conns=", min(left, 19000)), "--hold=60m")
	}
	nsf, err := os.Open(ns.Path)
	if err != nil {
		b.Fatal(err)
	}
	defer nsf.Close()
	dial := func() (socketDumper, error) { return sockdiag.Dial(&sockdiag.Config{NetNS: int(nsf.Fd())}) }
	sockets := 2*conns + 100

	perSocket := func(b *testing.B) {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*sockets), "ns/socket")
	}
	b.Run("dump", func(b *testing.B) {
		cl, err := sockdiag.Dial(&sockdiag.Config{NetNS: int(nsf.Fd())})
		if err != nil {
			b.Fatal(err)
		}
		defer cl.Close()
		req := sockdiag.Request{Family: sockdiag.FamilyUnspec, Extensions: sockdiag.ExtSKMemInfo}
		fn := func(*sockdiag.Socket) error { return nil }
		b.ReportAllocs()
		for b.Loop() {
			if _, err := cl.Dump(req, fn); err != nil {
				b.Fatal(err)
			}
		}
		perSocket(b)
	})
	for _, tc := range []struct {
		name string
		cfg  SocketsConfig
	}{
		{"scrape", SocketsConfig{}},
		{"scrape-cgroup", SocketsConfig{CgroupAttribution: true}},
		{"scrape-tcpinfo", SocketsConfig{TCPInfo: true}},
		{"scrape-process", SocketsConfig{CgroupAttribution: true, ProcessAttribution: true}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			col, err := newSocketsCollector(Config{ProcPath: "/proc", Sockets: withTestDefaults(tc.cfg)}, nil, dial)
			if err != nil {
				b.Fatal(err)
			}
			ch := make(chan prometheus.Metric, 4096)
			scrape := func() {
				if err := col.Update(context.Background(), ch); err != nil {
					b.Fatal(err)
				}
				for len(ch) > 0 {
					<-ch
				}
			}
			scrape() // grow the maps, walk the cgroups
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				scrape()
			}
			perSocket(b)
		})
	}
}

// BenchmarkSocketsScale is the performance measurement, run by hand through
// collector/bench/sockets.sh (SOCKBUF_SCALE_CONNS connections, 100,000 there; 20,000 by default): the real
// exporter binary scraped over HTTP inside a namespace holding the connections, with each socket engine,
// against the raw netlink dump (recvfrom only), sockdiag's bare dump of the same sockets (skmeminfo, a
// callback that does nothing) and `ss -tnmi`; the exporters' RSS after 20 scrapes; and the cost of cgroup
// and process attribution. It prints the medians and ratios and
// reports the ratios as benchmark metrics; one iteration is the whole measurement (-benchtime 1x).
func BenchmarkSocketsScale(b *testing.B) {
	conns := 20000
	if v := os.Getenv("SOCKBUF_SCALE_CONNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("SOCKBUF_SCALE_CONNS=%q: want a positive number", v)
		}
		conns = n
	}
	t := b
	rounds := 20
	e2e.Require(t)
	ss := testenv.RequireBinary(t, "ss", "iproute2")
	ns := testenv.NewIsolatedNetNS(t, 1024)

	// Listeners that never accept hold the server ends without descriptors; each dialing process holds at
	// most 19,000 client ends, under a hard RLIMIT_NOFILE of 20,000.
	const basePort = 20000
	ports := conns/2000 + 1
	tg := buildTrafficgen(t)
	start := time.Now()
	startInNS(t, ns, "trafficgen: port=", tg, "--mode=fanout", "--fanout-side=listen",
		fmt.Sprint("--port=", basePort), fmt.Sprint("--ports=", ports), "--hold=60m")
	for left := conns; left > 0; left -= 19000 {
		startInNS(t, ns, "trafficgen: port=", tg, "--mode=fanout", "--fanout-side=dial",
			fmt.Sprint("--port=", basePort), fmt.Sprint("--ports=", ports), fmt.Sprint("--conns=", min(left, 19000)), "--hold=60m")
	}
	t.Logf("%d connections (%d sockets) open after %v", conns, 2*conns+ports, time.Since(start).Round(time.Millisecond))

	mount := filepath.Join(t.TempDir(), "cgroup2")
	if err := os.Mkdir(mount, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("none", mount, "cgroup2", 0, ""); err != nil {
		t.Fatalf("mounting cgroup2: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(mount, syscall.MNT_DETACH) })
	exporters := map[string]*e2e.Exporter{
		"scrape":         e2e.StartExporter(t, ns, "--collector.sockets.cgroup-root="+mount, "--collector.sockets.engine=netlink"),
		"scrape-nocgrp":  e2e.StartExporter(t, ns, "--no-collector.sockets.cgroup", "--collector.sockets.engine=netlink"),
		"scrape-process": e2e.StartExporter(t, ns, "--collector.sockets.cgroup-root="+mount, "--collector.sockets.process"),
		"scrape-bpf":     e2e.StartExporter(t, ns, "--collector.sockets.cgroup-root="+mount, "--collector.sockets.engine=bpf"),
	}
	for name, e := range exporters {
		m := e.Scrape(t) // first scrape: maps grow, cgroups are walked
		if got := m.Sum("sockbuf_sockets"); got < float64(2*conns) {
			t.Fatalf("%s: %g sockets, want %d\n%s", name, got, 2*conns, e.Logs())
		}
	}

	nsf, err := os.Open(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer nsf.Close()
	cl, err := sockdiag.Dial(&sockdiag.Config{NetNS: int(nsf.Fd())})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := sockdiag.Request{Family: sockdiag.FamilyUnspec, Extensions: sockdiag.ExtSKMemInfo}
	nop := func(*sockdiag.Socket) error { return nil }
	var raw *benchref.Raw
	if err := ns.Do(func() (err error) { raw, err = benchref.NewRaw(); return err }); err != nil {
		t.Fatal(err)
	}
	defer raw.Close()

	times := map[string][]time.Duration{}
	timeIt := func(name string, fn func()) {
		s := time.Now()
		fn()
		times[name] = append(times[name], time.Since(s))
	}
	var rss []int
	var rssBPF []int
	for r := range rounds {
		timeIt("raw dump", func() {
			if n, _, err := raw.Dump(req); err != nil || n < 2*conns {
				t.Fatalf("raw dump: %d messages, %v", n, err)
			}
		})
		timeIt("dump", func() {
			if _, err := cl.Dump(req, nop); err != nil {
				t.Fatal(err)
			}
		})
		timeIt("scrape", func() { exporters["scrape"].ScrapeText(t) })
		timeIt("scrape-bpf", func() { exporters["scrape-bpf"].ScrapeText(t) })
		timeIt("scrape-nocgrp", func() { exporters["scrape-nocgrp"].ScrapeText(t) })
		rss = append(rss, vmRSS(t, exporters["scrape"].PID))
		rssBPF = append(rssBPF, vmRSS(t, exporters["scrape-bpf"].PID))
		if r < 5 {
			timeIt("scrape-process", func() { exporters["scrape-process"].ScrapeText(t) })
			timeIt("ss -tnmi", func() {
				cmd := ns.Command(context.Background(), ss, "-tnmi")
				if err := cmd.Run(); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
	med, mins := map[string]time.Duration{}, map[string]time.Duration{}
	for name, ds := range times {
		slices.Sort(ds)
		med[name], mins[name] = ds[len(ds)/2], ds[0]
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	report := fmt.Sprintf("kernel %s, %d CPUs, %d connections (%d sockets), medians:\n", kernelRelease(), runtime.NumCPU(), conns, 2*conns+ports)
	for _, name := range []string{"raw dump", "dump", "scrape", "scrape-bpf", "scrape-nocgrp", "scrape-process", "ss -tnmi"} {
		report += fmt.Sprintf("  %-15s %8.1f ms  %6.0f ns/socket\n", name, float64(med[name].Microseconds())/1000,
			float64(med[name].Nanoseconds())/float64(2*conns+ports))
	}
	ratio := func(a, b string) float64 { return float64(med[a]) / float64(med[b]) }
	report += fmt.Sprintf("  scrape / dump           %.2fx (target <= 1.3x)\n", ratio("scrape", "dump"))
	report += fmt.Sprintf("  scrape / raw dump       %.2fx (netlink engine)\n", ratio("scrape", "raw dump"))
	report += fmt.Sprintf("  scrape-bpf / raw dump   %.2fx (bpf engine; issue 13 target <= 0.5x)\n", ratio("scrape-bpf", "raw dump"))
	report += fmt.Sprintf("  scrape-bpf / scrape     %.2fx (bpf engine / netlink engine)\n", ratio("scrape-bpf", "scrape"))
	report += fmt.Sprintf("  minimums: raw dump %.1f ms, scrape %.1f ms, scrape-bpf %.1f ms\n", ms(mins["raw dump"]), ms(mins["scrape"]), ms(mins["scrape-bpf"]))
	report += fmt.Sprintf("  ss -tnmi / scrape       %.2fx (target >= 3x)\n", ratio("ss -tnmi", "scrape"))
	report += fmt.Sprintf("  cgroup attribution      %+.1f%% (target <= +10%%)\n", 100*(ratio("scrape", "scrape-nocgrp")-1))
	report += fmt.Sprintf("  process attribution     %+.0f%%, %.0f ms per scrape\n", 100*(ratio("scrape-process", "scrape")-1),
		float64((med["scrape-process"]-med["scrape"]).Microseconds())/1000)
	report += fmt.Sprintf("  exporter RSS after %d scrapes: %.1f MiB (after %d: %.1f MiB; target < 48 MiB, not growing)\n",
		rounds+1, float64(rss[len(rss)-1])/1024, rounds/2+1, float64(rss[rounds/2-1])/1024)
	report += fmt.Sprintf("  bpf engine exporter RSS after %d scrapes: %.1f MiB (after %d: %.1f MiB)\n",
		rounds+1, float64(rssBPF[len(rssBPF)-1])/1024, rounds/2+1, float64(rssBPF[rounds/2-1])/1024)
	t.Log("\n" + report)
	fmt.Print(report)
	b.ReportMetric(ratio("scrape", "dump"), "scrape/dump")
	b.ReportMetric(ratio("scrape-bpf", "raw dump"), "bpf/raw")
	b.ReportMetric(ratio("scrape-bpf", "scrape"), "bpf/netlink")
	b.ReportMetric(ratio("ss -tnmi", "scrape"), "ss/scrape")
	b.ReportMetric(float64(rss[len(rss)-1])/1024, "MiB-rss")
}

// vmRSS returns a process's resident set in KiB.
func vmRSS(t testing.TB, pid int) int {
	n, err := benchref.StatusKiB(pid, "VmRSS")
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func kernelRelease() string {
	var u syscall.Utsname
	if syscall.Uname(&u) != nil {
		return "?"
	}
	var b []byte
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

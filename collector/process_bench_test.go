//go:build linux

package collector

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/sockbuf/sockbuf_exporter/internal/e2e"
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
	"github.com/sockbuf/sockbuf_exporter/sockdiag"
)

// BenchmarkProcessAttribution measures what process attribution adds to a scrape of the sockets collector:
// SOCKBUF_PROCESS_CONNS loopback connections (default 20,000; the figure is 100,000, i.e. 200,000
// sockets) held by holder processes (sockdiag/internal/sockbench -mode hold, as many as RLIMIT_NOFILE
// needs) in a namespace with its own hash table, the exporter scanning the host's whole /proc:
//
//	cgroup        the default scrape (cgroup attribution), the reference
//	process       with --collector.sockets.process, steady state: the incremental scan
//	cgroup-again  the reference again, to show how much the machine's load moves it
//	process-full  the same reading every /proc/<pid>/fd link on every scrape (FullInterval 0), as before
//
// It reports added-s/scrape (the mode's time per scrape less the mean of the references measured so far in
// this run) and links/scrape.
//
//	SOCKBUF_PROCESS_CONNS=100000 go test -run '^$' -bench BenchmarkProcessAttribution -benchtime 5x ./collector/
func BenchmarkProcessAttribution(b *testing.B) {
	conns := 20000
	if v := os.Getenv("SOCKBUF_PROCESS_CONNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("SOCKBUF_PROCESS_CONNS=%q: want a positive number", v)
		}
		conns = n
	}
	testenv.RequireRoot(b)
	holder := e2e.Build(b, "github.com/sockbuf/sockbuf_exporter/sockdiag/internal/sockbench")
	ns := testenv.NewIsolatedNetNS(b, 1024)
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	per := max(int(min(lim.Max, 1<<20)-256)/2, 1)
	ctx, cancel := context.WithCancel(context.Background())
	var stdins []io.Closer
	var cmds []*exec.Cmd
	b.Cleanup(func() { // holders end when their stdin closes
		for _, in := range stdins {
			in.Close()
		}
		for _, cmd := range cmds {
			cmd.Wait()
		}
		cancel()
	})
	for left := conns; left > 0; left -= min(left, per) {
		cmd := ns.Command(ctx, holder, "-mode", "hold", "-conns", strconv.Itoa(min(left, per)))
		in, err := cmd.StdinPipe()
		if err != nil {
			b.Fatal(err)
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		stdins, cmds = append(stdins, in), append(cmds, cmd)
		if line, err := bufio.NewReader(out).ReadString('\n'); strings.TrimSpace(line) != "ready" {
			b.Fatalf("holder did not get ready: %q, %v", line, err)
		}
	}
	nsf, err := os.Open(ns.Path)
	if err != nil {
		b.Fatal(err)
	}
	defer nsf.Close()
	dial := func() (socketDumper, error) { return sockdiag.Dial(&sockdiag.Config{NetNS: int(nsf.Fd())}) }

	var refSum, refN float64 // seconds per scrape of the cgroup modes
	for _, mode := range []string{"cgroup", "process", "cgroup-again", "process-full"} {
		reference := strings.HasPrefix(mode, "cgroup")
		b.Run(mode, func(b *testing.B) {
			sc := SocketsConfig{CgroupAttribution: true, ProcessAttribution: !reference}
			col, err := newSocketsCollector(Config{ProcPath: "/proc", Sockets: withTestDefaults(sc)}, nil, dial)
			if err != nil {
				b.Fatal(err)
			}
			if mode == "process-full" {
				col.procs.scanner.FullInterval = 0
			}
			ch := make(chan prometheus.Metric, 4096)
			scrape := func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				if err := col.Update(ctx, ch); err != nil {
					b.Fatal(err)
				}
				for len(ch) > 0 {
					<-ch
				}
			}
			scrape() // the first scrape reads everything in every mode
			var links uint64
			if col.procs != nil {
				links = col.procs.scanner.LinksRead()
			}
			b.ResetTimer()
			for b.Loop() {
				scrape()
			}
			perScrape := b.Elapsed().Seconds() / float64(b.N)
			if reference {
				refSum, refN = refSum+perScrape, refN+1
			} else if refN > 0 {
				b.ReportMetric(perScrape-refSum/refN, "added-s/scrape")
			}
			if col.procs != nil {
				b.ReportMetric(float64(col.procs.scanner.LinksRead()-links)/float64(b.N), "links/scrape")
				b.ReportMetric(float64(col.procs.scanner.Incomplete()), "incomplete")
			}
			b.ReportMetric(float64(2*conns), "sockets")
		})
	}
}

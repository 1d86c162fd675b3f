//go:build linux

package collector

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockbuf/sockbuf_exporter/internal/e2e"
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

// BenchmarkScrapeBurst is the load test of issue 9, run by hand through collector/bench/burst.sh:
// SOCKBUF_BURST_CONNS idle connections (100,000 there, i.e. 200,000 sockets; 20,000 by default) in a
// namespace, the real exporter binary with its default flags, and, over several rounds, one scrape alone
// against a burst of SOCKBUF_BURST_SCRAPES (50) concurrent scrapes with a 10 s scrape timeout. Concurrent
// scrapes share each collector's run (flight.go), so the target is: every scrape of the burst answers 200
// with every collector's success 1, and the burst takes at most 2x one scrape. One iteration is the whole
// measurement (-benchtime 1x).
func BenchmarkScrapeBurst(b *testing.B) {
	conns := envInt(b, "SOCKBUF_BURST_CONNS", 20000)
	scrapes := envInt(b, "SOCKBUF_BURST_SCRAPES", 50)
	const rounds = 5
	e2e.Require(b)
	ns := testenv.NewIsolatedNetNS(b, 1024)
	const basePort = 20000
	ports := conns/2000 + 1
	tg := buildTrafficgen(b)
	startInNS(b, ns, "trafficgen: port=", tg, "--mode=fanout", "--fanout-side=listen",
		fmt.Sprint("--port=", basePort), fmt.Sprint("--ports=", ports), "--hold=60m")
	for left := conns; left > 0; left -= 19000 {
		startInNS(b, ns, "trafficgen: port=", tg, "--mode=fanout", "--fanout-side=dial",
			fmt.Sprint("--port=", basePort), fmt.Sprint("--ports=", ports), fmt.Sprint("--conns=", min(left, 19000)), "--hold=60m")
	}
	var args []string
	if v := os.Getenv("SOCKBUF_BURST_ARGS"); v != "" {
		args = strings.Fields(v)
	}
	exp := e2e.StartExporter(b, ns, args...)
	if got := exp.Scrape(b).Sum("sockbuf_sockets"); got < float64(2*conns) {
		b.Fatalf("%g sockets, want %d", got, 2*conns)
	}
	header := http.Header{"X-Prometheus-Scrape-Timeout-Seconds": {"10"}}
	// scrape returns whether the scrape answered 200 with every collector's success 1. It looks the success
	// lines up with memchr-fast searches instead of parsing the text, so that the client's own work (in this
	// process, on the same CPUs) weighs as little as it can on the burst it measures.
	scrape := func() bool {
		code, body := exp.Get(b, "/metrics", header)
		return code == http.StatusOK && bytes.Contains(body, []byte(`sockbuf_scrape_collector_success{collector="sockets"} 1`)) &&
			allSucceeded(body)
	}
	var one, burst []time.Duration
	failed := 0
	for range rounds {
		start := time.Now()
		if !scrape() {
			failed++
		}
		one = append(one, time.Since(start))

		start = time.Now()
		var wg sync.WaitGroup
		var mu sync.Mutex
		for range scrapes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if !scrape() {
					mu.Lock()
					failed++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		burst = append(burst, time.Since(start))
	}
	slices.Sort(one)
	slices.Sort(burst)
	m1, mb := one[len(one)/2], burst[len(burst)/2]
	report := fmt.Sprintf("%d connections (%d sockets), %d rounds, medians:\n  one scrape          %8.1f ms\n"+
		"  %d concurrent      %8.1f ms\n  burst / one scrape  %8.2fx (target <= 2x)\n  failed scrapes      %8d of %d (target 0)\n",
		conns, 2*conns+ports, rounds, ms(m1), scrapes, ms(mb), float64(mb)/float64(m1), failed, rounds*(scrapes+1))
	b.Log("\n" + report)
	fmt.Print(report)
	b.ReportMetric(float64(mb)/float64(m1), "burst/one")
	b.ReportMetric(float64(failed), "failed")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// envInt reads a positive integer from the environment, or def.
func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

// allSucceeded reports whether every sockbuf_scrape_collector_success sample of an exposition is 1.
func allSucceeded(body []byte) bool {
	prefix := []byte("\nsockbuf_scrape_collector_success{")
	for rest := body; ; {
		i := bytes.Index(rest, prefix)
		if i < 0 {
			return true
		}
		rest = rest[i+1:]
		line, _, _ := bytes.Cut(rest, []byte("\n"))
		if !bytes.HasSuffix(line, []byte("} 1")) {
			return false
		}
	}
}

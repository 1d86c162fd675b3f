package attack

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sockbuf/sockbuf_exporter/internal/e2e"
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(e2e.Main(m)) }

// exporter is the real binary, started by start. e2e.StartExporter waits for a scrape of /metrics without a
// timeout header, which a tree with a blocking file holds for the whole default deadline; this one waits for
// the landing page.
type exporter struct {
	url    string
	pid    int
	client *http.Client
	proc   *e2e.Process
	ns     *testenv.NetNS
}

// start runs the exporter with the procfs collectors only (plus args) in ns, or in the test's own network
// namespace on 127.0.0.1 when ns is nil; cred, if not nil, runs it as another user (only with a nil ns: `ip
// netns exec` needs root).
func start(t *testing.T, ns *testenv.NetNS, cred *syscall.Credential, args ...string) *exporter {
	t.Helper()
	bin := e2e.BuildExporter(t)
	if cred != nil {
		bin = copyForAll(t, bin)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", e2e.FreePort(t, ns))
	args = append([]string{"--web.listen-address=" + addr, "--no-collector.sockets"}, args...)
	proc := e2e.StartProcess(t, ns, cred, "the exporter", bin, args...)
	e := &exporter{url: "http://" + addr, pid: proc.Pid(), client: e2e.Client(t, ns), proc: proc, ns: ns}
	proc.WaitHTTP(t, e.client, e.url+"/")
	return e
}

// copyForAll copies the binary where any user may run it: e2e builds it in a directory only root may enter.
func copyForAll(t *testing.T, bin string) string {
	t.Helper()
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	openUp(t, dir)
	p := filepath.Join(dir, "sockbuf_exporter")
	if err := os.WriteFile(p, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// openUp lets every user through dir and its parents up to the temporary directory (t.TempDir makes them
// 0700).
func openUp(t *testing.T, dir string) {
	t.Helper()
	for d := dir; d != filepath.Clean(os.TempDir()) && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// scrape fetches /metrics with the given scrape-timeout header ("" for none) and returns the status, the
// series and how long it took.
func (e *exporter) scrape(t *testing.T, timeoutHeader string) (int, e2e.Metrics, time.Duration) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.url+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	if timeoutHeader != "" {
		req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", timeoutHeader)
	}
	client := *e.client
	client.Timeout = 3 * time.Minute
	begin := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		t.Errorf("scrape with timeout header %q: %v", timeoutHeader, err)
		return 0, nil, time.Since(begin)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(begin)
	if err != nil {
		t.Errorf("scrape with timeout header %q: reading: %v", timeoutHeader, err)
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil, took
	}
	m, err := e2e.ParseMetrics(body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, m, took
}

// dial opens a raw TCP connection to the exporter.
func (e *exporter) dial(t *testing.T) net.Conn {
	t.Helper()
	var c net.Conn
	dial := func() (err error) {
		c, err = net.DialTimeout("tcp", strings.TrimPrefix(e.url, "http://"), 5*time.Second)
		return err
	}
	var err error
	if e.ns == nil {
		err = dial()
	} else {
		err = e.ns.Do(dial)
	}
	if err != nil {
		t.Fatalf("connecting to the exporter: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func success(m e2e.Metrics, c string) (float64, bool) {
	v, ok := m[fmt.Sprintf(`sockbuf_scrape_collector_success{collector=%q}`, c)]
	return v, ok
}

func duration(m e2e.Metrics, c string) float64 {
	return m[fmt.Sprintf(`sockbuf_scrape_collector_duration_seconds{collector=%q}`, c)]
}

// TestBinaryBlockedProcFile: with a FIFO where /proc/net/netstat should be, every scrape answers by its
// deadline: the header's budget, or the 30s default for a scrape without a header or with an invalid one;
// netstat is reported failed with the time it waited, the other collectors are served, and the blocked read
// holds one goroutine however many scrapes come (go_goroutines, the exporter's own metric).
func TestBinaryBlockedProcFile(t *testing.T) {
	e2e.Require(t)
	proc := tree(t, fifo("net/netstat"))
	ns := testenv.NewNetNS(t)
	exp := start(t, ns, nil, "--path.procfs="+proc)

	_, m, _ := exp.scrape(t, "2")
	base := m["go_goroutines"]
	exp.client.CloseIdleConnections()
	var wg sync.WaitGroup
	// Ten scrapes at once without a usable timeout: they get the default deadline, not none.
	for _, h := range []string{"", "", "", "", "", "NaN", "+Inf", "-1", "0", "soon"} {
		wg.Go(func() {
			code, m, took := exp.scrape(t, h)
			if code != http.StatusOK {
				t.Errorf("header %q: status %d", h, code)
				return
			}
			if took < 25*time.Second || took > 40*time.Second {
				t.Errorf("header %q: answered after %v, want the 30s default deadline", h, took)
			}
			if v, _ := success(m, "netstat"); v != 0 {
				t.Errorf("header %q: netstat success %v, want 0", h, v)
			}
			// A scrape that joins the stuck run reports how long that run has been going.
			if d := duration(m, "netstat"); d < 25 {
				t.Errorf("header %q: netstat duration %vs, want at least the ~30s it waited", h, d)
			}
		})
	}
	// Meanwhile, ten scrapes one after the other with a header.
	for i := range 10 {
		h := "2"
		want := 1500 * time.Millisecond // 2s less the 500ms offset
		if i%2 == 1 {
			h, want = "1e-300", 50*time.Millisecond // clamped to 100ms; the offset leaves half of it
		}
		code, m, took := exp.scrape(t, h)
		if code != http.StatusOK {
			t.Fatalf("header %q: status %d", h, code)
		}
		if took < want || took > want+3*time.Second {
			t.Errorf("header %q: answered after %v, want about %v", h, took, want)
		}
		if v, _ := success(m, "netstat"); v != 0 {
			t.Errorf("header %q: netstat success %v, want 0", h, v)
		}
		if d := duration(m, "netstat"); d < want.Seconds()*0.9 {
			t.Errorf("header %q: netstat duration %vs, want at least the %v it waited", h, d, want)
		}
		for _, c := range []string{"sockstat", "softnet", "sysctl"} {
			if v, _ := success(m, c); v != 1 {
				t.Errorf("header %q: %s success %v, want 1", h, c, v)
			}
		}
	}
	wg.Wait()
	// Each kept-alive connection holds a goroutine in the server: count the collectors' only.
	exp.client.CloseIdleConnections()
	time.Sleep(200 * time.Millisecond)
	_, m, _ = exp.scrape(t, "2")
	after := m["go_goroutines"]
	t.Logf("go_goroutines: %v after the first scrape, %v after 20 more", base, after)
	if after > base+5 {
		t.Errorf("go_goroutines grew from %v to %v over 20 scrapes of a blocked file", base, after)
	}
	if !strings.Contains(exp.proc.Logs(), "scrape deadline passed before the collector finished") {
		t.Errorf("no log line says the deadline passed:\n%s", exp.proc.Logs())
	}
}

// TestBinaryEndlessFiles: twenty parallel scrapes, five times, of a tree whose netstat and softnet_stat are
// links to /dev/urandom: the collectors fail with a clear error, and the exporter's resident memory stays
// within a few read limits of what the same scrapes of the untouched tree take (gzip writers, connections
// and the Go heap's growth are the same in both).
func TestBinaryEndlessFiles(t *testing.T) {
	e2e.Require(t)
	ns := testenv.NewNetNS(t)
	ref := parallelScrapesRSS(t, ns, tree(t, nil), 1)
	proc := tree(t, func(t *testing.T, proc string) {
		link("net/netstat", "/dev/urandom")(t, proc)
		link("net/softnet_stat", "/dev/urandom")(t, proc)
	})
	got := parallelScrapesRSS(t, ns, proc, 0)
	t.Logf("resident memory, MB: untouched tree %.1f at start, %.1f peak, after each round %.1f", ref.base, ref.peak, ref.rounds)
	t.Logf("resident memory, MB: /dev/urandom   %.1f at start, %.1f peak, after each round %.1f", got.base, got.peak, got.rounds)
	// Concurrent scrapes share one run per collector: at most two reads of 4 MiB (plus the garbage of growing
	// their buffers) at a time, whatever the number of scrapes.
	if got.peak > ref.peak+64 {
		t.Errorf("resident memory peaked at %.1f MB, more than 64 MB above the untouched tree's %.1f MB", got.peak, ref.peak)
	}
}

type rss struct {
	base, peak float64
	rounds     []float64
}

// parallelScrapesRSS starts an exporter on proc and scrapes it 20 times at once, five times; netstat and
// softnet must report success wantSuccess. It returns the exporter's process_resident_memory_bytes in MB.
func parallelScrapesRSS(t *testing.T, ns *testenv.NetNS, proc string, wantSuccess float64) rss {
	exp := start(t, ns, nil, "--path.procfs="+proc)
	_, m, _ := exp.scrape(t, "5")
	r := rss{base: m["process_resident_memory_bytes"] / 1e6}
	r.peak = r.base
	var mu sync.Mutex
	for range 5 {
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				code, m, _ := exp.scrape(t, "5")
				if code != http.StatusOK {
					t.Errorf("status %d", code)
					return
				}
				for _, c := range []string{"netstat", "softnet"} {
					if v, _ := success(m, c); v != wantSuccess {
						t.Errorf("%s success %v, want %v", c, v, wantSuccess)
					}
				}
				mu.Lock()
				r.peak = max(r.peak, m["process_resident_memory_bytes"]/1e6)
				mu.Unlock()
			})
		}
		wg.Wait()
		_, m, _ := exp.scrape(t, "5")
		r.rounds = append(r.rounds, m["process_resident_memory_bytes"]/1e6)
	}
	if wantSuccess == 0 && !strings.Contains(exp.proc.Logs(), "file too large") {
		t.Errorf("no log line says the file is too large")
	}
	return r
}

// TestBinaryPermissionDenied: a /proc file the exporter may not read fails its collector with "permission
// denied" and leaves the others. Root reads a file whatever its mode, so the exporter runs as nobody.
func TestBinaryPermissionDenied(t *testing.T) {
	e2e.Require(t)
	proc := tree(t, func(t *testing.T, proc string) {
		if err := os.Chmod(filepath.Join(proc, "net", "snmp"), 0); err != nil {
			t.Fatal(err)
		}
	})
	openUp(t, filepath.Dir(proc))
	exp := start(t, nil, &syscall.Credential{Uid: 65534, Gid: 65534}, "--path.procfs="+proc)
	code, m, _ := exp.scrape(t, "5")
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	for c, want := range map[string]float64{"netstat": 0, "sockstat": 1, "softnet": 1, "sysctl": 1} {
		if v, _ := success(m, c); v != want {
			t.Errorf("%s success %v, want %v", c, v, want)
		}
	}
	if m.Has("sockbuf_tcp_prune_called_total") {
		t.Error("netstat series exported although snmp could not be read")
	}
	if !strings.Contains(exp.proc.Logs(), "permission denied") {
		t.Errorf("no log line says permission denied:\n%s", exp.proc.Logs())
	}
}

package attack

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockbuf/sockbuf_exporter/internal/e2e"
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

// get sends a GET for path on c, keeping the connection alive, and reads the answer.
func get(c net.Conn, r *bufio.Reader, path string) (*http.Response, error) {
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: exporter\r\n\r\n"); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		return nil, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, err
}

// waitClosed reads from c until the server closes it or limit passes, and returns how long that took.
func waitClosed(c net.Conn, r *bufio.Reader, limit time.Duration) (time.Duration, error) {
	begin := time.Now()
	c.SetReadDeadline(begin.Add(limit))
	_, err := r.ReadByte()
	if errors.Is(err, io.EOF) || errors.Is(err, unix.ECONNRESET) {
		return time.Since(begin), nil
	}
	if err == nil {
		err = errors.New("the server sent data on an idle connection")
	}
	return time.Since(begin), err
}

// goroutines returns the exporter's go_goroutines, from a scrape whose connection is closed at once so that
// it does not count itself.
func (e *exporter) goroutines(t *testing.T) float64 {
	t.Helper()
	_, m, _ := e.scrape(t, "5")
	e.client.CloseIdleConnections()
	return m["go_goroutines"]
}

// TestHTTPIdleConnectionsClosed: fifty keep-alive connections left idle are closed by the server after
// --web.idle-timeout, and their goroutines end.
func TestHTTPIdleConnectionsClosed(t *testing.T) {
	e2e.Require(t)
	ns := testenv.NewNetNS(t)
	const idle = 2 * time.Second
	exp := start(t, ns, nil, "--path.procfs="+tree(t, nil), "--web.idle-timeout="+idle.String())
	exp.goroutines(t)
	time.Sleep(200 * time.Millisecond)
	base := exp.goroutines(t)

	type conn struct {
		c net.Conn
		r *bufio.Reader
	}
	conns := make([]conn, 50)
	for i := range conns {
		c := exp.dial(t)
		conns[i] = conn{c, bufio.NewReader(c)}
		resp, err := get(c, conns[i].r, "/")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("landing page on connection %d: %v %v", i, resp, err)
		}
	}
	held := exp.goroutines(t)
	// A few goroutines come and go on their own (a scrape's, the /diagnose sampler's): allow for them.
	if held < base+45 {
		t.Errorf("go_goroutines %v with 50 idle connections, %v without: the test does not hold them", held, base)
	}
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			took, err := waitClosed(c.c, c.r, idle+5*time.Second)
			switch {
			case err != nil:
				t.Errorf("connection %d: %v after %v", i, err, took)
			case took > idle+2*time.Second:
				t.Errorf("connection %d: closed after %v idle, want about %v", i, took, idle)
			}
		})
	}
	wg.Wait()
	time.Sleep(200 * time.Millisecond)
	after := exp.goroutines(t)
	t.Logf("go_goroutines: %v before, %v with 50 idle connections, %v once the server closed them", base, held, after)
	if after > base+2 {
		t.Errorf("go_goroutines %v after the idle connections were closed, %v before", after, base)
	}
}

// TestHTTPSlowloris: clients that send their headers a byte at a time are cut off after
// --web.read-header-timeout, while the landing page and scrapes go on being served; headers beyond 1 MB get
// 431.
func TestHTTPSlowloris(t *testing.T) {
	e2e.Require(t)
	ns := testenv.NewNetNS(t)
	const headerTimeout = 2 * time.Second
	exp := start(t, ns, nil, "--path.procfs="+tree(t, nil), "--web.read-header-timeout="+headerTimeout.String())
	var wg sync.WaitGroup
	for i := range 20 {
		c := exp.dial(t)
		wg.Go(func() {
			begin := time.Now()
			if _, err := io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: exporter\r\n"); err != nil {
				t.Errorf("slow client %d: %v", i, err)
				return
			}
			// One header byte every 200ms, for at most 10s.
			for time.Since(begin) < 10*time.Second {
				if _, err := io.WriteString(c, "X"); err != nil {
					break
				}
				c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				var b [512]byte
				if _, err := c.Read(b[:]); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
					break // closed, or answered and closed
				}
			}
			if took := time.Since(begin); took > headerTimeout+2*time.Second {
				t.Errorf("slow client %d: still connected after %v, header timeout %v", i, took, headerTimeout)
			}
		})
	}
	time.Sleep(headerTimeout / 2)
	for _, path := range []string{"/", "/metrics"} {
		begin := time.Now()
		resp, err := exp.client.Get(exp.url + path)
		if err != nil {
			t.Fatalf("GET %s while slow clients hang on: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s while slow clients hang on: status %d", path, resp.StatusCode)
		}
		t.Logf("GET %s with 20 slow clients: %v", path, time.Since(begin))
	}
	wg.Wait()

	c := exp.dial(t)
	r := bufio.NewReader(c)
	go io.WriteString(c, "GET / HTTP/1.1\r\nHost: exporter\r\nX-Big: "+strings.Repeat("a", 2<<20)+"\r\n\r\n")
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("2 MB of headers: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("2 MB of headers: status %d, want 431", resp.StatusCode)
	}
}

// TestHTTPMaxRequests: with --web.max-requests=2 and two slow scrapes (a FIFO in the tree) in progress, a
// third scrape gets 503 at once, the landing page still answers, and once they are done scrapes are served
// again.
func TestHTTPMaxRequests(t *testing.T) {
	e2e.Require(t)
	ns := testenv.NewNetNS(t)
	exp := start(t, ns, nil, "--path.procfs="+tree(t, fifo("net/netstat")), "--web.max-requests=2")
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if code, _, took := exp.scrape(t, "4"); code != http.StatusOK || took < 3*time.Second {
				t.Errorf("slow scrape: status %d after %v, want 200 after 3.5s", code, took)
			}
		})
	}
	time.Sleep(time.Second)
	code, _, took := exp.scrape(t, "4")
	if code != http.StatusServiceUnavailable || took > time.Second {
		t.Errorf("third scrape: status %d after %v, want 503 at once", code, took)
	}
	resp, err := exp.client.Get(exp.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("landing page with the scrape slots full: status %d", resp.StatusCode)
	}
	wg.Wait()
	if code, _, _ := exp.scrape(t, "1"); code != http.StatusOK {
		t.Errorf("scrape after the slow ones: status %d", code)
	}
}

// TestHTTPLowDescriptorLimit: with RLIMIT_NOFILE at 64, 150 clients that each leave a keep-alive connection
// idle exhaust the exporter's descriptors; the idle timeout frees them, and the procfs collectors then succeed
// again. Without an idle timeout the descriptors would stay taken for as long as the clients wish.
func TestHTTPLowDescriptorLimit(t *testing.T) {
	e2e.Require(t)
	ns := testenv.NewNetNS(t)
	const idle = 2 * time.Second
	exp := start(t, ns, nil, "--path.procfs="+tree(t, nil), "--web.idle-timeout="+idle.String())
	if code, _, _ := exp.scrape(t, "5"); code != http.StatusOK {
		t.Fatalf("first scrape: status %d", code)
	}
	exp.client.CloseIdleConnections()
	if err := unix.Prlimit(exp.pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: 64, Max: 64}, nil); err != nil {
		testenv.Missing(t, "prlimit on the exporter: %v", err)
	}
	var wg sync.WaitGroup
	served := make(chan time.Duration, 150)
	for range 150 {
		c := exp.dial(t) // the kernel queues the connection even when the exporter cannot accept it yet
		wg.Go(func() {
			r := bufio.NewReader(c)
			c.SetDeadline(time.Now().Add(60 * time.Second))
			resp, err := get(c, r, "/")
			if err != nil || resp.StatusCode != http.StatusOK {
				return // connections the exporter could not take in time are counted as not served
			}
			begin := time.Now()
			if _, err := waitClosed(c, r, 30*time.Second); err == nil {
				served <- time.Since(begin)
			}
		})
	}
	wg.Wait()
	close(served)
	n := len(served)
	t.Logf("%d of 150 idle clients served and then disconnected by the exporter", n)
	if n < 100 {
		t.Errorf("only %d of 150 clients were served and disconnected", n)
	}
	code, m, took := exp.scrape(t, "5")
	if code != http.StatusOK {
		t.Fatalf("scrape after the idle clients: status %d", code)
	}
	for _, c := range []string{"netstat", "sockstat", "softnet", "sysctl"} {
		if v, _ := success(m, c); v != 1 {
			t.Errorf("%s success %v after the idle clients, want 1", c, v)
		}
	}
	t.Logf("scrape after the idle clients: %v", took)
	// The flood must really have exhausted the descriptors, and the server says so in the exporter's log.
	exhausted := false
	for _, l := range strings.Split(exp.proc.Logs(), "\n") {
		if strings.Contains(l, "too many open files") {
			exhausted = true
			if !strings.Contains(l, "level=ERROR") || !strings.Contains(l, "http: Accept error") {
				t.Errorf("the server's accept error is not in the exporter's log format: %s", l)
			}
			break
		}
	}
	if !exhausted {
		t.Error("the exporter never ran out of descriptors: the test did not do what it means to")
	}
}

package realsw

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

//go:embed scripts
var scripts embed.FS

// The ports the servers listen on. Every Env has a namespace of its own, so fixed ports cannot collide.
const (
	PortNodeSmallWrites = 8080
	PortNginx           = 8081
	PortNodePausing     = 8082
)

// BodyBytes is the size of the JSON the servers send and of the uploads curl makes: about 460 KB, an API
// answer large enough to take many receive windows.
const BodyBytes = 460 * 1000

// MaxLifetime bounds every process an Env starts: whatever a test does, none outlives it.
const MaxLifetime = 5 * time.Minute

// Python is Debian's interpreter, which has python3-requests; a python3 first on PATH (pyenv) may not.
const Python = "/usr/bin/python3"

// Env runs real servers and clients inside one network namespace. Every process it starts is killed when the
// test ends (or after MaxLifetime).
type Env struct {
	NS  *testenv.NetNS
	Dir string // scripts, the nginx prefix and the served files

	t    testing.TB
	node string
	ngx  string
	curl string

	mu    sync.Mutex
	procs []*exec.Cmd
}

// New checks the prerequisites (node, nginx, curl, nstat, ss, Debian's python3 with requests) and writes the
// scripts and files the scenarios use; a missing one skips the test, or fails it in CI.
func New(t testing.TB, ns *testenv.NetNS) *Env {
	t.Helper()
	e := &Env{
		NS:   ns,
		Dir:  t.TempDir(),
		t:    t,
		node: testenv.RequireBinary(t, "node", "nodejs"),
		ngx:  testenv.RequireBinary(t, "nginx", "nginx-light"),
		curl: testenv.RequireBinary(t, "curl", "curl"),
	}
	testenv.RequireBinary(t, "nstat", "iproute2")
	testenv.RequireBinary(t, "ss", "iproute2")
	if out, err := exec.Command(Python, "-c", "import requests, urllib3").CombinedOutput(); err != nil {
		testenv.Missing(t, "%s cannot import requests: %v: %s (apt-get install -y python3-requests)", Python, err, out)
	}
	// t.TempDir is 0700; nginx's worker may read the files as another user.
	if err := os.Chmod(e.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"smallwrites.js", "pausing.js", "client.py"} {
		b, err := scripts.ReadFile("scripts/" + name)
		if err != nil {
			t.Fatal(err)
		}
		e.write(name, b)
	}
	e.write("www/data.json", jsonBody(BodyBytes))
	e.write("upload.bin", bytes.Repeat([]byte("0123456789abcdef"), BodyBytes/16))
	t.Cleanup(e.stopAll)
	return e
}

func (e *Env) write(name string, b []byte) {
	p := filepath.Join(e.Dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// jsonBody returns a JSON array of objects of about n bytes.
func jsonBody(n int) []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	for i := 0; b.Len() < n-200; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"name":"item %d","payload":"%s"}`, i, i, strings.Repeat("y", 150))
	}
	b.WriteByte(']')
	return b.Bytes()
}

// start runs a long-lived process in the namespace, logging to Dir/<log>; it is killed at cleanup.
func (e *Env) start(log string, env []string, name string, args ...string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), MaxLifetime)
	cmd := e.NS.Command(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	f, err := os.Create(filepath.Join(e.Dir, log))
	if err != nil {
		cancel()
		e.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		cancel()
		f.Close()
		e.t.Fatalf("starting %s: %v", name, err)
	}
	e.mu.Lock()
	e.procs = append(e.procs, cmd)
	e.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		cancel()
		f.Close()
	}()
}

// stopAll kills what start started; `ip netns exec` execs its command, so the PID is the server's own.
func (e *Env) stopAll() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, cmd := range e.procs {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	}
	e.procs = nil
}

// Log returns what a server wrote to its log, for failure messages.
func (e *Env) Log(name string) string {
	b, _ := os.ReadFile(filepath.Join(e.Dir, name))
	return string(b)
}

// waitListening polls until something accepts on 127.0.0.1:port inside the namespace.
func (e *Env) waitListening(port int, log string) {
	e.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := e.NS.Do(func() error {
			c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("nothing listens on port %d after 15s: %v\n%s", port, err, e.Log(log))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// URL is the address of a server started on port.
func URL(port int, path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", port, path) }

// NodeSmallWrites starts the Node.js http server that streams BodyBytes of JSON in ~230-byte writes, and
// returns its URL.
func (e *Env) NodeSmallWrites() string {
	e.t.Helper()
	e.start("smallwrites.log", []string{"PORT=" + strconv.Itoa(PortNodeSmallWrites), "HOST=127.0.0.1",
		"BODY_BYTES=" + strconv.Itoa(BodyBytes), "CHUNK_BYTES=230"}, e.node, filepath.Join(e.Dir, "smallwrites.js"))
	e.waitListening(PortNodeSmallWrites, "smallwrites.log")
	return URL(PortNodeSmallWrites, "/")
}

// NodePausingReader starts the Node.js http server that pauses every request body, and returns its URL.
func (e *Env) NodePausingReader() string {
	e.t.Helper()
	e.start("pausing.log", []string{"PORT=" + strconv.Itoa(PortNodePausing), "HOST=127.0.0.1"},
		e.node, filepath.Join(e.Dir, "pausing.js"))
	e.waitListening(PortNodePausing, "pausing.log")
	return URL(PortNodePausing, "/upload")
}

// Nginx starts Debian's nginx with a private prefix and configuration (no daemon, no master process, no
// systemd) serving Dir/www, and returns the URL of the JSON file.
func (e *Env) Nginx() string {
	e.t.Helper()
	prefix := filepath.Join(e.Dir, "nginx")
	conf := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log stderr warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  types { application/json json; }
  server { listen 127.0.0.1:%[2]d; root %[3]s; }
}
`, prefix, PortNginx, filepath.Join(e.Dir, "www"))
	e.write("nginx/nginx.conf", []byte(conf))
	e.start("nginx.log", nil, e.ngx, "-p", prefix, "-c", filepath.Join(prefix, "nginx.conf"), "-e", "stderr")
	e.waitListening(PortNginx, "nginx.log")
	return URL(PortNginx, "/data.json")
}

// Client is how a Python requests client behaves.
type Client struct {
	URL      string
	Parallel int           // processes, each with its own session and connection
	Requests int           // per process, at most
	Duration time.Duration // per process, at most
	// RcvbufBytes > 0 pins SO_RCVBUF (through an HTTPAdapter; the kernel doubles the value).
	RcvbufBytes int
	// Pause > 0 sleeps that long after every PauseEvery bytes read: a reader that falls behind.
	Pause      time.Duration
	PauseEvery int
}

// Requests runs the clients to the end and returns what they printed (requests and bytes per process).
func (e *Env) Requests(ctx context.Context, c Client) (string, error) {
	if c.Parallel <= 0 {
		c.Parallel = 1
	}
	every := c.PauseEvery
	if every <= 0 {
		every = 1
	}
	ctx, cancel := context.WithTimeout(ctx, c.Duration+30*time.Second)
	defer cancel()
	type result struct {
		out []byte
		err error
	}
	res := make(chan result, c.Parallel)
	for range c.Parallel {
		go func() {
			cmd := e.NS.Command(ctx, Python, filepath.Join(e.Dir, "client.py"), c.URL, strconv.Itoa(c.Requests),
				strconv.FormatFloat(c.Duration.Seconds(), 'f', 3, 64), strconv.Itoa(c.RcvbufBytes),
				strconv.FormatFloat(c.Pause.Seconds(), 'f', 4, 64), strconv.Itoa(every))
			out, err := cmd.CombinedOutput()
			res <- result{out, err}
		}()
	}
	var all strings.Builder
	var first error
	for range c.Parallel {
		r := <-res
		all.Write(r.out)
		if r.err != nil && first == nil {
			first = fmt.Errorf("requests client: %w: %s", r.err, r.out)
		}
	}
	return all.String(), first
}

// CurlUploads starts n curl uploads of Dir/upload.bin to url at once and waits until they end or hold has
// passed (a server that never reads never answers: curl's --max-time ends them).
func (e *Env) CurlUploads(ctx context.Context, url string, n int, hold time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, hold+10*time.Second)
	defer cancel()
	errs := make(chan error, n)
	for range n {
		go func() {
			cmd := e.NS.Command(ctx, e.curl, "-sS", "-o", "/dev/null", "--max-time",
				strconv.FormatFloat(hold.Seconds(), 'f', 1, 64), "-H", "Expect:", "-T",
				filepath.Join(e.Dir, "upload.bin"), url)
			out, err := cmd.CombinedOutput()
			// 28: the transfer timed out, which is the point with a server that does not read.
			if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 28 {
				err = nil
			}
			if err != nil {
				err = fmt.Errorf("curl: %w: %s", err, out)
			}
			errs <- err
		}()
	}
	var first error
	for range n {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

// ExporterPackage is what BuildExporter builds.
const ExporterPackage = "github.com/sockbuf/sockbuf_exporter/cmd/sockbuf_exporter"

// startTimeout bounds how long a process may take to answer HTTP after it starts.
const startTimeout = 20 * time.Second

// Require checks what every test of this package needs: root (namespaces), ip and the go tool (to build the
// binary). It skips locally and fails in CI when something is missing.
func Require(t testing.TB) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireBinary(t, "ip", "iproute2")
	goTool(t)
}

// builds holds the binaries built by this test process, by package, in one temporary directory.
var builds struct {
	mu   sync.Mutex
	dir  string
	bins map[string]*builtBinary
}

type builtBinary struct {
	once sync.Once
	path string
	err  error
}

// Main runs the tests and then removes the binaries Build built. Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(e2e.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.dir != "" {
		os.RemoveAll(builds.dir)
	}
	return code
}

func goTool(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	// `go test` runs with the toolchain's bin directory known even when it is not on PATH.
	if root := os.Getenv("GOROOT"); root != "" {
		if p := filepath.Join(root, "bin", "go"); fileExists(p) {
			return p
		}
	}
	if p := "/usr/local/go/bin/go"; fileExists(p) {
		return p
	}
	testenv.Missing(t, "the go tool is needed to build the binaries under test")
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// BuildExporter builds cmd/sockbuf_exporter once per test binary and returns the path of the binary.
func BuildExporter(t testing.TB) string {
	t.Helper()
	return Build(t, ExporterPackage)
}

// TrafficgenPackage is the import path of the traffic generator's command.
const TrafficgenPackage = "github.com/sockbuf/sockbuf_exporter/cmd/sockbuf-trafficgen"

// Build builds a command of this module (static, CGO_ENABLED=0) once per test binary and returns its path.
// Binaries live in a temporary directory that Main removes (without Main, it stays in $TMPDIR).
func Build(t testing.TB, pkg string) string {
	t.Helper()
	gobin := goTool(t)
	builds.mu.Lock()
	if builds.bins == nil {
		builds.bins = map[string]*builtBinary{}
	}
	b := builds.bins[pkg]
	if b == nil {
		b = &builtBinary{}
		builds.bins[pkg] = b
	}
	if builds.dir == "" {
		dir, err := os.MkdirTemp("", "sockbuf-e2e-")
		if err != nil {
			builds.mu.Unlock()
			t.Fatalf("temporary directory for binaries: %v", err)
		}
		builds.dir = dir
	}
	dir := builds.dir
	builds.mu.Unlock()

	b.once.Do(func() {
		b.path = filepath.Join(dir, filepath.Base(pkg))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, gobin, "build", "-buildvcs=false", "-o", b.path, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// FreePort returns a TCP port nobody listens on in ns. A namespace created by the test is empty, so the only
// competitors are the test's own processes. A nil ns is the test process's own namespace (the host's),
// where another process may take the port before it is used.
func FreePort(t testing.TB, ns *testenv.NetNS) int {
	t.Helper()
	var port int
	err := inNS(ns, func() error {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		port = l.Addr().(*net.TCPAddr).Port
		return l.Close()
	})
	if err != nil {
		t.Fatalf("finding a free port in netns %s: %v", nsName(ns), err)
	}
	return port
}

// inNS runs fn inside ns, or right here when ns is nil.
func inNS(ns *testenv.NetNS, fn func() error) error {
	if ns == nil {
		return fn()
	}
	return ns.Do(fn)
}

// nsName names ns in messages.
func nsName(ns *testenv.NetNS) string {
	if ns == nil {
		return "of the test process"
	}
	return ns.Name
}

// Client returns an HTTP client whose connections are opened inside ns, to reach what listens there on
// 127.0.0.1. Its idle connections are closed when the test ends A nil ns is the test process's own namespace.
func Client(t testing.TB, ns *testenv.NetNS) *http.Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := inNS(ns, func() (err error) {
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
		MaxIdleConnsPerHost: 16,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// process is a program running inside a namespace, its output kept for the test log.
type process struct {
	name string
	cmd  *exec.Cmd
	logs *LockedBuffer
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, valid once done is closed
}

// startProcess starts bin inside ns (nil: the test process's own namespace) and stops it when the test ends,
// writing its output to the test log if the test failed.
func startProcess(t testing.TB, ns *testenv.NetNS, name, bin string, args ...string) *process {
	t.Helper()
	return startProcessAs(t, ns, nil, name, bin, args...)
}

// startProcessAs is startProcess with the process run as cred (nil: as the test process).
func startProcessAs(t testing.TB, ns *testenv.NetNS, cred *syscall.Credential, name, bin string, args ...string) *process {
	t.Helper()
	var cmd *exec.Cmd
	if ns == nil {
		cmd = exec.Command(bin, args...)
	} else {
		cmd = ns.Command(context.Background(), bin, args...)
	}
	// If the test binary dies, its children must not outlive it holding the namespace.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: cred}
	return runProcess(t, name, cmd, args)
}

// runProcess starts cmd, a process called name run with args, and stops it when the test ends, writing its
// output to the test log if the test failed.
func runProcess(t testing.TB, name string, cmd *exec.Cmd, args []string) *process {
	t.Helper()
	p := &process{name: name, cmd: cmd, logs: &LockedBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Errorf("stopping %s: %v", name, err)
		}
		if t.Failed() {
			t.Logf("%s %s output:\n%s", name, strings.Join(args, " "), p.logs.tail(64<<10))
		}
	})
	return p
}

// Process is a program started by StartProcess.
type Process struct{ p *process }

// StartProcess starts bin inside ns (nil: the test process's own namespace), as cred when it is not nil,
// and stops it when the test ends (SIGTERM, then SIGKILL after 10s), writing its output to the test log if
// the test failed. `ip netns exec` needs root: give a cred only with a nil ns.
func StartProcess(t testing.TB, ns *testenv.NetNS, cred *syscall.Credential, name, bin string, args ...string) *Process {
	t.Helper()
	return &Process{startProcessAs(t, ns, cred, name, bin, args...)}
}

// Pid is the process's id.
func (p *Process) Pid() int { return p.p.cmd.Process.Pid }

// Logs returns what the process wrote to stdout and stderr so far.
func (p *Process) Logs() string { return p.p.logs.String() }

// WaitHTTP polls url with client until it answers 200 (or 401: up, and wanting credentials); it fails the
// test when the process exits first or 20s pass.
func (p *Process) WaitHTTP(t testing.TB, client *http.Client, url string) {
	t.Helper()
	p.p.waitHTTP(t, client, url)
}

// stop sends SIGTERM and, if the process has not exited within 10 seconds, SIGKILL. `ip netns exec` execs
// the program, so the signal reaches it directly.
func (p *process) stop() error {
	select {
	case <-p.done:
		return nil // exited on its own: a test that cares checks exited()
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
	}
	p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("%s ignored SIGTERM for 10s and was killed", p.name)
}

// exited reports whether the process has ended, and how.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// waitHTTP polls url until it answers 200, the process exits or startTimeout passes.
func (p *process) waitHTTP(t testing.TB, client *http.Client, url string) {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	var last error
	for time.Now().Before(deadline) {
		if done, err := p.exited(); done {
			t.Fatalf("%s exited before answering %s: %v\n%s", p.name, url, err, p.logs.tail(16<<10))
		}
		resp, err := client.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			// 401: the server is up and wants credentials (--web.config.file with basic auth).
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s did not answer %s within %s: %v\n%s", p.name, url, startTimeout, last, p.logs.tail(16<<10))
}

// LockedBuffer is a bytes.Buffer that several goroutines may write: a process's output, written from exec's
// copying goroutines, or a logger's.
type LockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *LockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// tail returns the last n bytes, which hold the error when a long-running process fails.
func (b *LockedBuffer) tail(n int) string {
	s := b.String()
	if len(s) > n {
		return "...\n" + s[len(s)-n:]
	}
	return s
}

// get fetches url with the given headers and returns the status code and body.
func get(client *http.Client, url string, header http.Header) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, body, fmt.Errorf("reading %s: %w", url, err)
	}
	return resp.StatusCode, body, nil
}

// tempDir is a directory removed at the end of the test; t.TempDir cannot be used by processes that still
// write there while t.TempDir's cleanup runs, so this one is removed after they stopped (cleanups run last
// registered first).
func tempDir(t testing.TB, pattern string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("removing %s: %v", dir, err)
		}
	})
	return dir
}

// startConfigured writes a server's config file into dir, starts bin inside ns on a free port with the
// flags args builds, and waits until readyPath answers. The config goes to the test log if the test fails.
func startConfigured(t testing.TB, ns *testenv.NetNS, name, bin, dir, cfgName, cfgText, readyPath string,
	args func(cfgPath, addr string) []string) (string, *http.Client, *process) {
	t.Helper()
	cfgPath := filepath.Join(dir, cfgName)
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", FreePort(t, ns))
	client := Client(t, ns)
	proc := startProcess(t, ns, name, bin, args(cfgPath, addr)...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s:\n%s", cfgName, cfgText)
		}
	})
	proc.waitHTTP(t, client, "http://"+addr+readyPath)
	return addr, client, proc
}

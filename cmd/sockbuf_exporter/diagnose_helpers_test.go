package main

// Helpers of the end-to-end tests of `sockbuf_exporter diagnose` and /diagnose: the JSON contract decoded
// strictly, the binary run inside a namespace, and traffic kept going in the background.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sockbuf/sockbuf_exporter/internal/e2e"
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
	"github.com/sockbuf/sockbuf_exporter/internal/trafficgen"
)

// report is the JSON contract of docs/diagnose.md, decoded strictly.
type report struct {
	WindowSeconds *float64  `json:"window_seconds"`
	Findings      []finding `json:"findings"`
}

type finding struct {
	Cause      string   `json:"cause"`
	Confidence string   `json:"confidence"`
	Scope      *scope   `json:"scope"`
	Evidence   []string `json:"evidence"`
	Fix        []string `json:"fix"`
	Verify     *string  `json:"verify"`
}

type scope struct {
	Role    *string `json:"role"`
	Port    *string `json:"port"`
	Cgroup  *string `json:"cgroup"`
	Process *string `json:"process"`
}

// hostWide are the causes about the whole machine, which the namespace tests do not control.
var hostWide = map[string]bool{"softnet_backlog": true, "tcp_mem_pressure": true, "cgroup_memory_pressure": true}

// decodeReport parses the JSON contract and checks its shape: every key present, findings a list, every
// confidence one of the three, evidence and fix lists.
func decodeReport(t *testing.T, body []byte) report {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var r report
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("decoding the report: %v\n%s", err, body)
	}
	if r.WindowSeconds == nil || r.Findings == nil {
		t.Fatalf("report lacks window_seconds or findings (must be a list, even empty):\n%s", body)
	}
	for i, f := range r.Findings {
		if f.Cause == "" || f.Scope == nil || f.Scope.Role == nil || f.Scope.Port == nil || f.Scope.Cgroup == nil ||
			f.Scope.Process == nil || f.Evidence == nil || f.Fix == nil || f.Verify == nil {
			t.Errorf("finding %d lacks a key of the contract:\n%s", i, body)
		}
		switch f.Confidence {
		case "high", "medium", "low":
		default:
			t.Errorf("finding %d: confidence %q", i, f.Confidence)
		}
	}
	return r
}

// diagnoseIn runs the built binary's diagnose command inside ns for d and returns its report; it must exit 0.
func diagnoseIn(t *testing.T, ns *testenv.NetNS, d time.Duration, extra ...string) report {
	t.Helper()
	r, _ := diagnoseErr(t, ns, d, extra...)
	return r
}

// diagnoseErr is diagnoseIn that also returns what the command wrote on stderr.
func diagnoseErr(t *testing.T, ns *testenv.NetNS, d time.Duration, extra ...string) (report, string) {
	t.Helper()
	return diagnoseWith(t, ns.Command, d, extra...)
}

// diagnoseWith runs diagnose through command (NetNS.Command, or NetNS.CommandKeepSys for a run that must see
// the host's cgroup hierarchies).
func diagnoseWith(t *testing.T, command func(ctx context.Context, name string, args ...string) *exec.Cmd, d time.Duration, extra ...string) (report, string) {
	t.Helper()
	bin := e2e.BuildExporter(t)
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := command(ctx, bin, append([]string{"diagnose", "--format=json", "--duration=" + d.String()}, extra...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("sockbuf_exporter diagnose: %v\nstderr: %s\nstdout: %s", err, stderr.String(), stdout.String())
	}
	t.Logf("diagnose --format=json:\n%s", stdout.String())
	return decodeReport(t, stdout.Bytes()), stderr.String()
}

// firstLocal is the most harmful finding about the namespace (not about the whole host).
func firstLocal(r report) (finding, bool) {
	for _, f := range r.Findings {
		if !hostWide[f.Cause] {
			return f, true
		}
	}
	return finding{}, false
}

// wantFirst checks the first namespace finding's cause, role and port.
func wantFirst(t *testing.T, r report, cause, role string, port int) {
	t.Helper()
	f, ok := firstLocal(r)
	if !ok {
		t.Fatalf("no namespace finding; want %s for %s port %d", cause, role, port)
	}
	if f.Cause != cause || *f.Scope.Role != role || *f.Scope.Port != strconv.Itoa(port) {
		t.Fatalf("first finding: %s (%s) for role %q port %q; want %s for role %q port %d",
			f.Cause, f.Confidence, *f.Scope.Role, *f.Scope.Port, cause, role, port)
	}
}

// background runs traffic inside ns on a goroutine of its own until the test ends (or the traffic's own
// bounds end it). fn sets its sockets up, calls ready with the port that names the group, then drives the
// traffic until ctx ends. background returns that port.
func background(t *testing.T, ns *testenv.NetNS, fn func(ctx context.Context, ready func(port int)) error) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	portc := make(chan int, 1)
	done := make(chan error, 1)
	go func() {
		done <- ns.Do(func() error { return fn(ctx, func(p int) { portc <- p }) })
	}()
	var port int
	select {
	case port = <-portc:
	case err := <-done:
		cancel()
		t.Fatalf("traffic ended before it started: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("traffic not set up within 30s")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("traffic: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("traffic did not stop within 30s")
		}
	})
	return port
}

// pruneLoad is trafficgen's 1-byte load on a listener with opts, until ctx ends.
func pruneLoad(opts trafficgen.Options) func(ctx context.Context, ready func(int)) error {
	return func(ctx context.Context, ready func(int)) error {
		opts.Duration = time.Minute
		l, err := trafficgen.NewLoad(ctx, opts)
		if err != nil {
			return err
		}
		defer l.Close()
		if err := warmUp(ctx, l, "TCPRcvCollapsed"); err != nil {
			return err
		}
		ready(l.Port())
		_, err = l.Run(ctx)
		return err
	}
}

// connected opens a listener (rcvbuf as trafficgen.ListenConfig.RcvBuf) and n connections to it, all in the
// calling thread's namespace, and waits until the server accepted them.
func connected(ctx context.Context, n, rcvbuf int) (*trafficgen.Server, *trafficgen.Clients, error) {
	srv, err := trafficgen.Listen(trafficgen.ListenConfig{RcvBuf: rcvbuf})
	if err != nil {
		return nil, nil, err
	}
	cl, err := trafficgen.Dial(ctx, srv.Addr(), n, trafficgen.DialConfig{})
	if err != nil {
		srv.Close()
		return nil, nil, err
	}
	if err := srv.WaitAccepted(n, 10*time.Second); err != nil {
		cl.Close()
		srv.Close()
		return nil, nil, err
	}
	return srv, cl, nil
}

// writeUntil writes chunk to every connection in turn until ctx ends, or until until (when not nil) says so
// after a round; a write that finds the connection's buffers full gives up after a millisecond and the next
// connection is tried.
func writeUntil(ctx context.Context, conns []*net.TCPConn, chunk []byte, until func(full bool) bool) error {
	for ctx.Err() == nil {
		full := true // every write of the round found its buffers full
		for _, c := range conns {
			c.SetWriteDeadline(time.Now().Add(time.Millisecond))
			n, err := c.Write(chunk)
			if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				return err
			}
			full = full && n < len(chunk)
		}
		if until != nil && until(full) {
			return nil
		}
	}
	return ctx.Err()
}

// filled stops writeUntil once a round found every connection full, or after 10s.
func filled() func(bool) bool {
	deadline := time.Now().Add(10 * time.Second)
	return func(full bool) bool { return full || time.Now().After(deadline) }
}

// warmUp runs a trafficgen load until the namespace's counter moved (or 10s passed), so that the diagnosis
// starts on a namespace where the harm is happening, however slowly a loaded machine set it up. It must run
// on the namespace's thread (it reads /proc/thread-self/net).
func warmUp(ctx context.Context, l *trafficgen.Load, counter string) error {
	base, err := trafficgen.ReadNetstat()
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = l.RunUntil(wctx, trafficgen.Moved(base, counter))
	return err
}

// readUntil reads every connection until ctx ends, pausing pause between rounds (0: as fast as it can), and
// adds what it read to total when not nil.
func readUntil(ctx context.Context, conns []*net.TCPConn, pause time.Duration, total *atomic.Int64) {
	buf := make([]byte, 1<<20)
	for ctx.Err() == nil {
		for _, c := range conns {
			for {
				c.SetReadDeadline(time.Now().Add(time.Millisecond))
				n, err := c.Read(buf)
				if total != nil {
					total.Add(int64(n))
				}
				if err != nil || n == 0 {
					break
				}
			}
		}
		if pause > 0 {
			time.Sleep(pause)
		}
	}
}

package main

// End-to-end tests of `sockbuf_exporter diagnose` (issue 14): for every cause that a network namespace can
// produce safely, real traffic inside a namespace the test creates, then the built binary run there as
// `sockbuf_exporter diagnose --format=json`, and a check of the first finding's cause and scope. The
// namespace-local findings are checked; the host-wide ones (softnet_backlog, tcp_mem_pressure,
// cgroup_memory_pressure) are skipped over when picking the first finding, because other processes of this
// shared machine move softnet_stat and TCP memory at any time (and the 1-byte loads of these tests overflow
// loopback's per-CPU backlog themselves). Those causes are proven by TestDiagnoseFromProcfsTree.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
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
	bin := e2e.BuildExporter(t)
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := ns.Command(ctx, bin, append([]string{"diagnose", "--format=json", "--duration=" + d.String()}, extra...)...)
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

// TestDiagnosePinned: a listener with SO_RCVBUF 8 KiB locked before listen() (accepted sockets inherit
// it), 1-byte writes, a server that never reads: the kernel collapses and drops, the buffer never grows.
// Without the bpf tracer pinning is inferred from the rcvbuf that never grows; with it, it is read from the
// drops' rcvbuf_locked, at high confidence.
func TestDiagnosePinned(t *testing.T) {
	e2e.Require(t)
	ns := testenv.NewNetNS(t)
	port := background(t, ns, pruneLoad(trafficgen.Options{Renew: time.Second}))
	time.Sleep(300 * time.Millisecond)
	t.Run("without bpf", func(t *testing.T) {
		wantFirst(t, diagnoseIn(t, ns, 3*time.Second, "--no-bpf"), "rcvbuf_pinned", "server", port)
	})
	t.Run("with bpf", func(t *testing.T) {
		r, stderr := diagnoseErr(t, ns, 3*time.Second)
		if strings.Contains(stderr, "without the bpf drop tracer") {
			testenv.Missing(t, "bpf drop tracer: %s", stderr)
		}
		wantFirst(t, r, "rcvbuf_pinned", "server", port)
		// The 1-byte load always collapses but drops only on some sets of connections: when it dropped in the
		// window, bpf saw the drops on locked sockets and the finding is sure; when it only collapsed, bpf saw
		// no drop and pinning is inferred as without it.
		f, _ := firstLocal(r)
		ev := strings.Join(f.Evidence, "\n")
		switch {
		case strings.Contains(ev, "rcvbuf_locked=true"):
			if f.Confidence != "high" {
				t.Errorf("bpf saw drops on locked sockets, confidence %s; want high", f.Confidence)
			}
		case strings.Contains(ev, "bpf saw no drop"):
			t.Logf("the kernel collapsed but dropped nothing in this window; confidence %s", f.Confidence)
			if f.Confidence != "medium" {
				t.Errorf("confidence %s; want medium", f.Confidence)
			}
		default:
			t.Errorf("with bpf, the evidence names neither the drops on locked sockets nor their absence: %q", f.Evidence)
		}
	})
}

// hostRmemMax reads net.core.rmem_max, which a network namespace only reads (the host's value).
func hostRmemMax(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/core/rmem_max")
	if err != nil {
		testenv.Missing(t, "reading net.core.rmem_max: %v", err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("net.core.rmem_max: %v", err)
	}
	return v
}

// TestDiagnoseCappedByRmemMax: the listener asks SO_RCVBUF for twice net.core.rmem_max and gets
// 2 × rmem_max (the host's value: the sysctl is read-only in a namespace, and is not changed here); 1-byte
// writes on a few connections overflow even that.
func TestDiagnoseCappedByRmemMax(t *testing.T) {
	e2e.Require(t)
	rm := hostRmemMax(t)
	if rm > 16<<20 {
		testenv.Missing(t, "net.core.rmem_max is %d: 1-byte writes would take too long to overflow 2 × that", rm)
	}
	ns := testenv.NewNetNS(t)
	port := background(t, ns, pruneLoad(trafficgen.Options{RcvBuf: 2 * rm, Conns: 4}))
	time.Sleep(500 * time.Millisecond)
	wantFirst(t, diagnoseIn(t, ns, 4*time.Second), "rcvbuf_capped_by_rmem_max", "server", port)
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

// TestDiagnoseSlowReaderServer: clients upload, the server never reads (a paused reader, issue 10's 4th
// observation): its autotuned buffers fill, its windows close, nothing is collapsed or lost.
func TestDiagnoseSlowReaderServer(t *testing.T) {
	e2e.Require(t)
	ns := testenv.NewNetNS(t)
	port := background(t, ns, func(ctx context.Context, ready func(int)) error {
		srv, cl, err := connected(ctx, 8, 0)
		if err != nil {
			return err
		}
		defer srv.Close()
		defer cl.Close()
		chunk := make([]byte, 64<<10)
		if err := writeUntil(ctx, cl.Conns, chunk, filled()); err != nil {
			return err
		}
		ready(srv.Port())
		return writeUntil(ctx, cl.Conns, chunk, nil)
	})
	wantFirst(t, diagnoseIn(t, ns, 3*time.Second), "slow_reader", "server", port)
}

// TestDiagnoseSlowReaderClient: the server sends, the clients never read (issue 10's slow client): the
// client sockets fill and advertise zero windows; the group is the clients of the server's port.
func TestDiagnoseSlowReaderClient(t *testing.T) {
	e2e.Require(t)
	ns := testenv.NewNetNS(t)
	port := background(t, ns, func(ctx context.Context, ready func(int)) error {
		srv, cl, err := connected(ctx, 8, 0)
		if err != nil {
			return err
		}
		defer srv.Close()
		defer cl.Close()
		chunk := make([]byte, 64<<10)
		if err := writeUntil(ctx, srv.Conns(), chunk, filled()); err != nil {
			return err
		}
		ready(srv.Port())
		return writeUntil(ctx, srv.Conns(), chunk, nil)
	})
	wantFirst(t, diagnoseIn(t, ns, 3*time.Second), "slow_reader", "client", port)
}

// TestDiagnoseTCPRmemMaxLow: net.ipv4.tcp_rmem (per namespace) with its max at its default, 64 KiB, so
// autotuned sockets start at the max; 1-byte writes from many clients to a server that does read, in rounds
// 20ms apart: the queues overflow their buffers between rounds (collapse, drops) while the windows stay open.
func TestDiagnoseTCPRmemMaxLow(t *testing.T) {
	e2e.Require(t)
	ns := testenv.NewNetNS(t)
	ns.MustRun(t, "sh", "-c", "echo '4096 65536 65536' > /proc/sys/net/ipv4/tcp_rmem")
	port := background(t, ns, func(ctx context.Context, ready func(int)) error {
		l, err := trafficgen.NewLoad(ctx, trafficgen.Options{RcvBuf: -1, Duration: time.Minute})
		if err != nil {
			return err
		}
		defer l.Close()
		rctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { readUntil(rctx, l.Server().Conns(), 20*time.Millisecond, nil) })
		defer wg.Wait()
		defer stop()
		if err := warmUp(ctx, l, "TCPRcvCollapsed"); err != nil {
			return err
		}
		ready(l.Port())
		_, err = l.Run(ctx)
		return err
	})
	time.Sleep(500 * time.Millisecond)
	wantFirst(t, diagnoseIn(t, ns, 3*time.Second), "tcp_rmem_max_low", "server", port)
}

// TestDiagnoseAcceptQueueOverflow: a listener with backlog 8 that never accepts, its queue full, and new
// connections knocking every 100ms: ListenOverflows rises and the listener is seen full.
func TestDiagnoseAcceptQueueOverflow(t *testing.T) {
	e2e.Require(t)
	ns := testenv.NewNetNS(t)
	port := background(t, ns, func(ctx context.Context, ready func(int)) error {
		b, err := trafficgen.FullAcceptQueue(ctx, "127.0.0.1:0", 8, 4)
		if err != nil {
			return err
		}
		defer b.Close()
		ready(b.Server.Port())
		for ctx.Err() == nil {
			// Each attempt's SYN is dropped at the full queue (ListenOverflows) until the dial times out.
			if c, err := net.DialTimeout("tcp", b.Server.Addr(), 100*time.Millisecond); err == nil {
				c.Close()
			}
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond)
	wantFirst(t, diagnoseIn(t, ns, 3*time.Second), "accept_queue_overflow", "server", port)
}

// TestDiagnoseHealthy: heavy traffic that the kernel handles without harm — 16 connections uploading in
// 64 KiB writes to a server that reads as fast as it can, autotuned buffers — must give no finding about
// the namespace but growth_only.
func TestDiagnoseHealthy(t *testing.T) {
	e2e.Require(t)
	ns := testenv.NewNetNS(t)
	var read atomic.Int64
	background(t, ns, func(ctx context.Context, ready func(int)) error {
		srv, cl, err := connected(ctx, 16, 0)
		if err != nil {
			return err
		}
		defer srv.Close()
		defer cl.Close()
		rctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { readUntil(rctx, srv.Conns(), 0, &read) })
		defer wg.Wait()
		defer stop()
		ready(srv.Port())
		return writeUntil(ctx, cl.Conns, make([]byte, 64<<10), nil)
	})
	time.Sleep(300 * time.Millisecond)
	before := read.Load()
	r := diagnoseIn(t, ns, 3*time.Second)
	moved := read.Load() - before
	t.Logf("the server read %d MiB during the run", moved>>20)
	if moved < 100<<20 {
		t.Errorf("the server read only %d bytes during the run: not heavy traffic", moved)
	}
	for _, f := range r.Findings {
		if !hostWide[f.Cause] && f.Cause != "growth_only" {
			t.Errorf("healthy traffic gave %s (%s) for %s/%s: %s", f.Cause, f.Confidence, *f.Scope.Role, *f.Scope.Port, strings.Join(f.Evidence, "; "))
		}
	}
}

// TestDiagnoseGrowthOnly: issue 10's first observation, the healthy kind of PruneCalled. A server streams
// in small writes to clients that read as fast as they can, with autotuned buffers: small segments cost
// more truesize than the window allows for, the queue reaches rcvbuf between reads, and tcp_prune_queue
// counts PruneCalled, then tcp_clamp_window grows the buffer and nothing is collapsed or lost. Buffers stop
// growing once they are large enough, so fresh connections replace them every 300ms.
func TestDiagnoseGrowthOnly(t *testing.T) {
	e2e.Require(t)
	ns := testenv.NewNetNS(t)
	background(t, ns, func(ctx context.Context, ready func(int)) error {
		base, err := trafficgen.ReadNetstat()
		if err != nil {
			return err
		}
		moved, deadline := trafficgen.Moved(base, "PruneCalled"), time.Now().Add(10*time.Second)
		chunk := make([]byte, 230)
		for first := true; ctx.Err() == nil; {
			srv, cl, err := connected(ctx, 4, 0)
			if err != nil {
				return err
			}
			rctx, stop := context.WithCancel(ctx)
			var wg sync.WaitGroup
			wg.Go(func() { readUntil(rctx, cl.Conns, 0, nil) })
			round := time.Now().Add(300 * time.Millisecond)
			err = writeUntil(ctx, srv.Conns(), chunk, func(bool) bool { return time.Now().After(round) })
			if first && (moved() || time.Now().After(deadline)) {
				first = false
				ready(srv.Port())
			}
			stop()
			wg.Wait()
			cl.Close()
			srv.Close()
			if err != nil {
				return err
			}
		}
		return ctx.Err()
	})
	time.Sleep(300 * time.Millisecond)
	r := diagnoseIn(t, ns, 3*time.Second)
	f, ok := firstLocal(r)
	if !ok || f.Cause != "growth_only" || f.Confidence != "low" || *f.Scope.Role != "" || *f.Scope.Port != "" {
		t.Fatalf("first namespace finding %+v; want growth_only, low, for the whole namespace", f)
	}
}

// TestDiagnoseFromProcfsTree proves the host-wide causes that cannot be produced on a shared machine without
// harming everything else on it — TCP memory over net.ipv4.tcp_mem pressure, and the per-CPU input queues
// overflowing (softnet_stat dropped) — with a --path.procfs tree the test writes: the real binary reads it as
// it reads /proc, while the test raises CPU 0's dropped column during the run. backlog_drops is proven the
// same way, with TcpExt TCPBacklogDrop rising: no traffic tried here (pinned small buffers read continuously
// under 1-byte segments) made tcp_add_backlog drop in a namespace, since it coalesces small segments in the
// backlog. cgroup_memory_pressure needs cgroup memory files the collection does not read yet; it is proven
// by the rule's table tests in package diagnose only.
func TestDiagnoseFromProcfsTree(t *testing.T) {
	e2e.Require(t)
	root := t.TempDir()
	write := func(path, content string) {
		t.Helper()
		p := root + "/" + path
		if err := os.MkdirAll(p[:strings.LastIndex(p, "/")], 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	copyProc := func(path string) {
		t.Helper()
		b, err := os.ReadFile("/proc/" + path)
		if err != nil {
			t.Fatal(err)
		}
		write(path, string(b))
	}
	netstatHead := "TcpExt: PruneCalled TCPRcvCollapsed TCPBacklogDrop ListenOverflows\nTcpExt: 0 0 "
	write("net/netstat", netstatHead+"0000000000 0\n")
	copyProc("net/snmp")
	for _, s := range []string{"core/rmem_max", "core/rmem_default", "ipv4/tcp_rmem", "core/somaxconn"} {
		copyProc("sys/net/" + s)
	}
	write("sys/net/ipv4/tcp_mem", "100000\t200000\t300000\n")
	write("sys/net/core/netdev_max_backlog", "1000\n")
	write("net/sockstat", "sockets: used 900\nTCP: inuse 800 orphan 0 tw 10 alloc 800 mem 250000\nUDP: inuse 0 mem 0\n")
	row := "00001000 00000010 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 %08x 00000000 00000000\n"
	write("net/softnet_stat", fmt.Sprintf(row, 0)+fmt.Sprintf(row, 1))

	// CPU 0's dropped column (the second, 9 bytes in) and TCPBacklogDrop rise by 16 every 50ms, written in
	// place (fixed width) so that the descriptors the binary keeps open see them.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		softnet, err := os.OpenFile(root+"/net/softnet_stat", os.O_WRONLY, 0)
		if err != nil {
			t.Error(err)
			return
		}
		defer softnet.Close()
		netstat, err := os.OpenFile(root+"/net/netstat", os.O_WRONLY, 0)
		if err != nil {
			t.Error(err)
			return
		}
		defer netstat.Close()
		for v := 0x10; ctx.Err() == nil && v < 0xffffff; v += 16 {
			if _, err := softnet.WriteAt([]byte(fmt.Sprintf("%08x", v)), 9); err != nil {
				t.Error(err)
				return
			}
			if _, err := netstat.WriteAt([]byte(fmt.Sprintf("%010d", v)), int64(len(netstatHead))); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	defer wg.Wait()
	defer cancel()

	ns := testenv.NewNetNS(t)
	r := diagnoseIn(t, ns, time.Second, "--no-bpf", "--path.procfs="+root)
	got := map[string]finding{}
	for _, f := range r.Findings {
		got[f.Cause] = f
	}
	for _, cause := range []string{"softnet_backlog", "tcp_mem_pressure"} {
		f, ok := got[cause]
		if !ok {
			t.Errorf("no %s finding", cause)
			continue
		}
		if f.Confidence != "high" || *f.Scope.Role+*f.Scope.Port+*f.Scope.Cgroup+*f.Scope.Process != "" {
			t.Errorf("%s: confidence %s, scope %+v; want high for the whole host", cause, f.Confidence, f.Scope)
		}
	}
	if f, ok := got["backlog_drops"]; !ok || f.Confidence != "medium" || *f.Scope.Role+*f.Scope.Port != "" {
		t.Errorf("backlog_drops: %+v; want medium for the namespace (without bpf it cannot be split by group)", f)
	}
	if len(r.Findings) == 0 || r.Findings[0].Cause != "softnet_backlog" {
		t.Errorf("first finding is not softnet_backlog (packets lost) but %v", r.Findings)
	}
}

// TestDiagnoseInternalError: a procfs path without the TCP counters leaves nothing to diagnose; the command
// says so and exits 1 instead of printing an empty, reassuring report.
func TestDiagnoseInternalError(t *testing.T) {
	e2e.Require(t)
	ns := testenv.NewNetNS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := ns.Command(ctx, e2e.BuildExporter(t), "diagnose", "--duration=300ms", "--no-bpf", "--format=json", "--path.procfs="+t.TempDir())
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("exit: %v; want status 1\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	if stdout.Len() != 0 || !strings.Contains(stderr.String(), "cannot diagnose") || !strings.Contains(stderr.String(), "netstat") {
		t.Errorf("stdout %q, stderr %q; want no report and the reason, naming the file", stdout.String(), stderr.String())
	}
}

package main

// End-to-end tests of `sockbuf_exporter diagnose` (issue 14): for every cause that a network namespace can
// produce safely, real traffic inside a namespace the test creates, then the built binary run there as
// `sockbuf_exporter diagnose --format=json`, and a check of the first finding's cause and scope. The
// namespace-local findings are checked; the host-wide ones (softnet_backlog, tcp_mem_pressure,
// cgroup_memory_pressure) are skipped over when picking the first finding, because other processes of this
// shared machine move softnet_stat and TCP memory at any time (and the 1-byte loads of these tests overflow
// loopback's per-CPU backlog themselves). Those causes are proven by TestDiagnoseFromProcfsTree.

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sockbuf/sockbuf_exporter/internal/e2e"
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
	"github.com/sockbuf/sockbuf_exporter/internal/trafficgen"
)

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
	t.Run("cgroup scope", func(t *testing.T) {
		// A load whose sockets are created in a cgroup of their own: the scope names it as the sockets
		// collector would.
		mount := filepath.Join(t.TempDir(), "cgroup2")
		if err := os.Mkdir(mount, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mount("none", mount, "cgroup2", 0, ""); err != nil {
			testenv.Missing(t, "mounting cgroup2: %v", err)
		}
		t.Cleanup(func() { syscall.Unmount(mount, syscall.MNT_DETACH) })
		name := fmt.Sprintf("sbdiag-%d", os.Getpid())
		own := testenv.NewNetNS(t) // the parent's load stays out of this diagnosis
		port := inCgroup(t, mount, name, func() int {
			return background(t, own, pruneLoad(trafficgen.Options{Renew: time.Second}))
		})
		time.Sleep(300 * time.Millisecond)
		r := diagnoseIn(t, own, 3*time.Second, "--no-bpf", "--collector.sockets.cgroup-root="+mount)
		wantFirst(t, r, "rcvbuf_pinned", "server", port)
		if f, _ := firstLocal(r); *f.Scope.Cgroup != name {
			t.Errorf("scope cgroup %q, want %q (the cgroup the sockets were created in)", *f.Scope.Cgroup, name)
		}
	})
	t.Run("with bpf", func(t *testing.T) {
		r, stderr := diagnoseErr(t, ns, 3*time.Second)
		if strings.Contains(stderr, "without the bpf drop tracer") {
			testenv.Missing(t, "bpf drop tracer: %s", stderr)
		}
		if strings.Contains(stderr, "without the bpf socket iterator") {
			testenv.Missing(t, "bpf socket iterator: %s", stderr)
		}
		wantFirst(t, r, "rcvbuf_pinned", "server", port)
		// The 1-byte load always collapses but drops only on some sets of connections: when it dropped in the
		// window, bpf saw the drops on locked sockets; when it only collapsed, the socket iterator's lock bits
		// still say the sockets are pinned. Either way the finding is sure.
		f, _ := firstLocal(r)
		ev := strings.Join(f.Evidence, "\n")
		if !strings.Contains(ev, "rcvbuf_locked=true") && !strings.Contains(ev, "had SO_RCVBUF set (SOCK_RCVBUF_LOCK)") {
			t.Errorf("with bpf, the evidence names neither the drops on locked sockets nor the lock bits: %q", f.Evidence)
		}
		if f.Confidence != "high" {
			t.Errorf("confidence %s; want high (bpf reads pinning)", f.Confidence)
		}
		// The load runs in this test process: the scope names it (diagnose reads /proc/<pid>/fd).
		if comm, err := os.ReadFile("/proc/self/comm"); err != nil {
			t.Fatal(err)
		} else if want := strings.TrimSpace(string(comm)); *f.Scope.Process != want {
			t.Errorf("scope process %q, want %q (the process holding the sockets)", *f.Scope.Process, want)
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

// TestDiagnoseSlowReader: one side writes, the other never reads, and the group of the readers is named.
// Server: clients upload, the server never reads (a paused reader, issue 10's 4th observation): its
// autotuned buffers fill, its windows close, nothing is collapsed or lost. Client: the server sends, the
// clients never read (issue 10's slow client): the client sockets fill and advertise zero windows; the
// group is the clients of the server's port.
func TestDiagnoseSlowReader(t *testing.T) {
	e2e.Require(t)
	for _, role := range []string{"server", "client"} {
		t.Run(role, func(t *testing.T) {
			ns := testenv.NewNetNS(t)
			port := background(t, ns, func(ctx context.Context, ready func(int)) error {
				srv, cl, err := connected(ctx, 8, 0)
				if err != nil {
					return err
				}
				defer srv.Close()
				defer cl.Close()
				writers := cl.Conns // the server is the reader
				if role == "client" {
					writers = srv.Conns()
				}
				chunk := make([]byte, 64<<10)
				if err := writeUntil(ctx, writers, chunk, filled()); err != nil {
					return err
				}
				ready(srv.Port())
				return writeUntil(ctx, writers, chunk, nil)
			})
			wantFirst(t, diagnoseIn(t, ns, 3*time.Second), "slow_reader", role, port)
		})
	}
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

// inCgroup runs fn with this test process moved into a new child cgroup name of the cgroup v2 hierarchy at
// mount, so that the sockets fn creates are charged to it, and moves the process back afterwards (the
// cgroup is removed when the test ends, once its sockets are closed).
func inCgroup[T any](t *testing.T, mount, name string, fn func() T) T {
	t.Helper()
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	var orig string
	for _, line := range strings.Split(string(own), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			orig = p
		}
	}
	dir := filepath.Join(mount, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(dir) })
	pid := []byte(strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), pid, 0); err != nil {
		testenv.Missing(t, "moving the test into a child cgroup: %v", err)
	}
	defer func() {
		if err := os.WriteFile(filepath.Join(mount, orig, "cgroup.procs"), pid, 0); err != nil {
			t.Errorf("moving the test back to cgroup %s: %v", orig, err)
		}
	}()
	return fn()
}

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockbuf/sockbuf_exporter/internal/e2e"
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

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

//go:build linux

package main

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

// memcgReceiver accepts 8 connections, then reads each a little every 10 ms: slower than the sender
// writes, so data waits in its receive queues, charged to its memory cgroup. It prints its port once
// listening and stops by itself after 25 s.
const memcgReceiver = `
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(16)
print(s.getsockname()[1], flush=True)
cs = [s.accept()[0] for _ in range(8)]
for c in cs:
    c.setblocking(False)
end = time.time() + 25
while time.time() < end:
    for c in cs:
        try:
            c.recv(16384)
        except BlockingIOError:
            pass
    time.sleep(0.01)
`

// memcgSender floods 8 connections with 64 KB writes for at most 25 s or 200,000 writes.
const memcgSender = `
import socket, sys, time
cs = [socket.create_connection(("127.0.0.1", int(sys.argv[1]))) for _ in range(8)]
for c in cs:
    c.setblocking(False)
buf = b"x" * 65536
end, writes = time.time() + 25, 0
while time.time() < end and writes < 200000:
    for c in cs:
        try:
            c.send(buf)
            writes += 1
        except BlockingIOError:
            pass
    time.sleep(0.001)
`

// TestDiagnoseCgroupMemoryPressure produces cgroup_memory_pressure for real: a receiver in a memory cgroup
// whose TCP memory is limited (cgroup v1 memory.kmem.tcp.limit_in_bytes; accepted sockets are charged to the
// memory cgroup of the task that accepts them) falls behind a sender outside it, and the kernel drops what
// it cannot charge. diagnose, seeing the host's cgroups, names the cgroup and the receiver's group and process.
// After the fix (the same traffic, the limit lifted) the cause is gone.
func TestDiagnoseCgroupMemoryPressure(t *testing.T) {
	python := testenv.RequireBinary(t, "python3", "python3")
	for _, tc := range []struct {
		name  string
		limit int // 0: a memory cgroup without a TCP limit, the fix
	}{{"limited", 300000}, {"after the fix", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			ns := testenv.NewNetNS(t)
			var dir, path string
			if tc.limit > 0 {
				dir, path = testenv.TCPLimitedMemcg(t, "sbdiag-memcg", tc.limit)
			} else {
				// The fix: TCP memory no longer limited. A limit once written cannot be unset (the kernel
				// keeps TCP accounting on), so the fixed receiver runs in a cgroup with the largest limit.
				dir, path = testenv.TCPLimitedMemcg(t, "sbdiag-memcg-fixed", 1<<40)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			recv := ns.StartReceiver(t, ctx, []string{dir}, python, "-c", memcgReceiver)
			port := recv.Port
			send := ns.Command(ctx, python, "-c", memcgSender, strconv.Itoa(port))
			if err := send.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { send.Process.Kill(); send.Wait() }) //nolint:errcheck // killed by the test
			comm, err := os.ReadFile("/proc/" + strconv.Itoa(recv.PID) + "/comm")
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second) // the connections made and the queues filling
			r, stderr := diagnoseWith(t, ns.CommandKeepSys, 6*time.Second)
			if strings.Contains(stderr, "without the bpf drop tracer") {
				testenv.Missing(t, "diagnose could not load the bpf drop tracer: %s", stderr)
			}
			var found *finding
			for i := range r.Findings {
				if r.Findings[i].Cause == "cgroup_memory_pressure" {
					found = &r.Findings[i]
					break
				}
			}
			if tc.limit == 0 {
				if found != nil {
					t.Fatalf("after the fix: cgroup_memory_pressure still found: %+v", *found)
				}
				return
			}
			if found == nil {
				t.Fatalf("no cgroup_memory_pressure finding for the receiver in %s", path)
			}
			if f, _ := firstNotHost(r); f.Cause != "cgroup_memory_pressure" {
				t.Errorf("first finding %s, want cgroup_memory_pressure first", f.Cause)
			}
			sc := found.Scope
			if *sc.Cgroup != path || *sc.Role != "server" || *sc.Port != strconv.Itoa(port) || *sc.Process != strings.TrimSpace(string(comm)) {
				t.Errorf("scope cgroup %q role %q port %q process %q; want %q server %d %q",
					*sc.Cgroup, *sc.Role, *sc.Port, *sc.Process, path, port, strings.TrimSpace(string(comm)))
			}
			// With the bpf tracer the drops are tied to the receiver's sockets: high confidence.
			if found.Confidence != "high" {
				t.Errorf("confidence %s, want high (the bpf tracer attributes the drops)", found.Confidence)
			}
		})
	}
}

// firstNotHost is the first finding that is not about host-wide settings (softnet, tcp_mem), which other
// tests on the machine can move.
func firstNotHost(r report) (finding, bool) {
	for _, f := range r.Findings {
		if f.Cause != "softnet_backlog" && f.Cause != "tcp_mem_pressure" {
			return f, true
		}
	}
	return finding{}, false
}

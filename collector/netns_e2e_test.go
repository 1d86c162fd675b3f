//go:build linux

package collector

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockbuf/sockbuf_exporter/internal/e2e"
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
	"github.com/sockbuf/sockbuf_exporter/internal/trafficgen"
)

// nsPruneCalled reads a namespace's PruneCalled the way a person would: `ip netns exec NS cat /proc/net/netstat`.
func nsPruneCalled(t *testing.T, ns *testenv.NetNS) uint64 {
	t.Helper()
	n, err := trafficgen.ParseNetstat(strings.NewReader(ns.MustRun(t, "cat", "/proc/net/netstat")))
	if err != nil {
		t.Fatal(err)
	}
	v, ok := n.Get("TcpExt", "PruneCalled")
	if !ok {
		t.Fatal("no TcpExt PruneCalled in /proc/net/netstat")
	}
	return v
}

// nsInode is the inode of a namespace's /run/netns bind mount, the value of the netns_inode label.
func nsInode(t *testing.T, path string) string {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(st.Ino)
}

// TestNetnsEndToEnd runs the exporter in the host's namespace with --collector.netns, a sleeping process in
// each of two namespaces, pruning in one of them, and checks what it reports for each against the
// namespace's own /proc/net/netstat.
func TestNetnsEndToEnd(t *testing.T) {
	e2e.Require(t)
	pruned, idle := testenv.NewNetNS(t), testenv.NewNetNS(t)
	// The namespaces' only processes; the collector finds namespaces through processes, not /run/netns.
	startInNS(t, pruned, "", "sleep", "300")
	startInNS(t, idle, "", "sleep", "300")

	err := pruned.Do(func() error {
		base, err := trafficgen.ReadNetstat()
		if err != nil {
			return err
		}
		_, err = trafficgen.Prune(context.Background(), trafficgen.Options{Duration: 20 * time.Second,
			Until: func() bool {
				now, err := trafficgen.ReadNetstat()
				return err != nil || now.Sub(base)["TcpExt"]["PruneCalled"] > 0
			}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// Quiescent: two reads 200ms apart agree.
	want := nsPruneCalled(t, pruned)
	for deadline := time.Now().Add(5 * time.Second); ; {
		time.Sleep(200 * time.Millisecond)
		again := nsPruneCalled(t, pruned)
		if again == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("PruneCalled still moving 5s after the traffic stopped: %d then %d", want, again)
		}
		want = again
	}
	if want == 0 {
		t.Fatal("the traffic did not prune")
	}

	// Other tests' namespaces may be there too: the cap must not push ours out.
	exp := e2e.StartExporter(t, nil, "--collector.netns", "--collector.netns.max-namespaces=10000")
	m := exp.Scrape(t)
	if v := m[`sockbuf_scrape_collector_success{collector="netns"}`]; v != 1 {
		t.Fatalf("netns collector failed:\n%s", exp.Logs())
	}
	for _, tc := range []struct {
		ns   *testenv.NetNS
		want uint64
	}{{pruned, want}, {idle, 0}} {
		series := fmt.Sprintf(`sockbuf_netns_tcp_prune_called_total{netns="%s",netns_inode="%s"}`, tc.ns.Name, nsInode(t, tc.ns.Path))
		got, ok := m[series]
		if !ok {
			var have []string
			for k := range m.Select("sockbuf_netns_tcp_prune_called_total", nil) {
				have = append(have, k)
			}
			t.Errorf("%s missing; there are:\n%s", series, strings.Join(have, "\n"))
			continue
		}
		t.Logf("%s = %g", series, got)
		if uint64(got) != tc.want {
			t.Errorf("%s = %g, want %d (ip netns exec %s cat /proc/net/netstat)", series, got, tc.want, tc.ns.Name)
		}
		if !m.Has("sockbuf_netns_tcp_in_segments_total") {
			t.Error("sockbuf_netns_tcp_in_segments_total missing")
		}
	}
	// The exporter's own namespace, the host's, is the netstat collector's.
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	selfIno, _ := parseNetnsLink(self)
	for series := range m.Select("sockbuf_netns_tcp_prune_called_total", nil) {
		if strings.Contains(series, fmt.Sprintf(`netns_inode="%d"`, selfIno)) {
			t.Errorf("the exporter's own namespace is exported: %s", series)
		}
	}
	if n := m["sockbuf_netns_namespaces"]; n < 2 {
		t.Errorf("sockbuf_netns_namespaces = %g, want at least 2", n)
	}
}

// BenchmarkNetnsRealProc measures a steady-state scrape on this host's /proc with 50 extra namespaces, a
// process in each: the kernel's cost of generating each namespace's netstat and snmp included.
func BenchmarkNetnsRealProc(b *testing.B) {
	testenv.RequireRoot(b)
	const spaces = 50
	for range spaces {
		ns := testenv.NewNetNS(b)
		cmd := ns.Command(context.Background(), "sleep", "600")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	}
	time.Sleep(200 * time.Millisecond) // until every sleep has joined its namespace
	c := newNetnsCollector(Config{ProcPath: "/proc"})
	benchUpdate(b, c)
	b.ReportMetric(float64(len(c.spaces)), "namespaces")
	b.ReportMetric(float64(len(c.pids)), "pids")
}

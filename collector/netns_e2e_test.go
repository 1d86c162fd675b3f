//go:build linux

package collector

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockbuf/sockbuf_exporter/bpf/sockiter"
	"github.com/sockbuf/sockbuf_exporter/internal/e2e"
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
	"github.com/sockbuf/sockbuf_exporter/internal/trafficgen"
	"github.com/sockbuf/sockbuf_exporter/netns"
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

// nsSockets is what `ip netns exec NS ss -tnmH` shows: the non-listening sockets, the sum of their Recv-Q,
// and those whose skmem r is at least 0.9 (the default --collector.sockets.full-ratio) of rb.
type nsSockets struct{ sockets, recvQueue, full int }

func ssSockets(t *testing.T, ns *testenv.NetNS) nsSockets {
	t.Helper()
	var got nsSockets
	for _, line := range strings.Split(ns.MustRun(t, "ss", "-tnmH"), "\n") {
		if mem, ok := strings.CutPrefix(strings.TrimSpace(line), "skmem:("); ok {
			var r, rb float64
			for _, f := range strings.Split(strings.TrimSuffix(mem, ")"), ",") {
				switch {
				case strings.HasPrefix(f, "rb"):
					rb, _ = strconv.ParseFloat(f[2:], 64)
				case strings.HasPrefix(f, "r"):
					r, _ = strconv.ParseFloat(f[1:], 64)
				}
			}
			if rb > 0 && r >= 0.9*rb {
				got.full++
			}
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		rq, err := strconv.Atoi(fields[1])
		if err != nil {
			t.Fatalf("ss line %q: %v", line, err)
		}
		got.sockets++
		got.recvQueue += rq
	}
	return got
}

// TestNetnsEndToEnd runs the exporter in the host's namespace with --collector.netns and
// --collector.netns.sockets, a sleeping process in each of two namespaces, pruning in one of them and then
// sockets with unread data and over-full buffers, and checks what it reports for each against the
// namespace's own /proc/net/netstat and ss.
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
			Until: trafficgen.Moved(base, "PruneCalled")})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// Sockets of the pruned namespace, opened there and held by this process: connections with known unread
	// bytes, and a load whose server sockets hold 32 KiB over buffers shrunk to 8 KiB (rcvbuf_full_sockets).
	var unread *trafficgen.Conns
	var load *trafficgen.Load
	err = pruned.Do(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var err error
		if unread, err = trafficgen.Unread(ctx, trafficgen.UnreadConfig{Conns: 5, Bytes: 10000}); err != nil {
			return err
		}
		if load, err = trafficgen.NewLoad(ctx, trafficgen.Options{RcvBuf: -1, Conns: 4}); err != nil {
			return err
		}
		return load.Shrink(ctx, 0, 0)
	})
	t.Cleanup(func() {
		unread.Close()
		if load != nil {
			load.Close()
		}
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
	// One exporter per socket engine: both must show what ss shows.
	engines := []string{"netlink", "bpf"}
	if e, err := sockiter.Open(sockiter.Options{}); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("prerequisite missing in CI: the bpf engine: %v", err)
		}
		t.Logf("the bpf engine is not checked: %v", err)
		engines = engines[:1]
	} else {
		e.Close()
	}
	exps := map[string]*e2e.Exporter{}
	for _, engine := range engines {
		exps[engine] = e2e.StartExporter(t, nil, "--collector.netns", "--collector.netns.sockets", "--collector.netns.max-namespaces=10000",
			"--collector.sockets.engine="+engine)
	}
	exp := exps["netlink"]
	// The sockets must not change between ss and the scrapes: ss before and after agree.
	var m e2e.Metrics
	ms := map[string]e2e.Metrics{}
	var wantSocks nsSockets
	for attempt := 1; ; attempt++ {
		wantSocks = ssSockets(t, pruned)
		for engine, e := range exps {
			ms[engine] = e.Scrape(t)
		}
		m = ms["netlink"]
		if again := ssSockets(t, pruned); again == wantSocks {
			break
		} else if attempt == 5 {
			t.Fatalf("the sockets of %s keep changing: ss shows %+v, then %+v", pruned.Name, wantSocks, again)
		}
	}
	// 10 Unread sockets and 8 of the load; 5 × 10000 unread bytes and 4 × 32 KiB; the load's 4 servers full.
	t.Logf("ip netns exec %s ss -tnmH: %+v", pruned.Name, wantSocks)
	if wantSocks.sockets < 18 || wantSocks.recvQueue < 50000+4*trafficgen.DefaultShrinkFill || wantSocks.full < 4 {
		t.Fatalf("ss shows %+v in %s, want at least 18 sockets, %d bytes queued, 4 full", wantSocks, pruned.Name, 50000+4*trafficgen.DefaultShrinkFill)
	}
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
	for engine, m := range ms {
		if !strings.Contains(exps[engine].Logs(), "network namespace sockets engine: "+engine) {
			t.Errorf("engine %s: the exporter does not log it:\n%s", engine, exps[engine].Logs())
		}
		for _, tc := range []struct {
			ns   *testenv.NetNS
			want nsSockets
		}{{pruned, wantSocks}, {idle, nsSockets{}}} {
			labels := fmt.Sprintf(`{netns="%s",netns_inode="%s"}`, tc.ns.Name, nsInode(t, tc.ns.Path))
			for _, v := range []struct {
				name string
				want int
			}{
				{"sockbuf_netns_sockets", tc.want.sockets},
				{"sockbuf_netns_recv_queue_bytes", tc.want.recvQueue},
				{"sockbuf_netns_rcvbuf_full_sockets", tc.want.full},
			} {
				got, ok := m[v.name+labels]
				switch {
				case !ok:
					t.Errorf("engine %s: %s%s missing:\n%s", engine, v.name, labels, exps[engine].Logs())
				case int(got) != v.want:
					t.Errorf("engine %s: %s%s = %g, want %d (ip netns exec %s ss -tnmH)", engine, v.name, labels, got, v.want, tc.ns.Name)
				}
			}
		}
	}
	for _, name := range []string{"sockbuf_netns_socket_dump_errors_total", "sockbuf_netns_socket_dumps_skipped_total"} {
		if !m.Has(name) {
			t.Errorf("%s missing", name)
		}
	}
	// The idle namespace never entered memory pressure; this kernel has both counters.
	idleLabels := fmt.Sprintf(`{netns="%s",netns_inode="%s"}`, idle.Name, nsInode(t, idle.Path))
	for _, name := range []string{"sockbuf_netns_tcp_memory_pressures_total", "sockbuf_netns_tcp_memory_pressure_seconds_total"} {
		if got, ok := m[name+idleLabels]; !ok || got != 0 {
			t.Errorf("%s%s = %g (present: %v), want 0", name, idleLabels, got, ok)
		}
	}

	// The exporter's own namespace, the host's, is the netstat collector's.
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	selfIno, _ := netns.ParseLink(self)
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
// process in each: the kernel's cost of generating each namespace's netstat and snmp included, and with
// sockets=true the socket dump of each namespace (the clients dialed on the first scrape, then cached).
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
	for _, sockets := range []bool{false, true} {
		b.Run(fmt.Sprintf("sockets=%v", sockets), func(b *testing.B) {
			c, err := factories["netns"].build(Config{ProcPath: "/proc", Netns: NetnsConfig{MaxNamespaces: 100, Sockets: sockets}}, nil)
			if err != nil {
				b.Fatal(err)
			}
			benchUpdate(b, c)
			nc := c.(*netnsCollector)
			b.ReportMetric(float64(nc.ns.Namespaces()), "namespaces")
			b.ReportMetric(float64(len(nc.ns.Pids())), "pids")
		})
	}
}

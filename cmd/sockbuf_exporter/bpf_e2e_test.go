package main

// End-to-end tests of the bpf collector (issue 12): the built binary with --collector.bpf
// --collector.bpf.own-netns inside a fresh namespace, real traffic, and the namespace's own TcpExt counters.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockbuf/sockbuf_exporter/internal/dropcheck"
	"github.com/sockbuf/sockbuf_exporter/internal/e2e"
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
	"github.com/sockbuf/sockbuf_exporter/internal/trafficgen"
)

const bpfDrops = "sockbuf_tcp_receive_drops_total"

// startBPF starts the exporter with the bpf collector restricted to a fresh namespace, cgroups named through
// a cgroup v2 mount the exporter can see (`ip netns exec` hides /sys/fs/cgroup). It skips (fails in CI) when
// the programs cannot be loaded here. It returns the cgroup label of this test process's sockets.
func startBPF(t *testing.T) (*testenv.NetNS, *e2e.Exporter, string) {
	ns, exp, label, _ := startBPFMount(t)
	return ns, exp, label
}

// startBPFMount is startBPF that also returns where it mounted the cgroup v2 hierarchy.
func startBPFMount(t *testing.T) (*testenv.NetNS, *e2e.Exporter, string, string) {
	t.Helper()
	e2e.Require(t)
	mount := testenv.MountCgroup2(t)
	ns := testenv.NewNetNS(t)
	exp := e2e.StartExporter(t, ns, "--collector.bpf", "--collector.bpf.own-netns", "--collector.sockets.cgroup-root="+mount)
	m := exp.Scrape(t)
	if m[`sockbuf_scrape_collector_success{collector="bpf"}`] != 1 {
		testenv.Missing(t, "the bpf collector cannot run here:\n%s", exp.Logs())
	}
	return ns, exp, ownCgroupLabel(t), mount
}

// inChildCgroup runs fn with this whole process moved into a new cgroup below its own, then moves
// it back, and returns the new cgroup's label. Sockets opened in fn (and those their listeners accept later)
// belong to the new cgroup. It is removed when the test ends.
func inChildCgroup(t *testing.T, mount string, fn func() error) string {
	t.Helper()
	return filepath.Base(testenv.InChildCgroup(t, mount, fmt.Sprintf("sbtest-bpf-%d.scope", os.Getpid()), fn))
}

// ownCgroupLabel is the cgroup label of this process's sockets: the last element of its cgroup v2 path, "/"
// for the root.
func ownCgroupLabel(t *testing.T) string {
	t.Helper()
	return filepath.Base(testenv.OwnCgroup(t, "/"))
}

// byReason sums the rise of the bpf drops between two scrapes per reason, over the series matching match.
func byReason(before, after e2e.Metrics, match map[string]string) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range after.Select(bpfDrops, match) {
		out[label(k, "reason")] += uint64(v - before[k])
	}
	return out
}

// label returns a label's value from a series key.
func label(key, name string) string {
	_, rest, ok := strings.Cut(key, name+`="`)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, `"`)
	return v
}

// tcpExtRise is after - before of the namespace's TcpExt counters.
func tcpExtRise(before, after map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range after {
		out[k] = v - before[k]
	}
	return out
}

// TestBPFReasonsMatchTcpExt drives data pruning on a load whose port the test knows, then out-of-order
// pruning, and checks the exported per-reason rises against the namespace's TcpExt (the equalities of the
// bpf/drops documentation), over the whole run and, for the first phase, on the load's own group: role
// server, its port, this process's cgroup, rcvbuf_locked true (Shrink pins the buffers with SO_RCVBUF).
func TestBPFReasonsMatchTcpExt(t *testing.T) {
	testenv.RequireBinary(t, "nft", "nftables")
	ns, exp, _, mount := startBPFMount(t)
	k0, s0 := kernelTcpExt(t, ns), exp.Scrape(t)

	var load *trafficgen.Load
	var dataRes, ofoRes trafficgen.Result
	ctx := context.Background()
	var base trafficgen.Netstat
	// The load's sockets belong to a cgroup of their own, which the drops must name.
	cgroup := inChildCgroup(t, mount, func() error {
		return ns.Do(func() (err error) {
			if base, err = trafficgen.ReadNetstat(); err != nil {
				return err
			}
			load, err = trafficgen.NewLoad(ctx, trafficgen.Options{Conns: 8, RcvBuf: -1, Duration: 10 * time.Second,
				Until: trafficgen.Moved(base, "RcvPruned", "TCPRcvQDrop")})
			return err
		})
	})
	port := load.Port()
	// A listener opened after the last scrape is taken for a client until the next one tells the programs
	// its port (bpf/drops SetListening).
	exp.Scrape(t)
	err := ns.Do(func() (err error) {
		if err := load.Shrink(ctx, 0, 0); err != nil {
			return errors.Join(err, load.Close())
		}
		dataRes, err = load.Run(ctx)
		return errors.Join(err, load.Close())
	})
	if err != nil {
		t.Fatal(err)
	}
	waitQuiescent(t, ns)
	k1, s1 := kernelTcpExt(t, ns), exp.Scrape(t)

	err = ns.Do(func() error {
		base, err := trafficgen.ReadNetstat()
		if err != nil {
			return err
		}
		ofoRes, err = trafficgen.PruneOfo(context.Background(), trafficgen.Options{Conns: 8, Duration: 10 * time.Second,
			Until: trafficgen.Moved(base, "OfoPruned")})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	waitQuiescent(t, ns)
	k2, s2 := kernelTcpExt(t, ns), exp.Scrape(t)
	t.Logf("traffic: shrunk buffers on port %d %s; behind a hole %s", port, dataRes, ofoRes)

	check := func(phase string, got, d map[string]uint64) {
		t.Logf("%s: drops by reason %v; %s", phase, got, dropcheck.TcpExtSummary(d))
		// The exporter does not export skipped program runs: only the 5% shortfall is allowed.
		broken, short := dropcheck.TcpExtCompare(got, d, 0)
		for _, m := range broken {
			t.Errorf("%s: %s", phase, m)
		}
		for _, m := range short {
			t.Logf("%s: %s", phase, m)
		}
	}
	whole := byReason(s0, s2, nil)
	check("whole run", whole, tcpExtRise(k0, k2))
	if d := tcpExtRise(k0, k2); d["RcvPruned"] == 0 || d["OfoPruned"] == 0 {
		t.Errorf("the traffic did not prune: RcvPruned +%d, OfoPruned +%d", d["RcvPruned"], d["OfoPruned"])
	}

	// Phase one on the load's own group.
	d1 := tcpExtRise(k0, k1)
	group := map[string]string{"role": "server", "port": strconv.Itoa(port), "cgroup": cgroup, "rcvbuf_locked": "true"}
	mine := byReason(s0, s1, group)
	all := byReason(s0, s1, nil)
	t.Logf("shrunk-buffer phase: group %v drops by reason %v, all groups %v", group, mine, all)
	// As dropcheck allows: never more than TcpExt, fewer by at most 5% (a dropped skb another holder still
	// referenced fires no kfree_skb; the exporter's missed-runs counter is checked to be 0 below).
	if want, got := d1["TCPRcvQDrop"]+d1["TCPOFODrop"], mine["proto_mem"]; got > want || want-got > want/20 || want == 0 {
		t.Errorf("proto_mem drops of %v rose by %d, TcpExt TCPRcvQDrop+TCPOFODrop by %d (all groups: %d); series:\n%v",
			group, got, want, all["proto_mem"], s1.Select(bpfDrops, map[string]string{"reason": "proto_mem"}))
	} else if got != want {
		t.Logf("proto_mem drops of %v: %d, %d short of TcpExt", group, got, want-got)
	}
	if s2[`sockbuf_bpf_map_full_events_total{map="drops"}`] != 0 || s2["sockbuf_bpf_missed_runs_total"] != 0 {
		t.Errorf("events lost: map full %v, missed %g", s2.Select("sockbuf_bpf_map_full_events_total", nil), s2["sockbuf_bpf_missed_runs_total"])
	}
	for k := range s2.Select(bpfDrops, nil) {
		if label(k, "role") == "unknown" {
			t.Errorf("%s: the exporter's own namespace is described, no role should be unknown", k)
		}
	}
}

// TestBPFWindowProbesPinnedAndAutotuned runs a pinned receiver (SO_RCVBUF before listen()) and an
// autotuned one side by side, neither reading, and lets their windows close: the senders then only probe.
// The probes are dropped under their own reason (not proto_mem or another overflow reason), no overflow
// counter of TcpExt moves, and each receiver's drops carry its rcvbuf_locked.
func TestBPFWindowProbesPinnedAndAutotuned(t *testing.T) {
	ns, exp, cgroup := startBPF(t)
	var pinned, auto *trafficgen.Server
	var clients []*trafficgen.Clients
	t.Cleanup(func() {
		for _, c := range clients {
			c.Close()
		}
		for _, s := range []*trafficgen.Server{pinned, auto} {
			if s != nil {
				s.Close()
			}
		}
	})
	var k0 map[string]uint64
	err := ns.Do(func() (err error) {
		if pinned, err = trafficgen.Listen(trafficgen.ListenConfig{RcvBuf: 64 << 10}); err != nil {
			return err
		}
		if auto, err = trafficgen.Listen(trafficgen.ListenConfig{}); err != nil {
			return err
		}
		for _, srv := range []*trafficgen.Server{pinned, auto} {
			c, err := trafficgen.Dial(context.Background(), srv.Addr(), 2, trafficgen.DialConfig{})
			if err != nil {
				return err
			}
			clients = append(clients, c)
			if err := srv.WaitAccepted(2, 5*time.Second); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A scrape tells the programs the new listening ports before any probe.
	s0 := exp.Scrape(t)
	k0 = kernelTcpExt(t, ns)
	for _, c := range clients {
		if err := ns.Do(func() error { return trafficgen.CloseWindows(c.Conns) }); err != nil {
			t.Fatal(err)
		}
	}
	ports := map[string]string{"true": strconv.Itoa(pinned.Port()), "false": strconv.Itoa(auto.Port())}
	// The first probe leaves after one RTO (200ms at least), the next ones back off: a few per connection
	// come within 2s.
	var s1 e2e.Metrics
	for deadline := time.Now().Add(8 * time.Second); ; {
		s1 = exp.Scrape(t)
		done := true
		for _, p := range ports {
			n := 0
			for _, v := range byReason(s0, s1, map[string]string{"port": p}) {
				n += int(v)
			}
			done = done && n >= 4
		}
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	d := tcpExtRise(k0, kernelTcpExt(t, ns))
	t.Logf("TcpExt TCPWinProbe=%d TCPRcvQDrop=%d TCPOFODrop=%d RcvPruned=%d OfoPruned=%d", d["TCPWinProbe"], d["TCPRcvQDrop"], d["TCPOFODrop"], d["RcvPruned"], d["OfoPruned"])
	if n := d["TCPRcvQDrop"] + d["TCPOFODrop"] + d["RcvPruned"] + d["OfoPruned"]; n != 0 {
		t.Errorf("overflow counters moved in a probe-only run: %v", d)
	}
	for locked, p := range ports {
		group := map[string]string{"role": "server", "port": p, "cgroup": cgroup, "rcvbuf_locked": locked}
		got := byReason(s0, s1, group)
		wrong := byReason(s0, s1, map[string]string{"port": p, "rcvbuf_locked": strconv.FormatBool(locked != "true")})
		t.Logf("receiver on port %s (rcvbuf_locked %s): drops by reason %v", p, locked, got)
		var total uint64
		for _, n := range got {
			total += n
		}
		if total < 4 {
			t.Errorf("%d drops in group %v, want the window probes (at least 4); series:\n%v", total, group, s1.Select(bpfDrops, map[string]string{"port": p}))
		}
		for r, n := range wrong {
			if n != 0 {
				t.Errorf("port %s: %d %s drops with rcvbuf_locked != %s", p, n, r, locked)
			}
		}
		// Probes are discarded as old sequence numbers: never as loss, nor as data sent into a closed window.
		for _, notProbe := range []string{"proto_mem", "tcp_ofo_queue_prune", "socket_backlog", "tcp_zerowindow"} {
			if got[notProbe] != 0 {
				t.Errorf("port %s: %d window probes counted as %s", p, got[notProbe], notProbe)
			}
		}
		if got["tcp_old_sequence"] == 0 {
			t.Errorf("port %s: no tcp_old_sequence drops, the reason of a zero-window probe: %v", p, got)
		}
	}
}

// TestBPFStopsCleanly: on SIGTERM the exporter closes its collectors, detaching its programs, and exits
// without an error; nothing of it stays in the kernel.
func TestBPFStopsCleanly(t *testing.T) {
	bpftool := testenv.RequireBinary(t, "bpftool", "bpftool")
	_, exp, _ := startBPF(t)
	// The programs the exporter holds, by the prog_id of its descriptors (bpftool here shows no pids).
	fds, err := filepath.Glob(fmt.Sprintf("/proc/%d/fdinfo/*", exp.PID))
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, fd := range fds {
		data, _ := os.ReadFile(fd)
		for _, line := range strings.Split(string(data), "\n") {
			if id, ok := strings.CutPrefix(line, "prog_id:"); ok {
				ids[strings.TrimSpace(id)] = true
			}
		}
	}
	if len(ids) < 1 {
		t.Fatalf("the exporter (pid %d) holds no BPF program", exp.PID)
	}
	if err := syscall.Kill(exp.PID, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", exp.PID)); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the exporter did not exit within 10s of SIGTERM")
		}
	}
	logs := exp.Logs()
	if !strings.Contains(logs, "shutting down") || strings.Contains(logs, "level=ERROR") {
		t.Errorf("want a clean shutdown, logs:\n%s", logs)
	}
	// Closing the last descriptor of a program frees it after an RCU grace period (bpf_prog_put defers the
	// free), which a busy machine can stretch: each program must be gone within 10 s, not at once.
	start := time.Now()
	for id := range ids {
		for {
			out, err := exec.Command(bpftool, "prog", "show", "id", id).CombinedOutput()
			if err != nil {
				break
			}
			if time.Since(start) > 10*time.Second {
				t.Errorf("program %s still loaded 10s after the exporter's exit:\n%s", id, out)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("programs %v gone %v after the exporter's exit", ids, time.Since(start).Round(time.Millisecond))
}

// TestBPFPromtoolCheckMetrics lints a scrape with the bpf collector's metrics, after drops, with promtool.
func TestBPFPromtoolCheckMetrics(t *testing.T) {
	promtool := testenv.RequireBinary(t, "promtool", "prometheus")
	ns, exp, _ := startBPF(t)
	// A connection refused is a drop without a socket (no_socket), so the unattributed series appear.
	ns.Do(func() error {
		if c, err := net.DialTimeout("tcp", "127.0.0.1:1", time.Second); err == nil {
			c.Close()
		}
		return nil
	})
	text := exp.ScrapeText(t)
	if !strings.Contains(string(text), "sockbuf_receive_drops_unattributed_total{") {
		t.Errorf("no unattributed drop after a refused connection:\n%s", text)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(string(text))
	if out, err := cmd.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

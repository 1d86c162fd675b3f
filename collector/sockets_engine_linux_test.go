//go:build linux

package collector

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sockbuf/sockbuf_exporter/bpf/sockiter"
	"github.com/sockbuf/sockbuf_exporter/internal/sockpop"
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
	"github.com/sockbuf/sockbuf_exporter/sockdiag"
)

// nsWalker walks another network namespace with a sockiter.Engine.
type nsWalker struct {
	e  *sockiter.Engine
	fd int
}

func (w nsWalker) Walk(ctx context.Context) (*sockiter.Result, error) {
	return w.e.WalkNetNS(ctx, w.fd)
}
func (w nsWalker) Close() error { return w.e.Close() }

// engineMetrics are the series both engines must agree on: every per-group gauge but the queues that
// timers can move (Send-Q), the listeners, the states and the histograms' counts.
func engineMetrics(m map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for series, v := range m {
		name, _, _ := strings.Cut(series, "{")
		switch strings.TrimSuffix(name, "_count") {
		case "sockbuf_sockets", "sockbuf_recv_queue_bytes", "sockbuf_recv_queue_max_bytes", "sockbuf_rmem_alloc_bytes",
			"sockbuf_rcvbuf_bytes", "sockbuf_rcvbuf_full_sockets", "sockbuf_listen_queue_length", "sockbuf_listen_queue_limit",
			"sockbuf_tcp_sockets_by_state", "sockbuf_rmem_fill_ratio", "sockbuf_rcvbuf_size_bytes", "sockbuf_rcv_window_zero_sockets",
			"sockbuf_socket_groups_folded":
			out[series] = v
		}
	}
	return out
}

// TestSocketsEnginesAgree runs the netlink and the bpf engine's collectors on one population in a network
// namespace, IPv4 and IPv6, listeners and established sockets, with cgroup attribution, and checks that
// their exported per-group socket counts, Recv-Q, rmem_alloc, rcvbuf and full sockets (and listeners, states,
// histogram counts) are equal, and that sockbuf_rcvbuf_locked_sockets counts the sockets the test pinned.
// The population is quiescent once filled, but a timer may still fire between two reads; so the bpf
// collector is read before and after the netlink one, and a comparison counts only when both bpf reads agree.
func TestSocketsEnginesAgree(t *testing.T) {
	testenv.RequireRoot(t)
	ns := testenv.NewNetNS(t)
	pop := sockpop.OpenIn(t, ns)
	nsf, err := os.Open(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer nsf.Close()

	cfg := Config{ProcPath: "/proc", Sockets: withTestDefaults(SocketsConfig{CgroupAttribution: true, TCPInfo: true})}
	nl, err := newSocketsCollector(cfg, nil, func() (socketDumper, error) { return sockdiag.Dial(&sockdiag.Config{NetNS: int(nsf.Fd())}) })
	if err != nil {
		t.Fatal(err)
	}
	bpf, err := newSocketsCollector(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Sockets.Engine = EngineBPF
	err = bpf.useEngine(cfg.Sockets, func(o sockiter.Options) (socketWalker, error) {
		e, err := sockiter.Open(o)
		if err != nil {
			return nil, err
		}
		return nsWalker{e, int(nsf.Fd())}, nil
	})
	if errors.Is(err, sockiter.ErrUnavailable) {
		testenv.Missing(t, "%v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer bpf.walker.Close()

	var viaNL, viaBPF map[string]float64
	for attempt := 1; ; attempt++ {
		before := gather(t, bpf)
		viaNL = gather(t, nl)
		viaBPF = gather(t, bpf)
		if cmp.Equal(engineMetrics(before), engineMetrics(viaBPF)) {
			break
		}
		if attempt == 5 {
			t.Fatalf("population not quiescent after %d attempts: %s", attempt, cmp.Diff(engineMetrics(before), engineMetrics(viaBPF)))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if diff := cmp.Diff(engineMetrics(viaNL), engineMetrics(viaBPF)); diff != "" {
		t.Errorf("exported metrics (-netlink +bpf):\n%s", diff)
	}

	// What only the bpf engine exports.
	locked := map[string]float64{}
	var lockedSum float64
	for series, v := range viaBPF {
		if s, ok := strings.CutPrefix(series, "sockbuf_rcvbuf_locked_sockets{"); ok {
			locked[s] = v
			lockedSum += v
		}
		if strings.HasPrefix(series, "sockbuf_rcvbuf_locked") {
			if _, ok := viaNL[series]; ok {
				t.Errorf("the netlink engine exports %s", series)
			}
		}
	}
	if lockedSum != float64(pop.Pinned) {
		t.Errorf("sockbuf_rcvbuf_locked_sockets sums to %g, the test pinned %d sockets", lockedSum, pop.Pinned)
	}
	if got := viaBPF["sockbuf_rcvbuf_locked_size_bytes_count"]; got != float64(pop.Pinned) {
		t.Errorf("sockbuf_rcvbuf_locked_size_bytes_count = %g, want %d", got, pop.Pinned)
	}
	byGroup := func(role string, port uint16) (sum float64) {
		for labels, v := range locked {
			if strings.Contains(labels, fmt.Sprintf(`port="%d"`, port)) && strings.Contains(labels, `role="`+role+`"`) {
				sum += v
			}
		}
		return sum
	}
	for _, g := range []struct {
		role string
		port uint16
		want float64
	}{{"server", pop.Ports.Full, 6}, {"server", pop.Ports.Pinned, 5}, {"client", pop.Ports.Plain, 4}, {"server", pop.Ports.Plain, 0}} {
		if got := byGroup(g.role, g.port); got != g.want {
			t.Errorf("rcvbuf_locked_sockets{role=%s,port=%d} = %g, want %g", g.role, g.port, got, g.want)
		}
	}

	// What the population must show, so that the comparison above compared something.
	sum := func(m map[string]float64, metric, role string, port uint16) (s float64) {
		for series, v := range m {
			if strings.HasPrefix(series, metric+"{") && strings.Contains(series, fmt.Sprintf(`port="%d"`, port)) && strings.Contains(series, `role="`+role+`"`) {
				s += v
			}
		}
		return s
	}
	for _, c := range []struct {
		metric, role string
		port         uint16
		want         float64
	}{
		{"sockbuf_sockets", "server", pop.Ports.Plain, 12},
		{"sockbuf_recv_queue_bytes", "server", pop.Ports.Plain, 8 * 30000},
		{"sockbuf_sockets", "client", pop.Ports.Plain, 12},
		{"sockbuf_sockets", "server", pop.Ports.Full, 6},
		{"sockbuf_sockets", "server", pop.Ports.Pinned, 5},
	} {
		if got := sum(viaBPF, c.metric, c.role, c.port); got != c.want {
			t.Errorf("%s{role=%s,port=%d} = %g, want %g", c.metric, c.role, c.port, got, c.want)
		}
	}
	if got := sum(viaBPF, "sockbuf_rcvbuf_full_sockets", "server", pop.Ports.Full); got == 0 {
		t.Error("no full socket in the group of the filled IPv6 listener")
	}
	if got := viaBPF[fmt.Sprintf(`sockbuf_listen_queue_length{port="%d"}`, pop.Ports.Backlog)]; got != 3 {
		t.Errorf("full accept queue length %g, want 3", got)
	}
	if got := viaBPF[`sockbuf_tcp_sockets_by_state{state="syn_sent"}`]; got != 2 {
		t.Errorf("SYN-SENT sockets %g, want 2", got)
	}
	t.Logf("%d series compared; zero-window sockets of the full group: netlink %g, bpf %g", len(engineMetrics(viaNL)),
		sum(viaNL, "sockbuf_rcv_window_zero_sockets", "server", pop.Ports.Full), sum(viaBPF, "sockbuf_rcv_window_zero_sockets", "server", pop.Ports.Full))
}

package collector

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sockbuf/sockbuf_exporter/bpf/sockiter"
	"github.com/sockbuf/sockbuf_exporter/internal/socktest"
	"github.com/sockbuf/sockbuf_exporter/sockdiag"
)

// fakeWalker serves a fixed Result, as a sockiter.Engine serves its reused one.
type fakeWalker struct {
	res    sockiter.Result
	opts   sockiter.Options
	walks  int
	closed bool
}

func (w *fakeWalker) Walk(ctx context.Context) (*sockiter.Result, error) {
	w.walks++
	return &w.res, ctx.Err()
}

func (w *fakeWalker) Close() error { w.closed = true; return nil }

func newBPFTestSockets(t *testing.T, sc SocketsConfig, w *fakeWalker) *socketsCollector {
	t.Helper()
	sc.Engine = EngineBPF
	c := newTestSockets(t, sc, &fakeDumper{})
	err := c.useEngine(withTestDefaults(sc), func(o sockiter.Options) (socketWalker, error) { w.opts = o; return w, nil })
	if err != nil {
		t.Fatal(err)
	}
	if c.walker == nil {
		t.Fatal("the bpf engine was not chosen")
	}
	return c
}

func TestSocketsEngineChoice(t *testing.T) {
	unavailable := fmt.Errorf("%w: no BTF", sockiter.ErrUnavailable)
	for _, tc := range []struct {
		engine  string
		process bool
		openErr error
		wantBPF bool
		wantErr bool
		wantLog string
	}{
		{engine: "", wantBPF: true, wantLog: "auto: the iter/tcp program loaded"},
		{engine: EngineAuto, wantBPF: true, wantLog: "auto: the iter/tcp program loaded"},
		{engine: EngineAuto, openErr: unavailable, wantLog: "the bpf engine cannot be loaded"},
		{engine: EngineAuto, process: true, wantLog: "--collector.sockets.process needs each socket's inode"},
		{engine: EngineBPF, wantBPF: true, wantLog: "--collector.sockets.engine=bpf"},
		{engine: EngineBPF, openErr: unavailable, wantErr: true},
		{engine: EngineNetlink, wantLog: "--collector.sockets.engine=netlink"},
	} {
		name := fmt.Sprintf("%s/process=%v/err=%v", tc.engine, tc.process, tc.openErr != nil)
		var logs bytes.Buffer
		sc := withTestDefaults(SocketsConfig{Engine: tc.engine, ProcessAttribution: tc.process})
		c, err := newSocketsCollector(Config{ProcPath: "testdata/none", Sockets: sc}, slog.New(slog.NewTextHandler(&logs, nil)), nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		opened := false
		err = c.useEngine(sc, func(sockiter.Options) (socketWalker, error) {
			opened = true
			if tc.openErr != nil {
				return nil, tc.openErr
			}
			return &fakeWalker{}, nil
		})
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: error %v, want error %v", name, err, tc.wantErr)
		}
		if (c.walker != nil) != tc.wantBPF {
			t.Errorf("%s: bpf chosen %v, want %v", name, c.walker != nil, tc.wantBPF)
		}
		if opened && !tc.wantBPF && tc.openErr == nil {
			t.Errorf("%s: the bpf engine was loaded although it cannot be used", name)
		}
		if n := strings.Count(logs.String(), "sockets engine:"); !tc.wantErr && (n != 1 || !strings.Contains(logs.String(), tc.wantLog)) {
			t.Errorf("%s: want one log line with %q, got:\n%s", name, tc.wantLog, logs.String())
		}
	}
	if err := withTestDefaults(SocketsConfig{Engine: EngineBPF, ProcessAttribution: true}).Validate(); err == nil {
		t.Error("engine bpf with process attribution accepted")
	}
	if err := withTestDefaults(SocketsConfig{Engine: "ebpf"}).Validate(); err == nil {
		t.Error("engine ebpf accepted")
	}
}

func TestSocketsBPFOutput(t *testing.T) {
	w := &fakeWalker{}
	r := &w.res
	r.Listeners = []sockiter.Listener{{Port: 8080, Length: 3, Limit: 128, Sockets: 2}}
	lockedHist := [sockiter.MaxBounds + 1]uint64{1: 2} // two sockets in (65536, 131072]
	r.Groups = []sockiter.Group{
		{Key: sockiter.Key{Role: sockiter.RoleServer, Port: 8080}, Stats: sockiter.Stats{
			Sockets: 2, RecvQueue: 1010, RecvQueueMax: 1000, RmemAlloc: 122304, Rcvbuf: 262144, Full: 1, ZeroWindow: 1, Drops: 4,
			RcvbufLocked: 2, RcvbufLockedSum: 262144, RcvbufLockedHist: lockedHist}},
		{Key: sockiter.Key{Role: sockiter.RoleClient, Port: 443}, Stats: sockiter.Stats{Sockets: 1, SendQueue: 700, Rcvbuf: 2097152}},
	}
	r.States[sockdiag.StateListen] = 2
	r.States[sockdiag.StateEstablished] = 3
	r.States[sockdiag.StateTimeWait] = 7 // visited, not selected: absent, as the netlink engine does not dump it
	r.Fill = sockiter.Histogram{Bounds: fillBuckets(t), Counts: []uint64{1, 1, 0, 0, 0, 0, 1, 0, 0}, Count: 3, Sum: 0.9331}
	r.Size = sockiter.Histogram{Bounds: rcvbufBuckets(t), Counts: make([]uint64, 14), Count: 3, Sum: 2359296}
	r.Size.Counts[1], r.Size.Counts[7] = 2, 1

	c := newBPFTestSockets(t, SocketsConfig{}, w)
	if w.opts.States != sockdiag.DefaultStates&^(1<<sockdiag.StateListen) || !w.opts.Drops || w.opts.FullRatio != 0.9 {
		t.Errorf("engine options %+v", w.opts)
	}
	want := `
# HELP sockbuf_rcvbuf_locked_sockets ` + rcvbufLockedSpec.Help + `
# TYPE sockbuf_rcvbuf_locked_sockets gauge
sockbuf_rcvbuf_locked_sockets{cgroup="",port="443",process="",role="client"} 0
sockbuf_rcvbuf_locked_sockets{cgroup="",port="8080",process="",role="server"} 2
# HELP sockbuf_rcvbuf_locked_bytes ` + rcvbufLockedBytesSpec.Help + `
# TYPE sockbuf_rcvbuf_locked_bytes gauge
sockbuf_rcvbuf_locked_bytes{cgroup="",port="443",process="",role="client"} 0
sockbuf_rcvbuf_locked_bytes{cgroup="",port="8080",process="",role="server"} 262144
# HELP sockbuf_rcv_window_zero_sockets ` + zeroWindowSpec.Help + `
# TYPE sockbuf_rcv_window_zero_sockets gauge
sockbuf_rcv_window_zero_sockets{cgroup="",port="443",process="",role="client"} 0
sockbuf_rcv_window_zero_sockets{cgroup="",port="8080",process="",role="server"} 1
# HELP sockbuf_socket_drops_total ` + socketDropsSpec.Help + `
# TYPE sockbuf_socket_drops_total counter
sockbuf_socket_drops_total{cgroup="",port="443",process="",role="client"} 0
sockbuf_socket_drops_total{cgroup="",port="8080",process="",role="server"} 4
# HELP sockbuf_recv_queue_bytes ` + recvQueueSpec.Help + `
# TYPE sockbuf_recv_queue_bytes gauge
sockbuf_recv_queue_bytes{cgroup="",port="443",process="",role="client"} 0
sockbuf_recv_queue_bytes{cgroup="",port="8080",process="",role="server"} 1010
# HELP sockbuf_listen_queue_length ` + listenLengthSpec.Help + `
# TYPE sockbuf_listen_queue_length gauge
sockbuf_listen_queue_length{port="8080"} 3
` + byStateText(2, 3) + `
# HELP sockbuf_rcvbuf_locked_size_bytes ` + rcvbufLockedSizeSpec.Help + `
# TYPE sockbuf_rcvbuf_locked_size_bytes histogram
sockbuf_rcvbuf_locked_size_bytes_bucket{le="65536"} 0
sockbuf_rcvbuf_locked_size_bytes_bucket{le="131072"} 2
sockbuf_rcvbuf_locked_size_bytes_bucket{le="262144"} 2
sockbuf_rcvbuf_locked_size_bytes_bucket{le="425984"} 2
sockbuf_rcvbuf_locked_size_bytes_bucket{le="1.048576e+06"} 2
sockbuf_rcvbuf_locked_size_bytes_bucket{le="2.097151e+06"} 2
sockbuf_rcvbuf_locked_size_bytes_bucket{le="2.097152e+06"} 2
sockbuf_rcvbuf_locked_size_bytes_bucket{le="4.194303e+06"} 2
sockbuf_rcvbuf_locked_size_bytes_bucket{le="4.194304e+06"} 2
sockbuf_rcvbuf_locked_size_bytes_bucket{le="6.291456e+06"} 2
sockbuf_rcvbuf_locked_size_bytes_bucket{le="8.388608e+06"} 2
sockbuf_rcvbuf_locked_size_bytes_bucket{le="1.6777216e+07"} 2
sockbuf_rcvbuf_locked_size_bytes_bucket{le="3.3554432e+07"} 2
sockbuf_rcvbuf_locked_size_bytes_bucket{le="+Inf"} 2
sockbuf_rcvbuf_locked_size_bytes_sum 262144
sockbuf_rcvbuf_locked_size_bytes_count 2
`
	names := []string{"sockbuf_rcvbuf_locked_sockets", "sockbuf_rcvbuf_locked_bytes", "sockbuf_rcv_window_zero_sockets",
		"sockbuf_socket_drops_total", "sockbuf_recv_queue_bytes", "sockbuf_listen_queue_length",
		"sockbuf_tcp_sockets_by_state", "sockbuf_rcvbuf_locked_size_bytes"}
	if err := testutil.CollectAndCompare(collectorFunc{c}, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	// The engine hands back deltas: the same Result again adds its drops to the counter.
	m := gather(t, c)
	if got := m[`sockbuf_socket_drops_total{cgroup="",port="8080",process="",role="server"}`]; got != 8 {
		t.Errorf("drops after a second walk with 4 more = %g, want 8", got)
	}
	if got := m["sockbuf_rmem_fill_ratio_count"]; got != 3 {
		t.Errorf("fill histogram count %g, want 3", got)
	}
	lintCollector(t, c)
}

// TestSocketsNetlinkNoLocked: the netlink engine cannot see SO_RCVBUF locks, so their metrics are absent, not 0.
func TestSocketsNetlinkNoLocked(t *testing.T) {
	c := newTestSockets(t, SocketsConfig{}, &fakeDumper{socks: []socktest.Sock{{Local: 40000, Remote: 443}}})
	for series := range gather(t, c) {
		if strings.HasPrefix(series, "sockbuf_rcvbuf_locked") {
			t.Errorf("netlink engine exports %s", series)
		}
	}
}

// TestSocketsBPFOverflow: the groups the kernel's table could not hold go to port="other".
func TestSocketsBPFOverflow(t *testing.T) {
	w := &fakeWalker{}
	w.res.Groups = []sockiter.Group{{Key: sockiter.Key{Role: sockiter.RoleClient, Port: 443}, Stats: sockiter.Stats{Sockets: 1}}}
	w.res.Overflow[sockiter.RoleClient] = sockiter.Stats{Sockets: 5, Drops: 2, RcvbufLocked: 1}
	w.res.OverflowSockets = 5
	w.res.Fill = sockiter.Histogram{Counts: make([]uint64, 9)}
	w.res.Size = sockiter.Histogram{Counts: make([]uint64, 14)}
	c := newBPFTestSockets(t, SocketsConfig{}, w)
	m := gather(t, c)
	for series, want := range map[string]float64{
		`sockbuf_sockets{cgroup="",port="other",process="",role="client"}`:               5,
		`sockbuf_socket_drops_total{cgroup="",port="other",process="",role="client"}`:    2,
		`sockbuf_rcvbuf_locked_sockets{cgroup="",port="other",process="",role="client"}`: 1,
		`sockbuf_sockets{cgroup="",port="443",process="",role="client"}`:                 1,
		`sockbuf_socket_groups_folded`:                                                   1,
	} {
		if m[series] != want {
			t.Errorf("%s = %g, want %g", series, m[series], want)
		}
	}
}

func TestSocketsBPFWalkError(t *testing.T) {
	w := &fakeWalker{}
	c := newBPFTestSockets(t, SocketsConfig{}, w)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := c.Update(ctx, make(chan prometheus.Metric, 100))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Update with a cancelled walk: %v, want context.Canceled", err)
	}
}

func fillBuckets(t *testing.T) []float64 {
	return newTestSockets(t, SocketsConfig{}, &fakeDumper{}).agg.FillBounds()
}

func rcvbufBuckets(t *testing.T) []float64 {
	return newTestSockets(t, SocketsConfig{}, &fakeDumper{}).agg.SizeBounds()
}

//go:build linux

package collector

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockbuf/sockbuf_exporter/attrib"
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
	"github.com/sockbuf/sockbuf_exporter/internal/trafficgen"
	"github.com/sockbuf/sockbuf_exporter/sockdiag"
)

// TestBPFMemoryLimitHits: a slow reader in a cgroup v1 memory cgroup whose TCP memory is limited, flooded by
// a sender outside it, is refused receive memory. The bpf collector, restricted to the namespace and told
// its listening ports by its own sock_diag dump, exports the refusals as
// sockbuf_socket_memory_limit_hits_total{kind="recv"} and the drops they cause as proto_mem on the reader's
// group, both under the reader's cgroup v2 name. (bpf/drops TestMemoryLimitHits checks the counts against
// TcpExt and a control without the limit.)
func TestBPFMemoryLimitHits(t *testing.T) {
	testenv.RequireRoot(t)
	python := testenv.RequireBinary(t, "python3", "python3")
	testenv.RequireBinary(t, "nsenter", "util-linux")
	script, err := filepath.Abs("../bpf/drops/testdata/slowreader.py")
	if err != nil {
		t.Fatal(err)
	}
	ns := testenv.NewNetNS(t)
	mount := testenv.Cgroup2Mount(t)
	unique := fmt.Sprintf("sbtest-memlimit-collector-%d", os.Getpid())
	memDir, _ := testenv.TCPLimitedMemcg(t, unique, 300000)
	v2Dir := testenv.NewCgroup(t, testenv.OwnCgroup(t, mount), unique)

	cfg := Config{Sockets: DefaultSocketsConfig(), BPF: BPFConfig{OwnNetNS: true}}
	cfg.Sockets.CgroupAttribution, cfg.Sockets.CgroupRoot = true, mount
	// Opened in the namespace, so that it counts only there; its LISTEN dumps run there too.
	dial := func() (socketDumper, error) {
		var c *sockdiag.Client
		err := ns.Do(func() error {
			var err error
			c, err = sockdiag.Dial(nil)
			return err
		})
		return c, err
	}
	var col Collector
	if err := ns.Do(func() error {
		var err error
		col, err = newBPFCollector(cfg, nil, dial)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, ok := col.(*bpfCollector); !ok {
		testenv.Missing(t, "the bpf collector cannot load its programs")
	}
	if !col.(*bpfCollector).hasLimit {
		testenv.Missing(t, "kernel has no sock:sock_exceed_buf_limit tracepoint")
	}
	e := NewExporter(map[string]Collector{"bpf": col}, 0, nil)
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const conns = 8
	recv := ns.StartReceiver(t, ctx, []string{memDir, v2Dir}, python, script,
		strconv.Itoa(conns), "4096", "0.01", "20")
	stop, wait := recv.Stdin, recv.Wait
	port := strconv.Itoa(recv.Port)
	// A first scrape tells the programs the listening port, so that the drops count as its server's.
	scrapeMemlimit(t, reg)

	var clients *trafficgen.Clients
	if err := ns.Do(func() error {
		var err error
		clients, err = trafficgen.Dial(ctx, net.JoinHostPort("127.0.0.1", port), conns, trafficgen.DialConfig{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	floodMemlimit(clients.Conns, 3*time.Second, 64<<10)
	for _, c := range clients.Conns {
		if err := c.SetLinger(0); err != nil {
			t.Error(err)
		}
	}
	if err := errors.Join(clients.Close(), stop.Close()); err != nil {
		t.Error(err)
	}
	if err := wait(); err != nil {
		t.Fatalf("receiver: %v", err)
	}

	cgroup := attrib.CgroupName(strings.TrimPrefix(v2Dir, mount), cfg.Sockets.CgroupLabel)
	samples := scrapeMemlimit(t, reg)
	var hits, protoMem float64
	for _, s := range samples {
		switch s.name {
		case "sockbuf_socket_memory_limit_hits_total":
			if s.labels["kind"] != "recv" || s.labels["cgroup"] != cgroup {
				t.Errorf("memory limit hits %v = %v; want only kind recv, cgroup %q", s.labels, s.value, cgroup)
			}
			hits += s.value
		case "sockbuf_tcp_receive_drops_total":
			if s.labels["reason"] != "proto_mem" {
				continue
			}
			if s.labels["role"] != "server" || s.labels["port"] != port || s.labels["cgroup"] != cgroup {
				t.Errorf("proto_mem drops %v = %v; want the reader's group: server, port %s, cgroup %q", s.labels, s.value, port, cgroup)
			}
			protoMem += s.value
		}
	}
	t.Logf("sockbuf_socket_memory_limit_hits_total{kind=\"recv\",cgroup=%q} %v; proto_mem drops %v", cgroup, hits, protoMem)
	if hits == 0 {
		t.Errorf("no sockbuf_socket_memory_limit_hits_total{kind=\"recv\",cgroup=%q}", cgroup)
	}
	if protoMem == 0 {
		t.Errorf("no sockbuf_tcp_receive_drops_total{reason=\"proto_mem\"} behind the memory cgroup's limit")
	}
}

// memlimitSample is one sample of a scrape.
type memlimitSample struct {
	name   string
	labels map[string]string
	value  float64
}

// scrapeMemlimit gathers reg once, failing the test unless the bpf collector succeeded.
func scrapeMemlimit(t *testing.T, reg *prometheus.Registry) []memlimitSample {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []memlimitSample
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			s := memlimitSample{name: mf.GetName(), labels: map[string]string{}}
			for _, l := range m.GetLabel() {
				s.labels[l.GetName()] = l.GetValue()
			}
			switch {
			case m.GetCounter() != nil:
				s.value = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				s.value = m.GetGauge().GetValue()
			}
			if s.name == "sockbuf_scrape_collector_success" && s.value != 1 {
				t.Fatalf("the bpf collector failed its scrape")
			}
			out = append(out, s)
		}
	}
	return out
}

// floodMemlimit writes chunk-sized writes on every connection until d has passed or 4096 writes each have gone.
func floodMemlimit(conns []*net.TCPConn, d time.Duration, chunk int) {
	end := time.Now().Add(d)
	buf := make([]byte, chunk)
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			c.SetWriteDeadline(end) //nolint:errcheck // a deadline on a live connection
			for range 4096 {
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
}

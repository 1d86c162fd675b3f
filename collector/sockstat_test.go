package collector

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

func TestSockstatCollector(t *testing.T) {
	for _, tc := range []struct {
		name, proc, want string
	}{
		{
			name: "host namespace", proc: "testdata/proc-host",
			want: `
sockbuf_tcp_mem_threshold_bytes{level="max"} 2.358484992e+09
sockbuf_tcp_mem_threshold_bytes{level="min"} 1.179242496e+09
sockbuf_tcp_mem_threshold_bytes{level="pressure"} 1.57233152e+09
sockbuf_tcp_max_orphans 131072
sockbuf_tcp_memory_bytes 6.144e+06
sockbuf_tcp_sockets_alloc 25
sockbuf_tcp_sockets_inuse 20
sockbuf_tcp_sockets_orphan 3
sockbuf_tcp_sockets_time_wait 7
sockbuf_udp_mem_threshold_bytes{level="max"} 4.71699456e+09
sockbuf_udp_mem_threshold_bytes{level="min"} 2.35849728e+09
sockbuf_udp_mem_threshold_bytes{level="pressure"} 3.14466304e+09
sockbuf_udp_memory_bytes 49152
`,
		},
		{
			// No tcp_mem, udp_mem or tcp_max_orphans: the limits are absent and the collector succeeds.
			name: "other network namespace", proc: "testdata/proc-netns",
			want: `
sockbuf_tcp_memory_bytes 6.144e+06
sockbuf_tcp_sockets_alloc 25
sockbuf_tcp_sockets_inuse 0
sockbuf_tcp_sockets_orphan 3
sockbuf_tcp_sockets_time_wait 0
sockbuf_udp_memory_bytes 49152
`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newSockstatCollector(Config{ProcPath: tc.proc})
			c.pageSize = 4096
			if err := testutil.CollectAndCompare(asPromCollector(c), strings.NewReader(withHeaders(t, tc.want))); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestSockstatCollectorErrors(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"net/sockstat": "TCP: inuse 1 orphan 0 tw 0 alloc 1 mem 1\n", "sys/net/ipv4/tcp_mem": "1 2\n"})
	if err := newSockstatCollector(Config{ProcPath: dir}).Update(context.Background(), discard(t)); err == nil || !strings.Contains(err.Error(), "tcp_mem: 2 values, want 3") {
		t.Errorf("garbled tcp_mem: got %v", err)
	}
	if err := newSockstatCollector(Config{ProcPath: t.TempDir()}).Update(context.Background(), discard(t)); err == nil || !strings.Contains(err.Error(), "net/sockstat") {
		t.Errorf("missing sockstat: got %v", err)
	}
}

// TestHostCollectorsInNetNS runs the host collectors against the real /proc inside a fresh network namespace,
// where tcp_mem, udp_mem, tcp_max_orphans and netdev_max_backlog do not exist: every collector must still
// succeed, with those metrics absent. The test binary re-runs itself inside the namespace, because /proc/net
// follows the whole process's namespace, not one thread's.
func TestHostCollectorsInNetNS(t *testing.T) {
	if os.Getenv("SOCKBUF_TEST_IN_NETNS") == "1" {
		e := newHostExporter(t, "/proc")
		success, _ := successByCollector(t, e)
		want := map[string]float64{"netstat": 1, "sockstat": 1, "softnet": 1, "sysctl": 1}
		if diff := cmp.Diff(want, success); diff != "" {
			t.Errorf("sockbuf_scrape_collector_success in a network namespace (-want +got):\n%s", diff)
		}
		absent := []string{"sockbuf_tcp_mem_threshold_bytes", "sockbuf_udp_mem_threshold_bytes",
			"sockbuf_tcp_max_orphans", "sockbuf_net_core_netdev_max_backlog"}
		present := []string{"sockbuf_tcp_memory_bytes", "sockbuf_tcp_sockets_inuse",
			"sockbuf_net_core_rmem_max_bytes", "sockbuf_tcp_prune_called_total"}
		for _, name := range absent {
			if n := testutil.CollectAndCount(e, name); n != 0 {
				t.Errorf("%s: %d series in a network namespace, want none", name, n)
			}
		}
		for _, name := range present {
			if n := testutil.CollectAndCount(e, name); n != 1 {
				t.Errorf("%s: %d series in a network namespace, want 1", name, n)
			}
		}
		return
	}
	ns := testenv.NewNetNS(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := ns.Command(ctx, os.Args[0], "-test.run=^TestHostCollectorsInNetNS$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "SOCKBUF_TEST_IN_NETNS=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestHostCollectorsInNetNS") {
		t.Errorf("inside network namespace %s: %v\n%s", ns.Name, err, out)
	}
}

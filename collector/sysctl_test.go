package collector

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestParseSysctl(t *testing.T) {
	for _, tc := range []struct {
		name, fixture string
		n             int
		signed        bool
		want          []int64
		wantErr       string
	}{
		{name: "one value", fixture: "parse/sysctl-one", n: 1, want: []int64{4194304}},
		{name: "three values", fixture: "parse/sysctl-triple", n: 3, want: []int64{4096, 131072, 33554432}},
		{name: "spaces", fixture: "parse/sysctl-triple-spaces", n: 3, want: []int64{4096, 131072, 33554432}},
		{name: "signed", fixture: "parse/sysctl-negative", n: 1, signed: true, want: []int64{-2}},
		{name: "largest", fixture: "parse/sysctl-int64-max", n: 1, want: []int64{1<<63 - 1}},
		{name: "negative", fixture: "parse/sysctl-negative", n: 1, wantErr: "negative value -2"},
		{name: "beyond int64", fixture: "parse/sysctl-too-big", n: 1, wantErr: "overflows int64"},
		{name: "too few", fixture: "parse/sysctl-two", n: 3, wantErr: "2 values, want 3"},
		{name: "too many", fixture: "parse/sysctl-four", n: 3, wantErr: "more than 3 values"},
		{name: "non-numeric", fixture: "parse/sysctl-nonnumeric", n: 1, wantErr: `not a number: "abc"`},
		{name: "truncated", fixture: "parse/sysctl-truncated", n: 1, wantErr: "truncated"},
		{name: "empty", fixture: "parse/sysctl-empty", n: 1, wantErr: "truncated"},
		{name: "blank", fixture: "parse/sysctl-blank", n: 1, wantErr: "0 values, want 1"},
		{name: "two lines", fixture: "parse/sysctl-two-lines", n: 1, wantErr: "more than one line"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := make([]int64, tc.n)
			err := parseSysctl(readFixture(t, tc.fixture), got, tc.signed)
			if !checkErr(t, err, tc.wantErr) {
				return
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("values (-want +got):\n%s", diff)
			}
		})
	}
}

const sysctlExpo = `
# HELP sockbuf_net_core_netdev_max_backlog net.core.netdev_max_backlog: packets a CPU's input queue holds before dropping (sockbuf_softnet_dropped_total). Absent outside the host's network namespace.
# TYPE sockbuf_net_core_netdev_max_backlog gauge
sockbuf_net_core_netdev_max_backlog 1000
# HELP sockbuf_net_core_rmem_default_bytes net.core.rmem_default: the receive buffer of non-TCP sockets that do not set SO_RCVBUF.
# TYPE sockbuf_net_core_rmem_default_bytes gauge
sockbuf_net_core_rmem_default_bytes 212992
# HELP sockbuf_net_core_rmem_max_bytes net.core.rmem_max: the largest receive buffer an application may ask for with SO_RCVBUF (the kernel doubles the request).
# TYPE sockbuf_net_core_rmem_max_bytes gauge
sockbuf_net_core_rmem_max_bytes 4.194304e+06
# HELP sockbuf_net_core_somaxconn net.core.somaxconn: the largest accept queue a listen() call gets (sockbuf_tcp_listen_overflows_total).
# TYPE sockbuf_net_core_somaxconn gauge
sockbuf_net_core_somaxconn 4096
# HELP sockbuf_net_core_wmem_default_bytes net.core.wmem_default: the send buffer of non-TCP sockets that do not set SO_SNDBUF.
# TYPE sockbuf_net_core_wmem_default_bytes gauge
sockbuf_net_core_wmem_default_bytes 212992
# HELP sockbuf_net_core_wmem_max_bytes net.core.wmem_max: the largest send buffer an application may ask for with SO_SNDBUF.
# TYPE sockbuf_net_core_wmem_max_bytes gauge
sockbuf_net_core_wmem_max_bytes 4.194304e+06
# HELP sockbuf_tcp_adv_win_scale net.ipv4.tcp_adv_win_scale: how much of the receive buffer is advertised as window, the rest being overhead (n > 0: buffer - buffer/2^n; n <= 0: buffer/2^-n). Ignored since Linux 6.6, which measures the overhead.
# TYPE sockbuf_tcp_adv_win_scale gauge
sockbuf_tcp_adv_win_scale 1
# HELP sockbuf_tcp_moderate_rcvbuf net.ipv4.tcp_moderate_rcvbuf: 1 if receive buffer auto-tuning is on (it is off for sockets that set SO_RCVBUF).
# TYPE sockbuf_tcp_moderate_rcvbuf gauge
sockbuf_tcp_moderate_rcvbuf 1
# HELP sockbuf_tcp_rmem_bytes net.ipv4.tcp_rmem: a TCP socket's receive buffer starts at default and auto-tuning grows it up to max (not limited by rmem_max); min is kept even under memory pressure.
# TYPE sockbuf_tcp_rmem_bytes gauge
sockbuf_tcp_rmem_bytes{setting="default"} 131072
sockbuf_tcp_rmem_bytes{setting="max"} 3.3554432e+07
sockbuf_tcp_rmem_bytes{setting="min"} 4096
# HELP sockbuf_tcp_window_scaling net.ipv4.tcp_window_scaling: 1 if TCP window scaling (RFC 7323) is on; without it a receive window is at most 64 KiB.
# TYPE sockbuf_tcp_window_scaling gauge
sockbuf_tcp_window_scaling 1
# HELP sockbuf_tcp_wmem_bytes net.ipv4.tcp_wmem: a TCP socket's send buffer starts at default and auto-tuning grows it up to max; min is kept even under memory pressure.
# TYPE sockbuf_tcp_wmem_bytes gauge
sockbuf_tcp_wmem_bytes{setting="default"} 16384
sockbuf_tcp_wmem_bytes{setting="max"} 4.194304e+06
sockbuf_tcp_wmem_bytes{setting="min"} 4096
`

func TestSysctlCollector(t *testing.T) {
	c := asPromCollector(newSysctlCollector(Config{ProcPath: "testdata/proc-host"}))
	if err := testutil.CollectAndCompare(c, strings.NewReader(sysctlExpo)); err != nil {
		t.Error(err)
	}
	// Outside the host's network namespace netdev_max_backlog does not exist: absent, and the rest is there.
	netns := asPromCollector(newSysctlCollector(Config{ProcPath: "testdata/proc-netns"}))
	if n, want := testutil.CollectAndCount(netns), testutil.CollectAndCount(c)-1; n != want {
		t.Errorf("netns fixture: %d series, want %d", n, want)
	}
	if n := testutil.CollectAndCount(netns, "sockbuf_net_core_netdev_max_backlog"); n != 0 {
		t.Errorf("netdev_max_backlog exported although its file is missing")
	}
	// tcp_adv_win_scale may be negative.
	dir := t.TempDir()
	copyTree(t, "testdata/proc-host/sys", filepath.Join(dir, "sys"))
	writeTree(t, dir, map[string]string{"sys/net/ipv4/tcp_adv_win_scale": "-2\n"})
	if err := testutil.CollectAndCompare(asPromCollector(newSysctlCollector(Config{ProcPath: dir})), strings.NewReader(`
# HELP sockbuf_tcp_adv_win_scale net.ipv4.tcp_adv_win_scale: how much of the receive buffer is advertised as window, the rest being overhead (n > 0: buffer - buffer/2^n; n <= 0: buffer/2^-n). Ignored since Linux 6.6, which measures the overhead.
# TYPE sockbuf_tcp_adv_win_scale gauge
sockbuf_tcp_adv_win_scale -2
`), "sockbuf_tcp_adv_win_scale"); err != nil {
		t.Error(err)
	}
}

func TestSysctlCollectorErrors(t *testing.T) {
	dir := t.TempDir()
	copyTree(t, "testdata/proc-host/sys", filepath.Join(dir, "sys"))
	writeTree(t, dir, map[string]string{"sys/net/core/rmem_max": "-1\n"})
	if err := newSysctlCollector(Config{ProcPath: dir}).Update(discard(t)); err == nil || !strings.Contains(err.Error(), "rmem_max: not a number: negative value -1") {
		t.Errorf("negative rmem_max: got %v", err)
	}
	err := newSysctlCollector(Config{ProcPath: t.TempDir()}).Update(discard(t))
	if err == nil || !strings.Contains(err.Error(), "none of the sysctl files exist") {
		t.Errorf("empty proc: got %v", err)
	}
}

// writeTree writes files (path relative to dir → content).
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// copyTree copies the regular files below src to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
}

// discard returns a channel that swallows metrics until the test ends.
func discard(t *testing.T) chan<- prometheus.Metric {
	ch := make(chan prometheus.Metric)
	go func() {
		for range ch {
		}
	}()
	t.Cleanup(func() { close(ch) })
	return ch
}

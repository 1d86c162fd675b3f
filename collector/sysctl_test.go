package collector

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const sysctlExpo = `
sockbuf_net_core_netdev_max_backlog 1000
sockbuf_net_core_rmem_default_bytes 212992
sockbuf_net_core_rmem_max_bytes 4.194304e+06
sockbuf_net_core_somaxconn 4096
sockbuf_net_core_wmem_default_bytes 212992
sockbuf_net_core_wmem_max_bytes 4.194304e+06
sockbuf_tcp_adv_win_scale 1
sockbuf_tcp_moderate_rcvbuf 1
sockbuf_tcp_rmem_bytes{setting="default"} 131072
sockbuf_tcp_rmem_bytes{setting="max"} 3.3554432e+07
sockbuf_tcp_rmem_bytes{setting="min"} 4096
sockbuf_tcp_window_scaling 1
sockbuf_tcp_wmem_bytes{setting="default"} 16384
sockbuf_tcp_wmem_bytes{setting="max"} 4.194304e+06
sockbuf_tcp_wmem_bytes{setting="min"} 4096
`

func TestSysctlCollector(t *testing.T) {
	c := asPromCollector(newSysctlCollector(Config{ProcPath: "testdata/proc-host"}))
	if err := testutil.CollectAndCompare(c, strings.NewReader(withHeaders(t, sysctlExpo))); err != nil {
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
	if err := testutil.CollectAndCompare(asPromCollector(newSysctlCollector(Config{ProcPath: dir})), strings.NewReader(withHeaders(t, `
sockbuf_tcp_adv_win_scale -2
`)), "sockbuf_tcp_adv_win_scale"); err != nil {
		t.Error(err)
	}
}

func TestSysctlCollectorErrors(t *testing.T) {
	dir := t.TempDir()
	copyTree(t, "testdata/proc-host/sys", filepath.Join(dir, "sys"))
	writeTree(t, dir, map[string]string{"sys/net/core/rmem_max": "-1\n"})
	if err := newSysctlCollector(Config{ProcPath: dir}).Update(context.Background(), discard(t)); err == nil || !strings.Contains(err.Error(), "rmem_max: not a number: negative value -1") {
		t.Errorf("negative rmem_max: got %v", err)
	}
	err := newSysctlCollector(Config{ProcPath: t.TempDir()}).Update(context.Background(), discard(t))
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

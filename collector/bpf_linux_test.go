//go:build linux

package collector

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sockbuf/sockbuf_exporter/bpf/drops"
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

// TestBPFCollectorLint loads the real programs (as root), scrapes the exporter with the bpf collector twice
// and lints the output; Close detaches them and later scrapes fail instead of reading a closed tracer.
func TestBPFCollectorLint(t *testing.T) {
	testenv.RequireRoot(t)
	if tr, err := drops.Open(drops.Options{}); errors.Is(err, os.ErrPermission) || errors.Is(err, os.ErrNotExist) {
		testenv.Missing(t, "cannot load the bpf programs: %v", err)
	} else if err != nil {
		t.Fatal(err)
	} else {
		tr.Close()
	}
	cfg := Config{Sockets: DefaultSocketsConfig(), BPF: BPFConfig{OwnNetNS: true}}
	e, err := New(cfg, []string{"bpf"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		problems, err := testutil.CollectAndLint(e)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
	want := `
# HELP sockbuf_scrape_collector_success Whether a collector succeeded on this scrape (1) or failed (0): missing file, permission denied, unparsable input or scrape timeout.
# TYPE sockbuf_scrape_collector_success gauge
sockbuf_scrape_collector_success{collector="bpf"} 1
`
	if err := testutil.CollectAndCompare(e, strings.NewReader(want), "sockbuf_scrape_collector_success"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(e, "sockbuf_bpf_map_full_events_total"); n != 4 {
		t.Errorf("%d sockbuf_bpf_map_full_events_total series, want one per map (4)", n)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := testutil.CollectAndCompare(e, strings.NewReader(strings.Replace(want, "} 1", "} 0", 1)), "sockbuf_scrape_collector_success"); err != nil {
		t.Errorf("after Close: %v", err)
	}
}

// TestMissingWhat: the one log line names what the host lacks for each of Open's errors.
func TestMissingWhat(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("loading BPF programs: %w", fmt.Errorf("%w (needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN, in the initial user namespace): %w", os.ErrPermission, errors.New("EPERM"))), "CAP_BPF and CAP_PERFMON"},
		{fmt.Errorf("reading the kernel's BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF): %w", os.ErrNotExist), "BTF"},
		{fmt.Errorf("tracepoint kfree_skb not in the kernel's BTF: %w", os.ErrNotExist), "skb:kfree_skb tracepoint"},
	} {
		if got := missingWhat(c.err); !strings.Contains(got, c.want) {
			t.Errorf("missingWhat(%v) = %q, want it to name %q", c.err, got, c.want)
		}
	}
}

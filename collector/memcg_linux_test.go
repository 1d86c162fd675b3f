package collector

import (
	"os"
	"testing"

	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

// On this host's own memory hierarchy: a cgroup whose TCP memory is limited is exported with its limit (in
// whole pages) and an idle usage and peak of 0.
func TestMemcgCollectorRealCgroup(t *testing.T) {
	_, path := testenv.TCPLimitedMemcg(t, "memcg-collector-test", 300000)
	c, logs := newTestMemcg(t, "/proc", DefaultMemcgMaxCgroups)
	m := gather(t, c)
	series := func(name string) (float64, bool) {
		v, ok := m[name+`{cgroup="`+path+`"}`]
		return v, ok
	}
	limit, ok := series("sockbuf_memcg_tcp_memory_limit_bytes")
	if !ok {
		t.Fatalf("no limit series for %s; log:\n%s\nseries: %v", path, logs, m)
	}
	usage, _ := series("sockbuf_memcg_tcp_memory_bytes")
	peak, _ := series("sockbuf_memcg_tcp_memory_max_usage_bytes")
	page := os.Getpagesize()
	if want := float64(300000 / page * page); limit != want || usage != 0 || peak != 0 {
		t.Errorf("%s: limit %g, usage %g, peak %g; want %g (300000 in whole pages), 0, 0", path, limit, usage, peak, want)
	}
}

package memcg

import (
	"context"
	"testing"

	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

// On this host's own hierarchy: a memory cgroup whose TCP memory is limited is among the cgroups the walk
// yields, with its limit, and cgroups without TCP accounting (this process's own) are not.
func TestWalkRealCgroup(t *testing.T) {
	_, path := testenv.TCPLimitedMemcg(t, "memcg-walk-test", 300000)
	r, err := NewReader("/proc")
	if err != nil {
		testenv.Missing(t, "no memory cgroup: %v", err)
	}
	if r.Version() != V1 {
		testenv.Missing(t, "the memory controller is on the unified hierarchy; this test limits v1 TCP memory")
	}
	var found *Stats
	var yielded []string
	res, err := r.Walk(context.Background(), 100000, func(p string, s Stats) error {
		yielded = append(yielded, p)
		if p == path {
			found = &s
		}
		if !s.TCPAccounted {
			t.Errorf("%s yielded without TCP accounting: %+v", p, s)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("walk: %+v; yielded %v", res, yielded)
	if found == nil {
		t.Fatalf("the limited cgroup %s was not yielded (yielded %v, %+v)", path, yielded, res)
	}
	if found.TCPLimit.V > 300000 || found.TCPLimit.V < 300000-64<<10 {
		t.Errorf("limit %d; want just under 300000", found.TCPLimit.V)
	}
	if res.Truncated || res.Visited < 2 {
		t.Errorf("result %+v; want the whole hierarchy visited", res)
	}
}

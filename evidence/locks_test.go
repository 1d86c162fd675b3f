package evidence

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sockbuf/sockbuf_exporter/bpf/sockiter"
	"github.com/sockbuf/sockbuf_exporter/diagnose"
)

type fakeWalker struct {
	res *sockiter.Result
	err error
}

func (f fakeWalker) Walk(context.Context) (*sockiter.Result, error) { return f.res, f.err }

func TestCountLocks(t *testing.T) {
	groups := func() map[groupKey]*groupAcc {
		return map[groupKey]*groupAcc{
			{server: true, port: 8080}: {sample: diagnose.GroupSample{Sockets: 4}},
			{port: 8080}:               {sample: diagnose.GroupSample{Sockets: 4}},
			{server: true, port: 9000}: {sample: diagnose.GroupSample{Sockets: 2}},
		}
	}
	res := &sockiter.Result{Groups: []sockiter.Group{
		{Key: sockiter.Key{Port: 8080, Role: sockiter.RoleServer, CgroupID: 7}, Stats: sockiter.Stats{Sockets: 4, RcvbufLocked: 4}},
		{Key: sockiter.Key{Port: 8080, Role: sockiter.RoleClient, CgroupID: 7}, Stats: sockiter.Stats{Sockets: 4}},
		// A socket born between the dump and the walk: more locked than the dump saw is clamped.
		{Key: sockiter.Key{Port: 9000, Role: sockiter.RoleServer}, Stats: sockiter.Stats{Sockets: 3, RcvbufLocked: 3}},
	}}
	s := &Sampler{cfg: Config{Locks: fakeWalker{res: res}}}
	var r Reading
	g := groups()
	s.countLocks(context.Background(), &r, g)
	// Without Config.CgroupName the iterator's cgroup ids are ignored, as the dump's are.
	want := map[groupKey]diagnose.Value{
		{server: true, port: 8080}: diagnose.Val(4), {port: 8080}: diagnose.Val(0), {server: true, port: 9000}: diagnose.Val(2),
	}
	for k, v := range want {
		if got := g[k].sample.Locked; got != v {
			t.Errorf("group %+v: Locked %+v, want %+v", k, got, v)
		}
	}
	if !r.LockBits {
		t.Error("LockBits false after a walk")
	}

	// A group the walk did not see, with groups beyond the iterator's map: unknown, not 0.
	res.OverflowSockets = 5
	res.Groups = res.Groups[:2]
	g = groups()
	s.countLocks(context.Background(), &Reading{}, g)
	if got := g[groupKey{server: true, port: 9000}].sample.Locked; got.Known {
		t.Errorf("a group not walked, with an overflow: Locked %+v, want unknown", got)
	}

	// A failed walk leaves every Locked unknown and says why.
	s.cfg.Locks = fakeWalker{err: errors.New("iterator gone")}
	r = Reading{}
	g = groups()
	s.countLocks(context.Background(), &r, g)
	for k, a := range g {
		if a.sample.Locked.Known {
			t.Errorf("group %+v: Locked known after a failed walk", k)
		}
	}
	if r.LockBits || len(r.Errors) != 1 || !strings.Contains(r.Errors[0], "iterator gone") {
		t.Errorf("failed walk: LockBits %v, errors %q", r.LockBits, r.Errors)
	}
}

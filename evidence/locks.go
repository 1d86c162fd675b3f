package evidence

import (
	"context"
	"fmt"

	"github.com/sockbuf/sockbuf_exporter/bpf/sockiter"
	"github.com/sockbuf/sockbuf_exporter/diagnose"
)

// LockWalker walks the namespace's TCP sockets with the bpf socket iterator (*sockiter.Engine, opened with
// Options.Cgroups when Config.CgroupName is set): its groups count the sockets whose SO_RCVBUF the
// application set (sk_userlocks & SOCK_RCVBUF_LOCK), which sock_diag cannot tell.
type LockWalker interface {
	Walk(ctx context.Context) (*sockiter.Result, error)
}

// countLocks walks the sockets once, right after the dump, and sets each group's Locked from the iterator's
// group of the same key (clamped to the dump's sockets: the walk comes a moment later). A group the walk did
// not see has none locked, unless the iterator's table overflowed. A walk that fails leaves every Locked
// unknown, and says why.
func (s *Sampler) countLocks(ctx context.Context, r *Reading, groups map[groupKey]*groupAcc) {
	res, err := s.cfg.Locks.Walk(ctx)
	if err != nil {
		r.Errors = append(r.Errors, fmt.Sprintf("SO_RCVBUF lock bits (bpf socket iterator): %v", err))
		return
	}
	locked := make(map[groupKey]uint64, len(res.Groups))
	for _, g := range res.Groups {
		k := groupKey{server: g.Role == sockiter.RoleServer, port: g.Port}
		if s.cfg.CgroupName != nil {
			k.cgroup = g.CgroupID
		}
		locked[k] += g.RcvbufLocked
	}
	// Overflowing groups of the iterator are not known by key: only a walk without them is exact.
	exact := res.OverflowSockets == 0
	for k, g := range groups {
		n, ok := locked[k]
		switch {
		case !exact && !ok:
			continue
		case n == 0:
			g.sample.Locked = diagnose.Val(0)
		default:
			g.sample.Locked = diagnose.Val(min(n, g.sample.Sockets))
		}
	}
	r.LockBits = true
}

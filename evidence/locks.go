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

// lockKey is a group as the iterator keys it, without the process.
type lockKey struct {
	server bool
	port   uint16
	cgroup uint64
}

// countLocks walks the sockets once, right after the dump, and sets each group's Locked: exact when the
// iterator's group is one group of the dump; when processes split it, exact if none or every socket of it
// is locked, unknown otherwise. A walk that fails leaves every Locked unknown, and says why.
func (s *Sampler) countLocks(ctx context.Context, r *Reading, groups map[groupKey]*groupAcc) {
	res, err := s.cfg.Locks.Walk(ctx)
	if err != nil {
		r.Errors = append(r.Errors, fmt.Sprintf("SO_RCVBUF lock bits (bpf socket iterator): %v", err))
		return
	}
	locked := make(map[lockKey]uint64, len(res.Groups))
	for _, g := range res.Groups {
		k := lockKey{server: g.Role == sockiter.RoleServer, port: g.Port}
		if s.cfg.CgroupName != nil {
			k.cgroup = g.CgroupID
		}
		locked[k] += g.RcvbufLocked
	}
	// Overflowing groups of the iterator are not known by key: only a walk without them is exact.
	exact := res.OverflowSockets == 0
	parts := map[lockKey]int{}
	sockets := map[lockKey]uint64{}
	for k, g := range groups {
		lk := lockKey{server: k.server, port: k.port, cgroup: k.cgroup}
		parts[lk]++
		sockets[lk] += g.sample.Sockets
	}
	for k, g := range groups {
		lk := lockKey{server: k.server, port: k.port, cgroup: k.cgroup}
		n, ok := locked[lk]
		switch {
		case !exact && !ok:
			continue
		case n == 0:
			g.sample.Locked = diagnose.Val(0)
		case parts[lk] == 1:
			g.sample.Locked = diagnose.Val(min(n, g.sample.Sockets))
		case n >= sockets[lk]:
			g.sample.Locked = diagnose.Val(g.sample.Sockets)
		}
	}
	r.LockBits = true
}

package evidence

import (
	"fmt"
	"slices"

	"github.com/sockbuf/sockbuf_exporter/diagnose"
	"github.com/sockbuf/sockbuf_exporter/memcg"
)

// readMemcgs finds the memory cgroup of each group's process and reads each such cgroup once. A socket is
// charged to the memory cgroup of the task that created or accepted it (sk->sk_memcg); the process holding it
// now is in that cgroup unless it was moved since. Errors are recorded once per reading, not per group.
func (s *Sampler) readMemcgs(r *Reading) {
	if s.cfg.Memcg == nil {
		return
	}
	r.MemcgOK = true
	paths := map[int32]string{}
	var firstErr error
	fails := 0
	fail := func(err error) {
		if firstErr == nil {
			firstErr = err
		}
		fails++
	}
	for i := range r.Groups {
		g := &r.Groups[i]
		if g.pid == 0 {
			continue
		}
		path, ok := paths[g.pid]
		if !ok {
			p, err := s.cfg.Memcg.CgroupOf(int(g.pid))
			if err != nil {
				fail(err) // the process may have exited since the dump
			}
			paths[g.pid], path = p, p
		}
		if path == "" {
			continue
		}
		g.Memcg = path
		if _, ok := r.Memcgs[path]; ok {
			continue
		}
		st, err := s.cfg.Memcg.Read(path)
		if err != nil {
			fail(err)
			continue
		}
		if r.Memcgs == nil {
			r.Memcgs = map[string]memcg.Stats{}
		}
		r.Memcgs[path] = st
	}
	if firstErr != nil {
		r.Errors = append(r.Errors, fmt.Sprintf("memory cgroups: %d failed, the first: %v", fails, firstErr))
	}
}

// buildMemcgs turns the memory cgroups' readings into their state over the window: the last limit, the
// highest usage sampled, and the increases of the counters between the first and the last reading of each.
func buildMemcgs(ev *diagnose.Evidence, readings []Reading) {
	type span struct{ first, last memcg.Stats }
	seen := map[string]*span{}
	var order []string
	out := map[string]*diagnose.CgroupMemory{}
	for i := range readings {
		ev.Sources.Cgroups = ev.Sources.Cgroups || readings[i].MemcgOK
		for path, st := range readings[i].Memcgs {
			sp := seen[path]
			c := out[path]
			if sp == nil {
				sp = &span{first: st}
				seen[path] = sp
				order = append(order, path)
				c = &diagnose.CgroupMemory{Cgroup: path, V1: st.Version == memcg.V1}
				out[path] = c
			}
			sp.last = st
			c.TCPUsageMax = maxValue(c.TCPUsageMax, val(st.TCPUsage, st.TCPAccounted))
			c.CurrentMax = maxValue(c.CurrentMax, val(st.Current, true))
			c.SockMax = maxValue(c.SockMax, val(st.Sock, true))
		}
	}
	slices.Sort(order)
	for _, path := range order {
		sp, c := seen[path], out[path]
		if c.V1 {
			c.TCPLimit = val(sp.last.TCPLimit, sp.last.TCPAccounted)
			c.TCPMaxUsage = val(sp.last.TCPMaxUsage, sp.last.TCPAccounted)
			c.TCPMaxUsageRise = rise(sp.first.TCPMaxUsage, sp.last.TCPMaxUsage, sp.last.TCPAccounted)
			c.TCPFailcnt = rise(sp.first.TCPFailcnt, sp.last.TCPFailcnt, sp.last.TCPAccounted)
		} else {
			c.Max = val(sp.last.Max, true)
			c.EventsMax = rise(sp.first.EventsMax, sp.last.EventsMax, true)
			c.EventsHigh = rise(sp.first.EventsHigh, sp.last.EventsHigh, true)
			c.EventsOOM = rise(sp.first.EventsOOM, sp.last.EventsOOM, true)
		}
		ev.Cgroups = append(ev.Cgroups, *c)
	}
}

// val converts a cgroup reading; it is unknown when absent or when ok is false.
func val(v memcg.Value, ok bool) diagnose.Value {
	if !v.OK || !ok {
		return diagnose.Value{}
	}
	return diagnose.Val(v.V)
}

// rise is a counter's increase from a to b; unknown when either is absent, 0 when it went back (a reset).
func rise(a, b memcg.Value, ok bool) diagnose.Value {
	if !a.OK || !b.OK || !ok {
		return diagnose.Value{}
	}
	if b.V < a.V {
		return diagnose.Val(0)
	}
	return diagnose.Val(b.V - a.V)
}

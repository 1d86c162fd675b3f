package evidence

import (
	"cmp"
	"os"
	"slices"

	"github.com/sockbuf/sockbuf_exporter/diagnose"
	"github.com/sockbuf/sockbuf_exporter/procnet"
)

// Build turns readings, oldest first, into the evidence of their window: counters as the increase between
// the first and the last reading that has them, gauges one sample per reading with socket dumps. host says
// whether the readings are of the host's network namespace. Fewer than two readings give evidence with no
// window, from which diagnose names nothing that needs an increase.
func Build(readings []Reading, host bool) *diagnose.Evidence {
	ev := &diagnose.Evidence{Groups: []diagnose.Group{}}
	ev.Sources.HostNetns = host
	ev.Memory.PageSize = uint64(os.Getpagesize())
	if len(readings) == 0 {
		return ev
	}
	first, last := readings[0], readings[len(readings)-1]
	ev.Window = last.Time.Sub(first.Time)

	// Counters: the first and the last reading that could read them.
	if a, b, ok := ends(readings, func(r *Reading) bool { return r.NetstatOK }); ok {
		ev.Netstat = diagnose.NetstatDelta(netstatMap(&a.Netstat), netstatMap(&b.Netstat))
		ev.Sources.Netstat = true
	}
	if a, b, ok := ends(readings, func(r *Reading) bool { return r.SoftnetOK }); ok {
		ev.Softnet = softnetDelta(a.Softnet, b.Softnet)
		ev.Sources.Softnet = true
	}

	// Gauges and settings.
	for i := range readings {
		r := &readings[i]
		if r.SockstatOK {
			ev.Sources.Sockstat = true
			if v, ok := r.Sockstat.Get(procnet.TCPMemPages); ok {
				ev.Memory.TCPPagesMax = maxValue(ev.Memory.TCPPagesMax, diagnose.Val(v))
			}
		}
		if r.SysctlOK {
			ev.Sources.Sysctl = true
			ev.Sysctl = sysctlOf(&r.Sysctls) // the last reading's
			ev.Memory.TCPMem = tcpMemOf(&r.Sysctls)
		}
	}

	buildSockets(ev, readings)
	buildMemcgs(ev, readings)
	return ev
}

// ends returns the first and the last reading for which ok holds, if there are two such readings.
func ends(readings []Reading, ok func(*Reading) bool) (first, last *Reading, found bool) {
	for i := range readings {
		if ok(&readings[i]) {
			if first == nil {
				first = &readings[i]
			}
			last = &readings[i]
		}
	}
	return first, last, first != nil && first != last
}

func maxValue(a, b diagnose.Value) diagnose.Value {
	if !a.Known || b.V > a.V {
		return b
	}
	return a
}

// softnetDelta sums each CPU's increase (32-bit counters that wrap); a CPU in only one reading (brought
// online or offline in between) is left out.
func softnetDelta(first, last []procnet.SoftnetRow) diagnose.Softnet {
	byCPU := make(map[int]procnet.SoftnetRow, len(first))
	for _, r := range first {
		byCPU[r.CPU] = r
	}
	out := diagnose.Softnet{Dropped: diagnose.Val(0), TimesSqueezed: diagnose.Val(0)}
	add := func(sum *diagnose.Value, d diagnose.Value) {
		if !d.Known {
			*sum = diagnose.Value{}
		} else if sum.Known {
			sum.V += d.V
		}
	}
	for _, r := range last {
		f, ok := byCPU[r.CPU]
		if !ok {
			continue
		}
		add(&out.Dropped, diagnose.Delta32(diagnose.Val(f.Dropped), diagnose.Val(r.Dropped)))
		add(&out.TimesSqueezed, diagnose.Delta32(diagnose.Val(f.Squeezed), diagnose.Val(r.Squeezed)))
	}
	return out
}

// buildSockets fills the groups and listeners from the readings with socket dumps.
func buildSockets(ev *diagnose.Evidence, readings []Reading) {
	groups := map[diagnose.GroupKey]*diagnose.Group{}
	listeners := map[string]*diagnose.Listener{}
	tcpInfo, drops, locks, dumps := true, true, true, 0
	for i := range readings {
		r := &readings[i]
		if !r.Sockets {
			continue
		}
		first := dumps == 0
		dumps++
		tcpInfo = tcpInfo && r.TCPInfo
		locks = locks && r.LockBits
		drops = drops && r.DropsKnown
		for _, gr := range r.Groups {
			// The process names a group, it does not split it: a reading that did not find the owner of a
			// group's sockets yet must not make a second group.
			key := gr.Key
			key.Process = ""
			g := groups[key]
			if g == nil {
				g = &diagnose.Group{Key: key, SocketDrops: diagnose.Val(0)}
				groups[key] = g
			}
			if gr.Key.Process != "" {
				g.Key.Process = gr.Key.Process
			}
			g.Samples = append(g.Samples, gr.Sample)
			if gr.Memcg != "" {
				g.MemoryCgroup = gr.Memcg
			}
			if !first {
				// The first dump's increases are since an earlier reading outside the window (or since
				// the sockets' birth): only a baseline.
				g.SocketDrops.V += gr.Drops
			}
		}
		for _, lr := range r.Listeners {
			l := listeners[lr.Port]
			if l == nil {
				l = &diagnose.Listener{Port: lr.Port}
				listeners[lr.Port] = l
			}
			l.Samples = append(l.Samples, lr.Sample)
		}
	}
	ev.Samples = dumps
	ev.Sources.Sockets = dumps > 0
	ev.Sources.TCPInfo = dumps > 0 && tcpInfo
	ev.Sources.RcvbufLock = dumps > 0 && locks
	for _, g := range groups {
		if !drops || dumps < 2 {
			g.SocketDrops = diagnose.Value{}
		}
		ev.Groups = append(ev.Groups, *g)
	}
	slices.SortFunc(ev.Groups, func(x, y diagnose.Group) int {
		return cmp.Or(cmp.Compare(x.Key.Role, y.Key.Role), cmp.Compare(x.Key.Port, y.Key.Port))
	})
	for _, l := range listeners {
		ev.Listeners = append(ev.Listeners, *l)
	}
	slices.SortFunc(ev.Listeners, func(x, y diagnose.Listener) int { return cmp.Compare(x.Port, y.Port) })
}

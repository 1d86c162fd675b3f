package evidence

import (
	"cmp"
	"slices"
	"strconv"

	"github.com/sockbuf/sockbuf_exporter/bpf/drops"
	"github.com/sockbuf/sockbuf_exporter/diagnose"
)

// Tracer is what a Sampler needs of a bpf/drops.Tracer: the receive drops by reason per socket group, buffer
// growth and memory-limit hits, counted in the kernel since the tracer was opened.
type Tracer interface {
	SetListening(netns uint32, ports []uint16) error
	Read() (drops.Snapshot, error)
	Attributed() bool
	Missing() []string
}

// readTracer tells the tracer this reading's listening ports (so that it groups like the dumps do) and
// reads its counters into r.
func (s *Sampler) readTracer(r *Reading, ports []uint16) {
	t := s.cfg.Tracer
	if err := t.SetListening(s.cfg.TracerNetNS, ports); err != nil {
		r.Errors = append(r.Errors, "bpf: "+err.Error())
		return
	}
	snap, err := t.Read()
	if err != nil {
		r.Errors = append(r.Errors, "bpf: "+err.Error())
		return
	}
	r.BPF = &snap
}

// Keys of the bpf counters as the evidence holds them: by cgroup name when the socket groups are
// (Config.CgroupName), so that diagnose matches them to their group.
type dropKey struct {
	reason, role, port, cgroup string
	locked                     bool
}

type growKey struct{ role, port, cgroup string }

func portStr(r drops.Role, p uint16) string {
	if r == drops.RoleUnknown {
		return ""
	}
	return strconv.Itoa(int(p))
}

// sums folds a snapshot into the evidence's keys.
func sums(s *drops.Snapshot, cgroupName func(uint64) string) (d map[dropKey]uint64, u map[string]uint64, g map[growKey]uint64, l map[string]uint64) {
	d, u, g, l = map[dropKey]uint64{}, map[string]uint64{}, map[growKey]uint64{}, map[string]uint64{}
	name := func(id uint64) string {
		if cgroupName == nil || id == 0 {
			return ""
		}
		return cgroupName(id)
	}
	for _, x := range s.Drops {
		d[dropKey{x.Reason, x.Role.String(), portStr(x.Role, x.Port), name(x.CgroupID), x.RcvbufLocked}] += x.Packets
	}
	for _, x := range s.Unattributed {
		u[x.Reason] += x.Packets
	}
	for _, x := range s.RcvbufGrow {
		g[growKey{x.Role.String(), portStr(x.Role, x.Port), name(x.CgroupID)}] += x.Count
	}
	for _, x := range s.MemoryLimit {
		l[x.Kind.String()] += x.Count
	}
	return d, u, g, l
}

// increase is last - first for each key of last (a key missing from first was 0 then); counters only rise
// while the tracer is open, so a fall means another tracer and the key is left out.
func increase[K comparable](first, last map[K]uint64) map[K]uint64 {
	out := map[K]uint64{}
	for k, v := range last {
		if v > first[k] {
			out[k] = v - first[k]
		}
	}
	return out
}

// buildBPF fills ev.BPF from the first and the last reading with tracer counters.
func buildBPF(ev *diagnose.Evidence, readings []Reading, attributed, growth, limits bool, cgroupName func(uint64) string) {
	a, b, ok := ends(readings, func(r *Reading) bool { return r.BPF != nil })
	if !ok {
		return
	}
	d1, u1, g1, l1 := sums(a.BPF, cgroupName)
	d2, u2, g2, l2 := sums(b.BPF, cgroupName)
	out := &diagnose.BPF{Unattributed: increase(u1, u2)}
	for k, n := range increase(d1, d2) {
		out.Drops = append(out.Drops, diagnose.ReceiveDrops{Role: k.role, Port: k.port, Cgroup: k.cgroup, Reason: k.reason, RcvbufLocked: k.locked, Count: n})
	}
	slices.SortFunc(out.Drops, func(x, y diagnose.ReceiveDrops) int {
		return cmp.Or(cmp.Compare(x.Role, y.Role), cmp.Compare(x.Port, y.Port), cmp.Compare(x.Cgroup, y.Cgroup), cmp.Compare(x.Reason, y.Reason),
			cmp.Compare(btoi(x.RcvbufLocked), btoi(y.RcvbufLocked)))
	})
	if growth {
		for k, n := range increase(g1, g2) {
			out.Growth = append(out.Growth, diagnose.RcvbufGrowth{Role: k.role, Port: k.port, Cgroup: k.cgroup, Count: n})
		}
		slices.SortFunc(out.Growth, func(x, y diagnose.RcvbufGrowth) int {
			return cmp.Or(cmp.Compare(x.Role, y.Role), cmp.Compare(x.Port, y.Port), cmp.Compare(x.Cgroup, y.Cgroup))
		})
	}
	if limits {
		for k, n := range increase(l1, l2) {
			out.LimitHits = append(out.LimitHits, diagnose.MemoryLimitHits{Kind: k, Count: n})
		}
		slices.SortFunc(out.LimitHits, func(x, y diagnose.MemoryLimitHits) int { return cmp.Compare(x.Kind, y.Kind) })
	}
	ev.BPF = out
	ev.Sources.BPFDrops = attributed
	ev.Sources.BPFGrowth = growth
	ev.Sources.BPFLimits = limits
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

package collector

import (
	"cmp"
	"slices"
)

// The kernel counts per kernel key (reason code, role, port, cgroup id, rcvbuf_locked) since the programs were
// loaded; the exporter shows label sets (cgroup ids become names, groups beyond the cap fold into
// port="other"). Which label set a key maps to can change between scrapes (a cgroup's name is found on a
// later walk, a group folds or comes back), so the value shown for a label set is not the kernel's counter
// but an accumulator of the deltas of the keys that map to it on each scrape: it never goes down. This is
// sockagg's drop-totals rule (a group's deltas always go to its own counter, folded or not; the "other"
// counter of a role adds the deltas of whatever is folded on that scrape), applied to kernel counters
// instead of per-socket sk_drops.

// bpfGroup is the part of a label set that the group cap applies to.
type bpfGroup struct {
	role, port, cgroup string
}

// bpfSeries is one exported label set. reason is set for drops only, kind for memory limit hits only.
type bpfSeries struct {
	reason string
	kind   string
	locked bool
	group  bpfGroup
}

// kernelKey is one key of a kernel map, whatever the map: the fields a map does not have stay zero.
type kernelKey struct {
	reason uint32
	cgroup uint64
	port   uint16
	role   uint8
	kind   uint8
	locked bool
}

// bpfSample is a series with its cumulative value.
type bpfSample struct {
	series bpfSeries
	value  uint64
}

// bpfCounters turns the cumulative kernel counters of one map into monotonic per-label-set counters with a
// cap on the groups. Its memory is bounded by the kernel map's: one entry per kernel key and one per label set
// a key was ever mapped to (a key maps to a second one when its cgroup is named late or renamed).
type bpfCounters struct {
	maxGroups int // 0: no cap (memory limit hits have no port)

	last   map[kernelKey]uint64 // the kernel's value at the previous scrape
	totals map[bpfSeries]uint64 // what is exported per label set

	// Scratch of one scrape, reused.
	deltas map[bpfSeries]uint64 // every series some key maps to on this scrape, with its delta
	scores map[bpfGroup]uint64  // per group, the sum of its keys' kernel values: the cap keeps the largest
	ranked []bpfGroup
	shown  map[bpfGroup]bool
	out    []bpfSample
	folded int
}

func newBPFCounters(maxGroups int) *bpfCounters {
	return &bpfCounters{
		maxGroups: maxGroups,
		last:      map[kernelKey]uint64{},
		totals:    map[bpfSeries]uint64{},
		deltas:    map[bpfSeries]uint64{},
		scores:    map[bpfGroup]uint64{},
		shown:     map[bpfGroup]bool{},
	}
}

// begin starts a scrape.
func (c *bpfCounters) begin() {
	clear(c.deltas)
	clear(c.scores)
}

// add records a kernel key's cumulative value and the label set it maps to on this scrape.
func (c *bpfCounters) add(k kernelKey, s bpfSeries, cumulative uint64) {
	prev := c.last[k]
	delta := cumulative - prev
	if cumulative < prev {
		delta = cumulative // a counter the kernel restarted (programs reloaded); never seen to happen
	}
	c.last[k] = cumulative
	c.deltas[s] += delta
	c.scores[s.group] += cumulative
}

// finish ends a scrape: it chooses the groups shown (the cap's worth with the most events since start, ties
// by labels so the set does not flap), adds every series' delta to its own counter and the deltas of folded
// series to their role's "other" counter, and returns the series to export, sorted. The result is valid
// until the next finish.
func (c *bpfCounters) finish() []bpfSample {
	for s, d := range c.deltas {
		c.totals[s] += d
	}
	c.chooseGroups()
	c.out = c.out[:0]
	for s, d := range c.deltas {
		if c.shown[s.group] {
			c.out = append(c.out, bpfSample{series: s, value: c.totals[s]})
			continue
		}
		o := s
		o.group = bpfGroup{role: s.group.role, port: foldedPortLabel}
		c.totals[o] += d
	}
	// An "other" series is exported from the first time something folded into it, for as long as the
	// exporter runs, so that its counter does not vanish on a scrape where nothing is folded.
	for s, v := range c.totals {
		if s.group.port == foldedPortLabel {
			c.out = append(c.out, bpfSample{series: s, value: v})
		}
	}
	slices.SortFunc(c.out, func(a, b bpfSample) int { return compareSeries(a.series, b.series) })
	return c.out
}

// foldedPortLabel is the port label of folded groups, as in the sockets collector.
const foldedPortLabel = "other"

// chooseGroups fills c.shown with the groups that stay under the cap, with the sockets collector's rule: keep
// maxGroups-1 groups and fold the rest into one "other" group, or one per role when the rest has several.
func (c *bpfCounters) chooseGroups() {
	clear(c.shown)
	c.ranked = c.ranked[:0]
	for g := range c.scores {
		c.ranked = append(c.ranked, g)
	}
	c.folded = 0
	if c.maxGroups <= 0 || len(c.ranked) <= c.maxGroups {
		for _, g := range c.ranked {
			c.shown[g] = true
		}
		return
	}
	slices.SortFunc(c.ranked, func(a, b bpfGroup) int {
		return cmp.Or(-cmp.Compare(c.scores[a], c.scores[b]), compareGroups(a, b))
	})
	keep := c.maxGroups - 1
	for keep > 0 {
		roles := map[string]bool{}
		for _, g := range c.ranked[keep:] {
			roles[g.role] = true
		}
		if keep+len(roles) <= c.maxGroups {
			break
		}
		keep--
	}
	for _, g := range c.ranked[:keep] {
		c.shown[g] = true
	}
	c.folded = len(c.ranked) - keep
}

// roleOrder sorts servers first, as the sockets collector does, then clients, then unknown.
func roleOrder(r string) int {
	switch r {
	case "server":
		return 0
	case "client":
		return 1
	}
	return 2
}

func compareGroups(a, b bpfGroup) int {
	return cmp.Or(cmp.Compare(roleOrder(a.role), roleOrder(b.role)),
		cmp.Compare(len(a.port), len(b.port)), cmp.Compare(a.port, b.port), cmp.Compare(a.cgroup, b.cgroup))
}

func compareSeries(a, b bpfSeries) int {
	return cmp.Or(compareGroups(a.group, b.group), cmp.Compare(a.reason, b.reason), cmp.Compare(a.kind, b.kind),
		cmp.Compare(boolInt(a.locked), boolInt(b.locked)))
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

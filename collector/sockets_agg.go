package collector

import (
	"cmp"
	"math"
	"slices"

	"github.com/sockbuf/sockbuf_exporter/sockdiag"
)

// This file is the pure part of the sockets collector: it turns a stream of sockdiag.Socket into per-group
// sums, two histograms and a drops counter, without system calls, so tests can feed it synthetic sockets.
// The hot path (add) does one map lookup per socket and never allocates once the maps have grown to the
// host's size: the maps and slices live in the aggregator and are cleared, not reallocated, every scrape.

// Socket roles. A socket is a server socket when its local port is one a LISTEN socket of the namespace
// listens on; every other non-listening socket is a client socket, grouped by the port it talks to.
const (
	roleClient uint8 = iota
	roleServer
)

var roleNames = [...]string{roleClient: "client", roleServer: "server"}

// foldedPort is the port label of the groups that did not fit under the cap.
const foldedPort = "other"

// fillBuckets are the upper bounds of sockbuf_rmem_fill_ratio. 0 separates idle sockets (almost all of
// them) from the rest; the configured full ratio is added when missing so the histogram agrees with
// sockbuf_rcvbuf_full_sockets; rmem_alloc can exceed rcvbuf shortly before the kernel prunes, hence 1.5.
var fillBuckets = []float64{0, 0.1, 0.25, 0.5, 0.75, 0.9, 1, 1.5}

// rcvbufBuckets are the upper bounds of sockbuf_rcvbuf_size_bytes. The kernel stores twice the value an
// application passes to SO_RCVBUF (capped at 2 × net.core.rmem_max) and then never autotunes that socket,
// while autotuning produces arbitrary sizes between tcp_rmem's default and its max. So the narrow buckets
// (2097151, 2097152] and (4194303, 4194304] hold the sockets pinned with SO_RCVBUF of 1 MiB and 2 MiB;
// 131072 is tcp_rmem's default (a socket that never grew); 425984 is a SO_RCVBUF request capped by the
// default rmem_max (212992); 6291456 is tcp_rmem's default max, and the buckets above show growth toward
// a raised max (up to 32 MiB).
var rcvbufBuckets = []float64{
	65536, 131072, 262144, 425984, 1048576,
	2097151, 2097152, 4194303, 4194304,
	6291456, 8388608, 16777216, 33554432,
}

// groupKey identifies a group while a dump streams: the cgroup is still its id (names are resolved once per
// group afterwards, not once per socket) and the process is an index into the process scanner's names.
type groupKey struct {
	cgroupID uint64
	process  int32
	port     uint16
	role     uint8
}

// groupStats are the sums over one group's sockets.
type groupStats struct {
	sockets      uint64
	recvQueue    uint64
	recvQueueMax uint64
	sendQueue    uint64
	rmemAlloc    uint64
	rcvbuf       uint64
	full         uint64
	zeroWindow   uint64 // sockets advertising a zero receive window (tcp_info, when asked for)
	drops        uint64 // drops added on this scrape (deltas since the previous one)
}

// add counts a non-listening socket into g; the netns collector sums a namespace's sockets with it too. It
// returns the socket's rmem_alloc/rcvbuf, ok false when the socket has no buffers (TIME_WAIT and SYN_RECV
// mini-sockets) or a zero rcvbuf.
func (g *groupStats) add(s *sockdiag.Socket, fullRatio float64) (fill float64, ok bool) {
	g.sockets++
	rq := uint64(s.RQueue)
	g.recvQueue += rq
	g.recvQueueMax = max(g.recvQueueMax, rq)
	g.sendQueue += uint64(s.WQueue)
	if s.HasRcvWnd() && s.TCPInfo.RcvWnd == 0 && s.State == sockdiag.StateEstablished {
		g.zeroWindow++
	}
	if !s.HasSKMemInfo {
		return 0, false
	}
	m := &s.SKMemInfo
	g.rmemAlloc += uint64(m.RmemAlloc)
	g.rcvbuf += uint64(m.Rcvbuf)
	if m.Rcvbuf == 0 {
		return 0, false
	}
	fill = float64(m.RmemAlloc) / float64(m.Rcvbuf)
	if fill >= fullRatio {
		g.full++
	}
	return fill, true
}

func (g *groupStats) merge(o *groupStats) {
	g.sockets += o.sockets
	g.recvQueue += o.recvQueue
	g.recvQueueMax = max(g.recvQueueMax, o.recvQueueMax)
	g.sendQueue += o.sendQueue
	g.rmemAlloc += o.rmemAlloc
	g.rcvbuf += o.rcvbuf
	g.full += o.full
	g.zeroWindow += o.zeroWindow
	g.drops += o.drops
}

// groupLabels is a group as exported: after cgroup ids and process indexes became names (two ids can share
// a name) and after folding (folded groups have other set and no attribution). Names, not indexes, key the
// drops counters, which outlive the process name table.
type groupLabels struct {
	role    uint8
	other   bool
	port    uint16
	cgroup  string
	process string
}

func compareLabels(a, b groupLabels) int {
	if c := cmp.Compare(a.role, b.role); c != 0 {
		return -c // servers first: there are few of them and they are the host's own services
	}
	if a.other != b.other {
		if a.other {
			return 1
		}
		return -1
	}
	return cmp.Or(cmp.Compare(a.port, b.port), cmp.Compare(a.cgroup, b.cgroup), cmp.Compare(a.process, b.process))
}

// group is one exported group with its sums; drops is the group's cumulative counter.
type group struct {
	labels groupLabels
	stats  groupStats
	drops  uint64
	gen    uint32 // the scrape that last saw the group live
}

// listenStats is the fullest LISTEN socket of one port (of its IPv4 and IPv6 sockets, and of several
// SO_REUSEPORT ones). Each listener has an accept queue of its own and the kernel drops connections on a full
// one even when the port's other listeners have room, so sums would hide exactly the listener to alert on.
type listenStats struct {
	port   uint16
	other  bool
	length uint64 // accept queue: connections waiting for accept()
	limit  uint64 // the backlog the application passed to listen(), capped by net.core.somaxconn
}

// fill is length / limit; a listener with backlog 0 is full as soon as one connection waits.
func (l *listenStats) fill() float64 {
	if l.limit == 0 {
		if l.length == 0 {
			return 0
		}
		return math.Inf(1)
	}
	return float64(l.length) / float64(l.limit)
}

// compareFullness orders listeners fullest first: by fill, then by the longer queue, then by the smaller
// limit, so that the choice does not depend on the order of the dump.
func compareFullness(x, y *listenStats) int {
	return cmp.Or(-cmp.Compare(x.fill(), y.fill()), -cmp.Compare(x.length, y.length), cmp.Compare(x.limit, y.limit))
}

// takeFullest makes l the fullest of l and o.
func (l *listenStats) takeFullest(o *listenStats) {
	if compareFullness(o, l) < 0 {
		l.length, l.limit = o.length, o.limit
	}
}

// histogram counts observations per bucket (not cumulative until exported).
type histogram struct {
	bounds []float64
	counts []uint64 // len(bounds)+1: the last one is above every bound
	sum    float64
	count  uint64
}

func newHistogram(bounds []float64) histogram {
	return histogram{bounds: bounds, counts: make([]uint64, len(bounds)+1)}
}

func (h *histogram) observe(v float64) {
	i := 0
	for i < len(h.bounds) && v > h.bounds[i] {
		i++
	}
	h.counts[i]++
	h.sum += v
	h.count++
}

func (h *histogram) reset() {
	clear(h.counts)
	h.sum, h.count = 0, 0
}

// cumulative returns the buckets as Prometheus wants them: upper bound → observations at or below it.
func (h *histogram) cumulative() map[float64]uint64 {
	out := make(map[float64]uint64, len(h.bounds))
	var n uint64
	for i, b := range h.bounds {
		n += h.counts[i]
		out[b] = n
	}
	return out
}

// dropEntry remembers one socket's drops. last is what the previous scrapes already counted; cur is this
// scrape's value, committed into last when the scrape ends, so a dump that the kernel restarts (and that
// shows the same socket twice) does not count a delta twice.
type dropEntry struct {
	last, cur uint32
	gen       uint32
}

// maxTrackedDroppers bounds the per-socket drops memory (about 40 bytes an entry): only sockets that have
// dropped something are tracked, and closed ones are forgotten at the end of the scrape that no longer sees
// them. Beyond the bound, the drops of sockets not yet tracked are not counted.
const maxTrackedDroppers = 1 << 16

// dropTracker turns the per-socket sk_drops gauges into deltas.
type dropTracker struct {
	gen      uint32
	byCookie map[uint64]dropEntry
	limit    int
}

// observe returns how many drops the socket added since the scrape that last saw it. A socket that was
// never seen contributes all its drops; a cookie whose drops went down belongs to a new socket (cookies are
// not reused by Linux, but a restarted kernel-side counter must not make the total go down).
func (d *dropTracker) observe(cookie uint64, drops uint32) uint64 {
	if drops == 0 {
		// The common case needs no lookup. A tracked cookie that now shows 0 is a new socket: it is
		// dropped as unseen at the end of the scrape, which is correct.
		return 0
	}
	e, ok := d.byCookie[cookie]
	switch {
	case !ok:
		if len(d.byCookie) >= d.limit {
			return 0
		}
		e = dropEntry{}
	case drops < e.last:
		e.last = 0
	}
	e.cur, e.gen = drops, d.gen
	d.byCookie[cookie] = e
	return uint64(drops - e.last)
}

// commit ends a scrape: what was seen becomes the baseline and what was not seen has closed.
func (d *dropTracker) commit() {
	for k, e := range d.byCookie {
		if e.gen != d.gen {
			delete(d.byCookie, k)
			continue
		}
		e.last = e.cur
		d.byCookie[k] = e
	}
}

// maxDropCounters bounds the groups whose cumulative drops the aggregator remembers while they are not
// exported live (folded into port="other", or without sockets). Only groups that ever dropped are
// remembered; beyond the bound the one live longest ago is forgotten, and its counter restarts from 0 if the
// group comes back. About 100 bytes an entry. The HELP of sockbuf_socket_drops_total names this number.
const maxDropCounters = 1 << 14

// dropTotal is a group's cumulative drops counter, the scrape that last saw the group with sockets (folded
// or not) and the scrape that last exported it live.
type dropTotal struct {
	value uint64
	live  uint32
	shown uint32
}

// aggregator holds everything that persists between scrapes. It is not safe for concurrent use; the
// collector serializes scrapes around it.
type aggregator struct {
	maxGroups int
	fullRatio float64
	cgroups   bool // key groups by cgroup id; otherwise every socket gets id 0

	gen       uint32
	listening [65536 / 64]uint64 // bitset of listening ports, for the role of each socket
	listeners map[uint16]int     // port → index in listen
	listen    []listenStats
	states    [16]uint64 // by idiag_state

	index  map[groupKey]int32
	groups []groupKeyStats

	fill histogram
	size histogram

	drops      dropTracker
	dropTotals map[groupLabels]dropTotal // by the group's own labels, and one per role for port="other"
	dropLimit  int                       // maxDropCounters; tests lower it

	// Output of finish, reused.
	merged   map[groupLabels]int
	out      []group
	outOld   []group // counters of groups without live sockets this scrape
	outListn []listenStats
	folded   int
}

type groupKeyStats struct {
	key   groupKey
	stats groupStats
}

func newAggregator(maxGroups int, fullRatio float64, cgroups bool) *aggregator {
	if maxGroups < 2 {
		maxGroups = 2 // one "other" group per role must always fit
	}
	fb := fillBuckets
	if !slices.Contains(fb, fullRatio) && fullRatio > 0 {
		fb = append(slices.Clone(fb), fullRatio)
		slices.Sort(fb)
	}
	return &aggregator{
		maxGroups:  maxGroups,
		fullRatio:  fullRatio,
		cgroups:    cgroups,
		listeners:  map[uint16]int{},
		index:      map[groupKey]int32{},
		fill:       newHistogram(fb),
		size:       newHistogram(rcvbufBuckets),
		drops:      dropTracker{byCookie: map[uint64]dropEntry{}, limit: maxTrackedDroppers},
		dropTotals: map[groupLabels]dropTotal{},
		dropLimit:  maxDropCounters,
		merged:     map[groupLabels]int{},
	}
}

// begin starts a scrape.
func (a *aggregator) begin() {
	a.gen++
	a.drops.gen = a.gen
	a.resetListeners()
	a.resetSockets()
}

// resetListeners forgets the listeners seen so far; the collector calls it again when a dump restarts.
func (a *aggregator) resetListeners() {
	clear(a.listening[:])
	clear(a.listeners)
	a.listen = a.listen[:0]
	a.states[sockdiag.StateListen] = 0
}

// resetSockets forgets the non-listening sockets seen so far; the collector calls it again when a dump
// restarts. Tracked drops need no reset: their deltas are recomputed from the committed baseline.
func (a *aggregator) resetSockets() {
	listen := a.states[sockdiag.StateListen]
	clear(a.states[:])
	a.states[sockdiag.StateListen] = listen
	clear(a.index)
	a.groups = a.groups[:0]
	a.fill.reset()
	a.size.reset()
}

// addListener records a LISTEN socket. Every listener must be added before the first add.
func (a *aggregator) addListener(s *sockdiag.Socket) {
	port := s.Src.Port()
	a.states[sockdiag.StateListen]++
	a.listening[port/64] |= 1 << (port % 64)
	this := listenStats{port: port, length: uint64(s.AcceptQueue()), limit: uint64(s.AcceptQueueLimit())}
	i, ok := a.listeners[port]
	if !ok {
		a.listeners[port] = len(a.listen)
		a.listen = append(a.listen, this)
		return
	}
	a.listen[i].takeFullest(&this)
}

// add records a non-listening socket; process is the owner's index in the process names, 0 for none. LISTEN
// sockets go to addListener only: the collector skips them in the full dump, their own dump counted them.
func (a *aggregator) add(s *sockdiag.Socket, process int32) {
	a.states[s.State&15]++
	k := groupKey{process: process, role: roleClient, port: s.Dst.Port()}
	if lp := s.Src.Port(); a.listening[lp/64]&(1<<(lp%64)) != 0 {
		k.role, k.port = roleServer, lp
	}
	if a.cgroups && s.HasCgroupID {
		k.cgroupID = s.CgroupID
	}
	i, ok := a.index[k]
	if !ok {
		i = int32(len(a.groups))
		a.groups = append(a.groups, groupKeyStats{key: k})
		a.index[k] = i
	}
	g := &a.groups[i].stats
	if fill, ok := g.add(s, a.fullRatio); ok {
		a.fill.observe(fill)
	}
	if !s.HasSKMemInfo {
		return
	}
	m := &s.SKMemInfo
	if s.State == sockdiag.StateEstablished {
		a.size.observe(float64(m.Rcvbuf))
	}
	if m.Drops > 0 {
		g.drops += a.drops.observe(s.Cookie, m.Drops)
	}
}

// finish ends a scrape: it names the groups (cgroupName maps a cgroup id to its label, processName a process
// index to its name; either may be nil), merges those that
// got the same labels, keeps the most interesting maxGroups and folds the rest into port="other" per
// role, and adds this scrape's drops to the cumulative counters. The result is in a.out (live groups),
// a.outOld (counters of groups with no socket left), a.outListn and a.folded; all are valid until the next
// begin.
//
// No drops counter may go down for a label set, so a group's deltas go to the counter under its own labels
// before folding, whether or not it is then exported: a group that folds and later comes back goes on from
// where it was, its drops while folded included. The "other" counter of a role is an accumulator of its own
// that adds the deltas of whatever is folded on each scrape; it is not the sum of its members' counters,
// which would fall when a member with many drops leaves it.
func (a *aggregator) finish(cgroupName func(id uint64) string, processName func(int32) string) {
	a.drops.commit()

	clear(a.merged)
	a.out = a.out[:0]
	for i := range a.groups {
		g := &a.groups[i]
		l := groupLabels{role: g.key.role, port: g.key.port}
		if g.key.cgroupID != 0 && cgroupName != nil {
			l.cgroup = cgroupName(g.key.cgroupID)
		}
		if g.key.process != 0 && processName != nil {
			l.process = processName(g.key.process)
		}
		j, ok := a.merged[l]
		if !ok {
			j = len(a.out)
			a.out = append(a.out, group{labels: l})
			a.merged[l] = j
		}
		a.out[j].stats.merge(&g.stats)
	}
	for i := range a.out {
		a.addDrops(a.out[i].labels, a.out[i].stats.drops)
	}

	// Keep the groups an operator most needs to see: full sockets first, then queued bytes, then size.
	// Ties break on the labels so that the kept set does not flap between scrapes.
	slices.SortFunc(a.out, func(x, y group) int {
		return cmp.Or(
			-cmp.Compare(x.stats.full, y.stats.full),
			-cmp.Compare(x.stats.recvQueue, y.stats.recvQueue),
			-cmp.Compare(x.stats.sockets, y.stats.sockets),
			compareLabels(x.labels, y.labels))
	})
	a.folded = 0
	if len(a.out) > a.maxGroups {
		a.fold()
	}

	for i := range a.out {
		g := &a.out[i]
		if g.labels.other {
			a.addDrops(g.labels, g.stats.drops)
		}
		t, ok := a.dropTotals[g.labels]
		if ok {
			t.shown = a.gen
			a.dropTotals[g.labels] = t
		}
		g.drops = t.value
	}
	a.collectOldTotals()
	a.finishListeners()
}

// addDrops adds a group's drops of this scrape to its counter and marks the group as live. Groups that never
// dropped take no memory.
func (a *aggregator) addDrops(l groupLabels, delta uint64) {
	t, ok := a.dropTotals[l]
	if !ok && delta == 0 {
		return
	}
	t.value += delta
	t.live = a.gen
	a.dropTotals[l] = t
}

// fold keeps the first groups of a.out (sorted) and merges the rest into one "other" group per role, so
// that the output never has more than maxGroups groups.
func (a *aggregator) fold() {
	keep := a.maxGroups - 1
	rest := a.out[keep:]
	if slices.ContainsFunc(rest, func(g group) bool { return g.labels.role != rest[0].labels.role }) {
		keep = a.maxGroups - 2
		rest = a.out[keep:]
	}
	var others [len(roleNames)]group
	for r := range others {
		others[r].labels = groupLabels{role: uint8(r), other: true}
	}
	for i := range rest {
		o := &others[rest[i].labels.role]
		o.stats.merge(&rest[i].stats)
	}
	a.folded = len(rest)
	a.out = a.out[:keep]
	for r := range others {
		if others[r].stats.sockets > 0 {
			a.out = append(a.out, others[r])
		}
	}
}

// collectOldTotals lists the counters of groups that had no socket this scrape, so that a group whose
// sockets all closed keeps its drops, as far as the group cap leaves room for their series (the groups that
// went away last first). Counters without room stay remembered: their series comes back with its value when
// there is room again or the group returns. Beyond dropLimit the counters of the groups live longest ago are
// forgotten; the "other" counters and those exported live are never.
func (a *aggregator) collectOldTotals() {
	a.outOld = a.outOld[:0]
	evictable := 0
	for l, t := range a.dropTotals {
		if t.live != a.gen {
			a.outOld = append(a.outOld, group{labels: l, drops: t.value, gen: t.live})
		}
		if t.shown != a.gen && !l.other {
			evictable++
		}
	}
	// Newest first: the counters of groups that went away last are shown first.
	slices.SortFunc(a.outOld, func(x, y group) int {
		return cmp.Or(-cmp.Compare(x.gen, y.gen), compareLabels(x.labels, y.labels))
	})
	if room := max(a.maxGroups-len(a.out), 0); len(a.outOld) > room {
		a.outOld = a.outOld[:room]
	}
	slices.SortFunc(a.outOld, func(x, y group) int { return compareLabels(x.labels, y.labels) })
	if len(a.dropTotals) > a.dropLimit && evictable > 0 {
		a.evictTotals()
	}
}

// evictTotals forgets the counters of the groups live longest ago until at most dropLimit remain (or only
// unevictable ones). It runs only when the bound is exceeded, so its allocation is rare.
func (a *aggregator) evictTotals() {
	var victims []group
	for l, t := range a.dropTotals {
		if t.shown != a.gen && !l.other {
			victims = append(victims, group{labels: l, gen: t.live})
		}
	}
	slices.SortFunc(victims, func(x, y group) int {
		return cmp.Or(cmp.Compare(x.gen, y.gen), compareLabels(x.labels, y.labels))
	})
	for _, v := range victims[:min(len(victims), len(a.dropTotals)-a.dropLimit)] {
		delete(a.dropTotals, v.labels)
	}
	// A forgotten counter must not be exported on this scrape either: its next value would start from 0.
	a.outOld = slices.DeleteFunc(a.outOld, func(g group) bool {
		_, ok := a.dropTotals[g.labels]
		return !ok
	})
}

// finishListeners caps the listening ports like the groups: the fullest ports stay, and port="other" shows
// the fullest of the rest, as a port shows the fullest of its listeners.
func (a *aggregator) finishListeners() {
	a.outListn = append(a.outListn[:0], a.listen...)
	slices.SortFunc(a.outListn, func(x, y listenStats) int {
		return cmp.Or(compareFullness(&x, &y), cmp.Compare(x.port, y.port))
	})
	if len(a.outListn) > a.maxGroups {
		rest := a.outListn[a.maxGroups-1:]
		other := listenStats{other: true, length: rest[0].length, limit: rest[0].limit} // sorted: the fullest
		a.outListn = append(a.outListn[:a.maxGroups-1], other)
	}
}

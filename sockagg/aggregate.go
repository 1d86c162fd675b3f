// Package sockagg folds TCP sockets into bounded groups: per role (server when the local port has a LISTEN
// socket, else client), port and owner (cgroup id, process), with sums, a fill-ratio and an rcvbuf-size
// histogram, the fullest listener per port, a cap on the groups with the rest folded into port="other", and
// per-group drops counters that survive sockets closing and groups folding. It does no system calls and
// knows nothing of Prometheus, so tests feed it synthetic sockets and every socket engine shares it. The hot
// path (Add) finds a socket's group through a port-indexed table and never allocates once the slices have
// grown to the host's size: they live in the Aggregator and are cleared, not reallocated, every scrape.
package sockagg

import (
	"cmp"
	"math"
	"net/netip"
	"slices"
	"strconv"

	"github.com/sockbuf/sockbuf_exporter/sockdiag"
)

// Socket roles. A socket is a server socket when its local port is one a LISTEN socket of the namespace
// listens on; every other non-listening socket is a client socket, grouped by the port it talks to.
const (
	Client Role = iota
	Server
)

// Role is a socket's side of the connection: the value of the role label.
type Role uint8

func (r Role) String() string { return RoleNames[r] }

var RoleNames = [...]string{Client: "client", Server: "server"}

// FoldedPort is the port label of the groups that did not fit under the cap.
const FoldedPort = "other"

// fillBuckets are the upper bounds of sockbuf_rmem_fill_ratio. 0 separates idle sockets (almost all of
// them) from the rest; the configured full ratio is added when missing so the Histogram agrees with
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
	role     Role
}

// Stats are the sums over one group's sockets.
type Stats struct {
	Sockets      uint64
	RecvQueue    uint64
	RecvQueueMax uint64
	SendQueue    uint64
	RmemAlloc    uint64
	Rcvbuf       uint64
	Full         uint64
	ZeroWindow   uint64 // sockets advertising a zero receive window (tcp_info, when asked for)
	Drops        uint64 // drops added on this scrape (deltas since the previous one)

	// Sockets whose SO_RCVBUF the application set and the sum of their rcvbuf: only an engine that reads
	// sk_userlocks (AddGroup) fills them; the netlink path cannot see the lock.
	RcvbufLocked      uint64
	RcvbufLockedBytes uint64
}

// add counts a non-listening socket into g; the netns collector sums a namespace's sockets with it too. It
// returns the socket's rmem_alloc/rcvbuf, ok false when the socket has no buffers (TIME_WAIT and SYN_RECV
// mini-sockets) or a zero rcvbuf.
func (g *Stats) Add(s *sockdiag.Socket, fullRatio float64) (fill float64, ok bool) {
	g.Sockets++
	rq := uint64(s.RQueue)
	g.RecvQueue += rq
	g.RecvQueueMax = max(g.RecvQueueMax, rq)
	g.SendQueue += uint64(s.WQueue)
	if s.HasRcvWnd() && s.TCPInfo.RcvWnd == 0 && s.State == sockdiag.StateEstablished {
		g.ZeroWindow++
	}
	if !s.HasSKMemInfo {
		return 0, false
	}
	m := &s.SKMemInfo
	g.RmemAlloc += uint64(m.RmemAlloc)
	g.Rcvbuf += uint64(m.Rcvbuf)
	if m.Rcvbuf == 0 {
		return 0, false
	}
	fill = float64(m.RmemAlloc) / float64(m.Rcvbuf)
	if fill >= fullRatio {
		g.Full++
	}
	return fill, true
}

func (g *Stats) Merge(o *Stats) {
	g.Sockets += o.Sockets
	g.RecvQueue += o.RecvQueue
	g.RecvQueueMax = max(g.RecvQueueMax, o.RecvQueueMax)
	g.SendQueue += o.SendQueue
	g.RmemAlloc += o.RmemAlloc
	g.Rcvbuf += o.Rcvbuf
	g.Full += o.Full
	g.ZeroWindow += o.ZeroWindow
	g.Drops += o.Drops
	g.RcvbufLocked += o.RcvbufLocked
	g.RcvbufLockedBytes += o.RcvbufLockedBytes
}

// Labels is a group as exported: after cgroup ids and process indexes became names (two ids can share
// a name) and after folding (folded groups have other set and no attribution). Names, not indexes, key the
// drops counters, which outlive the process name table.
type Labels struct {
	Role    Role
	Other   bool // the groups folded beyond the cap: Port and attribution are empty
	Port    uint16
	Cgroup  string
	Process string
}

// PortLabel is the value of the port label: the number, or "other" for the folded groups.
func (l Labels) PortLabel() string { return PortLabel(l.Port, l.Other) }

// PortLabel is the port label of a group or listening port: the number, or "other" for the folded ones.
func PortLabel(port uint16, other bool) string {
	if other {
		return FoldedPort
	}
	return strconv.Itoa(int(port))
}

func compareLabels(a, b Labels) int {
	if c := cmp.Compare(a.Role, b.Role); c != 0 {
		return -c // servers first: there are few of them and they are the host's own services
	}
	if a.Other != b.Other {
		if a.Other {
			return 1
		}
		return -1
	}
	return cmp.Or(cmp.Compare(a.Port, b.Port), cmp.Compare(a.Cgroup, b.Cgroup), cmp.Compare(a.Process, b.Process))
}

// Group is one exported group with its sums; Drops is the group's cumulative counter.
type Group struct {
	Labels Labels
	Stats  Stats
	Drops  uint64
	gen    uint32 // the scrape that last saw the group live
}

// Listener is the fullest LISTEN socket of one port (of its IPv4 and IPv6 sockets, and of several
// SO_REUSEPORT ones). Each listener has an accept queue of its own and the kernel drops connections on a full
// one even when the port's other listeners have room, so sums would hide exactly the listener to alert on.
type Listener struct {
	Port   uint16
	Other  bool   // the fullest of the ports beyond the cap
	Length uint64 // accept queue: connections waiting for accept()
	Limit  uint64 // the backlog the application passed to listen(), capped by net.core.somaxconn
}

// fill is length / limit; a listener with backlog 0 is full as soon as one connection waits.
func (l *Listener) fill() float64 {
	if l.Limit == 0 {
		if l.Length == 0 {
			return 0
		}
		return math.Inf(1)
	}
	return float64(l.Length) / float64(l.Limit)
}

// compareFullness orders listeners fullest first: by fill, then by the longer queue, then by the smaller
// limit, so that the choice does not depend on the order of the dump.
func compareFullness(x, y *Listener) int {
	return cmp.Or(-cmp.Compare(x.fill(), y.fill()), -cmp.Compare(x.Length, y.Length), cmp.Compare(x.Limit, y.Limit))
}

// takeFullest makes l the fullest of l and o.
func (l *Listener) takeFullest(o *Listener) {
	if compareFullness(o, l) < 0 {
		l.Length, l.Limit = o.Length, o.Limit
	}
}

// Histogram counts observations per bucket (not cumulative until exported).
type Histogram struct {
	bounds []float64
	counts []uint64 // len(bounds)+1: the last one is above every bound
	sum    float64
	count  uint64
}

func newHistogram(bounds []float64) Histogram {
	return Histogram{bounds: bounds, counts: make([]uint64, len(bounds)+1)}
}

func (h *Histogram) observe(v float64) {
	i := 0
	for i < len(h.bounds) && v > h.bounds[i] {
		i++
	}
	h.counts[i]++
	h.sum += v
	h.count++
}

func (h *Histogram) reset() {
	clear(h.counts)
	h.sum, h.count = 0, 0
}

// Cumulative returns the buckets as Prometheus wants them: upper bound → observations at or below it.
func (h *Histogram) Cumulative() map[float64]uint64 {
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
// shows the same socket twice) does not count a delta twice. A socket without a slot (the tracker was full
// when it was first seen) only keeps its baseline: its drops are not counted, and once it gets a slot only
// the drops after its last observation are.
type dropEntry struct {
	last, cur uint32
	gen       uint32
	slot      bool
}

// maxTrackedDroppers bounds the per-socket drops memory (about 40 bytes an entry): only sockets that have
// dropped something are tracked, and closed ones are forgotten at the end of the scrape that no longer sees
// them. Beyond the bound, the drops of sockets not yet tracked are not counted; as many again are remembered
// without a slot, so that a slot freeing does not let in drops from before.
const maxTrackedDroppers = 1 << 16

// dropTracker turns the per-socket sk_drops gauges into deltas.
type dropTracker struct {
	gen      uint32
	byCookie map[uint64]dropEntry
	limit    int // sockets whose drops are counted; as many again are remembered without a slot
	slots    int // entries with slot set
	// lost is set when a socket with drops could not even be remembered on this scrape; prevLost is lost of
	// the last committed scrape. A socket seen for the first time after a scrape that lost some may be one of
	// those, so only its drops from now on count.
	lost, prevLost bool
}

// wrapThreshold: sk_drops is 32 bits (an atomic_t, reported as a u32 in SK_MEMINFO_DROPS). A value below the
// last one is a wrap when the last one was in the upper half (no socket drops 2^31 packets between two
// scrapes), and otherwise a socket that is not the one seen before.
const wrapThreshold = 1 << 31

// observe returns how many drops the socket added since the scrape that last saw it. A socket never seen
// contributes all its drops (unless the previous scrape lost track of sockets); a wrap at 2^32 is counted
// as the drops across it.
func (d *dropTracker) observe(cookie uint64, drops uint32) uint64 {
	if drops == 0 {
		// The common case needs no lookup. A tracked cookie that now shows 0 is a new socket: it is
		// dropped as unseen at the end of the scrape, which is correct.
		return 0
	}
	e, ok := d.byCookie[cookie]
	switch {
	case !ok:
		if len(d.byCookie) >= 2*d.limit {
			d.lost = true
			return 0
		}
		e = dropEntry{}
		if d.prevLost {
			e.last = drops
		}
	case drops < e.last && e.last < wrapThreshold:
		e.last = 0 // not the socket seen before: count all its drops
	}
	if !e.slot && d.slots < d.limit {
		e.slot = true
		d.slots++
	}
	e.cur, e.gen = drops, d.gen
	d.byCookie[cookie] = e
	if !e.slot {
		return 0
	}
	return uint64(drops - e.last) // uint32 arithmetic: right across a wrap
}

// commit ends a scrape: what was seen becomes the baseline and what was not seen has closed.
func (d *dropTracker) commit() {
	for k, e := range d.byCookie {
		if e.gen != d.gen {
			if e.slot {
				d.slots--
			}
			delete(d.byCookie, k)
			continue
		}
		e.last = e.cur
		d.byCookie[k] = e
	}
	d.prevLost, d.lost = d.lost, false
}

// MaxDropCounters bounds the groups whose cumulative drops the Aggregator remembers while they are not
// exported live (folded into port="other", or without sockets). Only groups that ever dropped are
// remembered; beyond the bound the one live longest ago is forgotten, and its counter restarts from 0 if the
// group comes back. About 100 bytes an entry. The HELP of sockbuf_socket_drops_total names this number.
const MaxDropCounters = 1 << 14

// dropTotal is a group's cumulative drops counter, the scrape that last saw the group with sockets (folded
// or not) and the scrape that last exported it live.
type dropTotal struct {
	value uint64
	live  uint32
	shown uint32
}

// Aggregator holds everything that persists between scrapes. It is not safe for concurrent use; the
// collector serializes scrapes around it.
type Aggregator struct {
	maxGroups int
	fullRatio float64
	cgroups   bool // key groups by cgroup id; otherwise every socket gets id 0

	gen       uint32
	listening [65536 / 64]uint64 // bitset of listening ports, for the role of each socket
	listeners map[uint16]int     // port → index in listen
	listen    []Listener
	states    [16]uint64 // by idiag_state

	// byPort[role][port] is 1 + the index in groups of the first group of that role and port, 0 for none;
	// the port's other groups (other cgroups or processes) follow through groupKeyStats.next. A socket's
	// group is found with two array reads and, on a host where a port has one owner, one comparison,
	// where a map keyed by the whole groupKey would hash 24 bytes per socket.
	byPort [len(RoleNames)][65536]int32
	groups []groupKeyStats

	fill   Histogram
	size   Histogram
	locked Histogram // rcvbuf of the sockets whose SO_RCVBUF was set (AddLockedSizes only)

	// overflow sums, per role, the sockets an engine could not put in a group (AddOverflow); they go to the
	// role's port="other" group.
	overflow [len(RoleNames)]Stats

	// The full ESTABLISHED sockets of this scrape, at most maxFull (0: not recorded), for a caller that
	// looks them up for more detail (their advertised window); the others are counted in fullSkipped.
	full        []FullSocket
	maxFull     int
	fullSkipped int

	tracker    dropTracker
	dropTotals map[Labels]dropTotal // by the group's own labels, and one per role for port="other"
	dropLimit  int                  // MaxDropCounters; tests lower it

	// Output of finish, reused.
	merged   map[Labels]int
	out      []Group
	outOld   []Group // counters of groups without live sockets this scrape
	outListn []Listener
	folded   int
}

type groupKeyStats struct {
	key   groupKey
	next  int32 // 1 + index of the next group of the same role and port, 0 at the end
	stats Stats
}

func New(maxGroups int, fullRatio float64, cgroups bool) *Aggregator {
	if maxGroups < 2 {
		maxGroups = 2 // one "other" group per role must always fit
	}
	fb := fillBuckets
	if !slices.Contains(fb, fullRatio) && fullRatio > 0 {
		fb = append(slices.Clone(fb), fullRatio)
		slices.Sort(fb)
	}
	return &Aggregator{
		maxGroups:  maxGroups,
		fullRatio:  fullRatio,
		cgroups:    cgroups,
		listeners:  map[uint16]int{},
		fill:       newHistogram(fb),
		size:       newHistogram(rcvbufBuckets),
		locked:     newHistogram(rcvbufBuckets),
		tracker:    dropTracker{byCookie: map[uint64]dropEntry{}, limit: maxTrackedDroppers},
		dropTotals: map[Labels]dropTotal{},
		dropLimit:  MaxDropCounters,
		merged:     map[Labels]int{},
	}
}

// begin starts a scrape.
func (a *Aggregator) Begin() {
	a.gen++
	a.tracker.gen = a.gen
	a.ResetListeners()
	a.ResetSockets()
}

// resetListeners forgets the listeners seen so far; the collector calls it again when a dump restarts.
func (a *Aggregator) ResetListeners() {
	clear(a.listening[:])
	clear(a.listeners)
	a.listen = a.listen[:0]
	a.states[sockdiag.StateListen] = 0
}

// resetSockets forgets the non-listening sockets seen so far; the collector calls it again when a dump
// restarts. Tracked drops need no reset: their deltas are recomputed from the committed baseline.
func (a *Aggregator) ResetSockets() {
	listen := a.states[sockdiag.StateListen]
	clear(a.states[:])
	a.states[sockdiag.StateListen] = listen
	for i := range a.groups {
		k := &a.groups[i].key
		a.byPort[k.role][k.port] = 0 // clears what this scrape touched: a few entries, not 256 KiB
	}
	a.groups = a.groups[:0]
	a.fill.reset()
	a.size.reset()
	a.full = a.full[:0]
	a.fullSkipped = 0
	a.locked.reset()
	clear(a.overflow[:])
}

// AddListener records a LISTEN socket. Every listener must be added before the first add.
func (a *Aggregator) AddListener(s *sockdiag.Socket) {
	a.states[sockdiag.StateListen]++
	a.AddListenerValues(s.Src.Port(), uint64(s.AcceptQueue()), uint64(s.AcceptQueueLimit()))
}

// add records a non-listening socket; process is the owner's index in the process names, 0 for none. LISTEN
// sockets go to addListener only: the collector skips them in the full dump, their own dump counted them.
func (a *Aggregator) Add(s *sockdiag.Socket, process int32) {
	a.states[s.State&15]++
	k := groupKey{process: process, role: Client, port: s.Dst.Port()}
	if lp := s.Src.Port(); a.listening[lp/64]&(1<<(lp%64)) != 0 {
		k.role, k.port = Server, lp
	}
	if a.cgroups && s.HasCgroupID {
		k.cgroupID = s.CgroupID
	}
	gi := a.lookup(k)
	g := &a.groups[gi].stats
	if fill, ok := g.Add(s, a.fullRatio); ok {
		a.fill.observe(fill)
		if fill >= a.fullRatio && s.State == sockdiag.StateEstablished && a.maxFull > 0 {
			if len(a.full) < a.maxFull {
				a.full = append(a.full, FullSocket{Family: s.Family, Src: s.Src, Dst: s.Dst, IfIndex: s.IfIndex, Cookie: s.Cookie, group: int32(gi)})
			} else {
				a.fullSkipped++
			}
		}
	}
	if !s.HasSKMemInfo {
		return
	}
	m := &s.SKMemInfo
	if s.State == sockdiag.StateEstablished {
		a.size.observe(float64(m.Rcvbuf))
	}
	if m.Drops > 0 {
		g.Drops += a.tracker.observe(s.Cookie, m.Drops)
	}
}

// lookup returns the index of k's group in a.groups, adding the group if new.
func (a *Aggregator) lookup(k groupKey) int {
	head := &a.byPort[k.role][k.port]
	for i := *head; i != 0; i = a.groups[i-1].next {
		if a.groups[i-1].key == k {
			return int(i - 1)
		}
	}
	a.groups = append(a.groups, groupKeyStats{key: k, next: *head})
	*head = int32(len(a.groups))
	return len(a.groups) - 1
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
func (a *Aggregator) Finish(cgroupName func(id uint64) string, processName func(int32) string) {
	a.tracker.commit()

	clear(a.merged)
	a.out = a.out[:0]
	for i := range a.groups {
		g := &a.groups[i]
		l := Labels{Role: g.key.role, Port: g.key.port}
		if g.key.cgroupID != 0 && cgroupName != nil {
			l.Cgroup = cgroupName(g.key.cgroupID)
		}
		if g.key.process != 0 && processName != nil {
			l.Process = processName(g.key.process)
		}
		j, ok := a.merged[l]
		if !ok {
			j = len(a.out)
			a.out = append(a.out, Group{Labels: l})
			a.merged[l] = j
		}
		a.out[j].Stats.Merge(&g.stats)
	}
	for i := range a.out {
		a.addDrops(a.out[i].Labels, a.out[i].Stats.Drops)
	}

	// Keep the groups an operator most needs to see: full sockets first, then queued bytes, then size.
	// Ties break on the labels so that the kept set does not flap between scrapes.
	slices.SortFunc(a.out, func(x, y Group) int {
		return cmp.Or(
			-cmp.Compare(x.Stats.Full, y.Stats.Full),
			-cmp.Compare(x.Stats.RecvQueue, y.Stats.RecvQueue),
			-cmp.Compare(x.Stats.Sockets, y.Stats.Sockets),
			compareLabels(x.Labels, y.Labels))
	})
	a.folded = 0
	if len(a.out) > a.maxGroups || a.overflow[Client].Sockets > 0 || a.overflow[Server].Sockets > 0 {
		a.fold()
	}

	for i := range a.out {
		g := &a.out[i]
		if g.Labels.Other {
			a.addDrops(g.Labels, g.Stats.Drops)
		}
		t, ok := a.dropTotals[g.Labels]
		if ok {
			t.shown = a.gen
			a.dropTotals[g.Labels] = t
		}
		g.Drops = t.value
	}
	for r := range a.overflow {
		if o := &a.overflow[r]; o.Sockets == 0 && o.Drops > 0 {
			// Drops of groups an engine saw without sockets: no "other" group to show them on this scrape,
			// but its counter keeps them (and is listed with the groups without sockets).
			l := Labels{Role: Role(r), Other: true}
			t := a.dropTotals[l]
			t.value += o.Drops
			a.dropTotals[l] = t
		}
	}
	a.collectOldTotals()
	a.finishListeners()
}

// addDrops adds a group's drops of this scrape to its counter and marks the group as live. Groups that never
// dropped take no memory.
func (a *Aggregator) addDrops(l Labels, delta uint64) {
	t, ok := a.dropTotals[l]
	if !ok && delta == 0 {
		return
	}
	t.value += delta
	t.live = a.gen
	a.dropTotals[l] = t
}

// fold keeps the first groups of a.out (sorted) and merges the rest, and the engine's overflow, into one
// "other" group per role, so that the output never has more than maxGroups groups.
func (a *Aggregator) fold() {
	keep := min(len(a.out), a.maxGroups)
	for ; keep > 0; keep-- {
		var need [len(RoleNames)]bool
		for r := range a.overflow {
			need[r] = a.overflow[r].Sockets > 0
		}
		for _, g := range a.out[keep:] {
			need[g.Labels.Role] = true
		}
		n := 0
		for _, b := range need {
			if b {
				n++
			}
		}
		if keep+n <= a.maxGroups {
			break
		}
	}
	rest := a.out[keep:]
	var others [len(RoleNames)]Group
	for r := range others {
		others[r].Labels = Labels{Role: Role(r), Other: true}
		if a.overflow[r].Sockets > 0 {
			others[r].Stats.Merge(&a.overflow[r])
			a.folded++ // the groups an engine could not tell apart count as one
		}
	}
	for i := range rest {
		o := &others[rest[i].Labels.Role]
		o.Stats.Merge(&rest[i].Stats)
	}
	a.folded += len(rest)
	a.out = a.out[:keep]
	for r := range others {
		if others[r].Stats.Sockets > 0 {
			a.out = append(a.out, others[r])
		}
	}
}

// collectOldTotals lists the counters of groups that had no socket this scrape, so that a group whose
// sockets all closed keeps its drops, as far as the group cap leaves room for their series (the groups that
// went away last first). Counters without room stay remembered: their series comes back with its value when
// there is room again or the group returns. Beyond dropLimit the counters of the groups live longest ago are
// forgotten; the "other" counters and those exported live are never.
func (a *Aggregator) collectOldTotals() {
	a.outOld = a.outOld[:0]
	evictable := 0
	for l, t := range a.dropTotals {
		if t.live != a.gen {
			a.outOld = append(a.outOld, Group{Labels: l, Drops: t.value, gen: t.live})
		}
		if t.shown != a.gen && !l.Other {
			evictable++
		}
	}
	// Newest first: the counters of groups that went away last are shown first.
	slices.SortFunc(a.outOld, func(x, y Group) int {
		return cmp.Or(-cmp.Compare(x.gen, y.gen), compareLabels(x.Labels, y.Labels))
	})
	if room := max(a.maxGroups-len(a.out), 0); len(a.outOld) > room {
		a.outOld = a.outOld[:room]
	}
	slices.SortFunc(a.outOld, func(x, y Group) int { return compareLabels(x.Labels, y.Labels) })
	if len(a.dropTotals) > a.dropLimit && evictable > 0 {
		a.evictTotals()
	}
}

// evictTotals forgets the counters of the groups live longest ago until at most dropLimit remain (or only
// unevictable ones). It runs only when the bound is exceeded, so its allocation is rare.
func (a *Aggregator) evictTotals() {
	var victims []Group
	for l, t := range a.dropTotals {
		if t.shown != a.gen && !l.Other {
			victims = append(victims, Group{Labels: l, gen: t.live})
		}
	}
	slices.SortFunc(victims, func(x, y Group) int {
		return cmp.Or(cmp.Compare(x.gen, y.gen), compareLabels(x.Labels, y.Labels))
	})
	for _, v := range victims[:min(len(victims), len(a.dropTotals)-a.dropLimit)] {
		delete(a.dropTotals, v.Labels)
	}
	// A forgotten counter must not be exported on this scrape either: its next value would start from 0.
	a.outOld = slices.DeleteFunc(a.outOld, func(g Group) bool {
		_, ok := a.dropTotals[g.Labels]
		return !ok
	})
}

// finishListeners caps the listening ports like the groups: the fullest ports stay, and port="other" shows
// the fullest of the rest, as a port shows the fullest of its listeners.
func (a *Aggregator) finishListeners() {
	a.outListn = append(a.outListn[:0], a.listen...)
	slices.SortFunc(a.outListn, func(x, y Listener) int {
		return cmp.Or(compareFullness(&x, &y), cmp.Compare(x.Port, y.Port))
	})
	if len(a.outListn) > a.maxGroups {
		rest := a.outListn[a.maxGroups-1:]
		other := Listener{Other: true, Length: rest[0].Length, Limit: rest[0].Limit} // sorted: the fullest
		a.outListn = append(a.outListn[:a.maxGroups-1], other)
	}
}

// Groups are the live groups of the last Finish, the folded ones last; valid until the next Begin.
func (a *Aggregator) Groups() []Group { return a.out }

// OldGroups are the groups without a live socket whose drops counters are still exported, with Drops set.
func (a *Aggregator) OldGroups() []Group { return a.outOld }

// Listeners are the listening ports of the last Finish, at most the group cap.
func (a *Aggregator) Listeners() []Listener { return a.outListn }

// Folded is how many groups the last Finish folded into port="other".
func (a *Aggregator) Folded() int { return a.folded }

// Fill is the histogram of rmem_alloc/rcvbuf over the sockets with buffers.
func (a *Aggregator) Fill() *Histogram { return &a.fill }

// Size is the histogram of rcvbuf over ESTABLISHED sockets.
func (a *Aggregator) Size() *Histogram { return &a.size }

// Locked is the histogram of rcvbuf over the sockets whose SO_RCVBUF was set (fed by AddLockedSizes).
func (a *Aggregator) Locked() *Histogram { return &a.locked }

// States counts the sockets of the last scrape by idiag_state.
func (a *Aggregator) States() *[16]uint64 { return &a.states }

// Count and Sum are the histogram's observations and their sum.
func (h *Histogram) Count() uint64 { return h.count }
func (h *Histogram) Sum() float64  { return h.sum }

// FullSocket identifies a full ESTABLISHED socket of the scrape in progress (as a dump reported it, enough
// to look it up again: sockdiag.Client.LookupContext) and its group.
type FullSocket struct {
	Family   uint8
	Src, Dst netip.AddrPort
	IfIndex  uint32
	Cookie   uint64
	group    int32
}

// RecordFull makes Add record up to max full ESTABLISHED sockets per scrape (FullSockets); 0 turns it off.
func (a *Aggregator) RecordFull(max int) { a.maxFull = max }

// FullSockets are the full ESTABLISHED sockets recorded since the last Begin, and how many more there were.
// Valid until Finish.
func (a *Aggregator) FullSockets() (recorded []FullSocket, skipped int) { return a.full, a.fullSkipped }

// AddZeroWindow counts a recorded full socket as advertising a zero window in its group. Call it before
// Finish.
func (a *Aggregator) AddZeroWindow(f *FullSocket) { a.groups[f.group].stats.ZeroWindow++ }

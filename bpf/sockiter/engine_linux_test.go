//go:build linux

package sockiter_test

import (
	"bufio"
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sockbuf/sockbuf_exporter/bpf/sockiter"
	"github.com/sockbuf/sockbuf_exporter/bpf/sockiter/internal/nlfold"
	"github.com/sockbuf/sockbuf_exporter/internal/sockpop"
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
	"github.com/sockbuf/sockbuf_exporter/sockdiag"
)

// The collector's buckets (collector/sockets_agg.go fillBuckets, rcvbufBuckets).
var (
	fillBounds   = []float64{0, 0.1, 0.25, 0.5, 0.75, 0.9, 1, 1.5}
	rcvbufBounds = []float64{65536, 131072, 262144, 425984, 1048576, 2097151, 2097152, 4194303, 4194304, 6291456, 8388608, 16777216, 33554432}
)

const fullRatio = 0.9

func openEngine(t *testing.T, drops bool) *sockiter.Engine {
	t.Helper()
	testenv.RequireRoot(t)
	e, err := sockiter.Open(sockiter.Options{FullRatio: fullRatio, FillBounds: fillBounds, RcvbufBounds: rcvbufBounds, Cgroups: true, Drops: drops})
	if errors.Is(err, sockiter.ErrUnavailable) {
		testenv.Missing(t, "%v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	})
	return e
}

// groupsByKey drops what only one engine has (RcvbufLocked*) and, without cgroups, folds cgroups away.
func groupsByKey(r *sockiter.Result, cgroups, drops bool) map[sockiter.Key]sockiter.Stats {
	out := map[sockiter.Key]sockiter.Stats{}
	for _, g := range r.Groups {
		k := g.Key
		if !cgroups {
			k.CgroupID = 0
		}
		s := out[k]
		s.Sockets += g.Sockets
		s.RecvQueue += g.RecvQueue
		s.RecvQueueMax = max(s.RecvQueueMax, g.RecvQueueMax)
		s.SendQueue += g.SendQueue
		s.RmemAlloc += g.RmemAlloc
		s.Rcvbuf += g.Rcvbuf
		s.Full += g.Full
		s.ZeroWindow += g.ZeroWindow
		if drops {
			s.Drops += g.Drops
		}
		out[k] = s
	}
	return out
}

func walkIn(t *testing.T, ns *testenv.NetNS, e *sockiter.Engine) *sockiter.Result {
	t.Helper()
	f, err := os.Open(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := e.WalkNetNS(ctx, int(f.Fd()))
	if err != nil {
		t.Fatalf("bpf walk: %v", err)
	}
	return r
}

// cloneResult copies what the comparisons need out of an Engine's reused Result.
func cloneResult(r *sockiter.Result) *sockiter.Result {
	c := *r
	c.Groups = append([]sockiter.Group(nil), r.Groups...)
	c.Listeners = append([]sockiter.Listener(nil), r.Listeners...)
	c.Fill.Counts = append([]uint64(nil), r.Fill.Counts...)
	c.Size.Counts = append([]uint64(nil), r.Size.Counts...)
	return nlfold.Sorted(&c)
}

func netlinkFolder(t *testing.T, ns *testenv.NetNS) *nlfold.Folder {
	t.Helper()
	f, err := os.Open(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	c, err := sockdiag.Dial(&sockdiag.Config{NetNS: int(f.Fd())})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &nlfold.Folder{Client: c, FullRatio: fullRatio, FillBounds: fillBounds, RcvbufBounds: rcvbufBounds, Cgroups: true, TCPInfo: true}
}

func fold(t *testing.T, f *nlfold.Folder) *sockiter.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := f.Fold(ctx)
	if err != nil {
		t.Fatalf("netlink fold: %v", err)
	}
	return cloneResult(r)
}

// TestEqualNetlink checks, on one quiescent population, that the bpf engine's groups, listeners, states and
// histograms equal the netlink path's and ss's, and that it counts the pinned sockets. A population still
// settling (a timer firing between two snapshots) is retried: the bpf engine walks before and after the
// netlink dump and ss, and the comparison counts only when both walks agree.
func TestEqualNetlink(t *testing.T) {
	testenv.RequireRoot(t)
	ssBin := testenv.RequireBinary(t, "ss", "iproute2")
	ns := testenv.NewNetNS(t)
	pop := sockpop.OpenIn(t, ns)
	nl := netlinkFolder(t, ns)

	var before, after, viaNL *sockiter.Result
	var ss []ssSocket
	for attempt := 1; ; attempt++ {
		fresh := openEngine(t, true) // a fresh engine counts every socket's sk_drops, as the netlink sum does
		before = cloneResult(walkIn(t, ns, fresh))
		viaNL = fold(t, nl)
		ss = parseSS(t, ns.MustRun(t, ssBin, "-tanmiH"))
		after = cloneResult(walkIn(t, ns, fresh))
		if cmp.Equal(groupsByKey(before, true, false), groupsByKey(after, true, false)) {
			break
		}
		if attempt == 5 {
			t.Fatalf("population not quiescent after %d attempts: %s", attempt, cmp.Diff(groupsByKey(before, true, false), groupsByKey(after, true, false)))
		}
		time.Sleep(200 * time.Millisecond)
	}

	if diff := cmp.Diff(groupsByKey(viaNL, true, false), groupsByKey(before, true, false)); diff != "" {
		t.Errorf("groups (-netlink +bpf):\n%s", diff)
	}
	// sk_drops keeps growing on the full sockets (each zero-window probe the peer sends past the window is
	// dropped), so drops compare as counters: the first walk of a fresh engine counts each socket's sk_drops,
	// the netlink dump after it sees at least that, and at most what the second walk's deltas add to it.
	nlDrops, first, second := groupsByKey(viaNL, true, true), groupsByKey(before, true, true), groupsByKey(after, true, true)
	for k, n := range nlDrops {
		if f, s := first[k].Drops, second[k].Drops; n.Drops < f || n.Drops > f+s {
			t.Errorf("group %+v: netlink sk_drops sum %d outside [first walk %d, first + second walk %d]", k, n.Drops, f, f+s)
		}
	}
	if diff := cmp.Diff(viaNL.Listeners, before.Listeners); diff != "" {
		t.Errorf("listeners (-netlink +bpf):\n%s", diff)
	}
	for st := range viaNL.States {
		if sockdiag.DefaultStates&(1<<st) != 0 && viaNL.States[st] != before.States[st] {
			t.Errorf("state %s: netlink %d, bpf %d", sockdiag.StateName(uint8(st)), viaNL.States[st], before.States[st])
		}
	}
	for _, h := range []struct {
		name     string
		nl, bpf  sockiter.Histogram
		tolerate float64
	}{
		{"fill", viaNL.Fill, before.Fill, 1e-6 * float64(viaNL.Fill.Count)}, // the kernel sums in 2^-24 steps
		{"size", viaNL.Size, before.Size, 0},
	} {
		if !cmp.Equal(h.nl.Counts, h.bpf.Counts) || h.nl.Count != h.bpf.Count || h.nl.Sum-h.bpf.Sum > h.tolerate || h.bpf.Sum-h.nl.Sum > h.tolerate {
			t.Errorf("%s histogram: netlink %v count %d sum %g, bpf %v count %d sum %g", h.name, h.nl.Counts, h.nl.Count, h.nl.Sum, h.bpf.Counts, h.bpf.Count, h.bpf.Sum)
		}
	}

	// ss, an independent reader: per (role, port), cgroups folded away (ss -tanmi does not print them).
	if diff := cmp.Diff(foldSS(ss), groupsByKey(before, false, false), cmp.Comparer(func(a, b sockiter.Stats) bool {
		return a.Sockets == b.Sockets && a.RecvQueue == b.RecvQueue && a.RmemAlloc == b.RmemAlloc && a.Rcvbuf == b.Rcvbuf && a.Full == b.Full
	})); diff != "" {
		t.Errorf("groups (-ss +bpf), sockets, Recv-Q, rmem_alloc, rcvbuf and full:\n%s", diff)
	}

	// What the population must show, so that the comparisons above compared something.
	byKey := groupsByKey(before, false, false)
	var locked uint64
	lockedBy := map[sockiter.Key]uint64{}
	for _, g := range before.Groups {
		locked += g.RcvbufLocked
		k := g.Key
		k.CgroupID = 0
		lockedBy[k] += g.RcvbufLocked
		var n uint64
		for _, c := range g.RcvbufLockedHist {
			n += c
		}
		if n != g.RcvbufLocked {
			t.Errorf("group %+v: RcvbufLockedHist sums to %d, RcvbufLocked is %d", g.Key, n, g.RcvbufLocked)
		}
	}
	if locked != uint64(pop.Pinned) {
		t.Errorf("RcvbufLocked sums to %d, the test pinned %d sockets", locked, pop.Pinned)
	}
	for k, want := range map[sockiter.Key]uint64{
		{Role: sockiter.RoleServer, Port: pop.Ports.Full}:   6,
		{Role: sockiter.RoleServer, Port: pop.Ports.Pinned}: 5,
		{Role: sockiter.RoleClient, Port: pop.Ports.Plain}:  4,
		{Role: sockiter.RoleServer, Port: pop.Ports.Plain}:  0,
	} {
		if lockedBy[k] != want {
			t.Errorf("group %+v: RcvbufLocked %d, want %d", k, lockedBy[k], want)
		}
	}
	srvFull := byKey[sockiter.Key{Role: sockiter.RoleServer, Port: pop.Ports.Full}]
	if srvFull.Sockets != 6 || srvFull.Full == 0 {
		t.Errorf("pinned full group: %+v, want 6 sockets, some full", srvFull)
	}
	if s := byKey[sockiter.Key{Role: sockiter.RoleServer, Port: pop.Ports.Plain}]; s.Sockets != 12 || s.RecvQueue != 8*30000 {
		t.Errorf("IPv4 unread group: %+v, want 12 sockets (8 unread, 4 of the pinned clients) with 240000 bytes queued", s)
	}
	if s := byKey[sockiter.Key{Role: sockiter.RoleClient, Port: pop.Ports.Plain}]; s.Sockets != 12 {
		t.Errorf("clients of the IPv4 listener: %d sockets, want 12", s.Sockets)
	}
	var bl sockiter.Listener
	for _, l := range before.Listeners {
		if l.Port == pop.Ports.Backlog {
			bl = l
		}
	}
	if bl.Length != 3 || bl.Limit != 2 {
		t.Errorf("full accept queue: %+v, want length 3 limit 2", bl)
	}
	if before.States[sockdiag.StateSynSent] != 2 {
		t.Errorf("SYN-SENT sockets: %d, want 2", before.States[sockdiag.StateSynSent])
	}
	// A groups map too small for the population: the sockets that do not fit are summed per role into
	// Overflow and counted, and nothing is lost.
	small, err := sockiter.Open(sockiter.Options{FullRatio: fullRatio, FillBounds: fillBounds, RcvbufBounds: rcvbufBounds, MaxGroups: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	sr := cloneResult(walkIn(t, ns, small))
	var total, inGroups stats
	for _, g := range before.Groups {
		total.add(g.Stats)
	}
	for _, g := range sr.Groups {
		inGroups.add(g.Stats)
	}
	overflowed := sr.Overflow[0].Sockets + sr.Overflow[1].Sockets
	if len(sr.Groups) != 2 || sr.OverflowSockets == 0 || sr.OverflowSockets != overflowed {
		t.Errorf("MaxGroups 2: %d groups, OverflowSockets %d, overflow groups hold %d sockets", len(sr.Groups), sr.OverflowSockets, overflowed)
	}
	inGroups.add(sr.Overflow[0])
	inGroups.add(sr.Overflow[1])
	if inGroups != total {
		t.Errorf("MaxGroups 2: groups and overflow sum to %+v, the full walk to %+v", inGroups, total)
	}

	t.Logf("bpf: %d groups, %d sockets visited, %d zero-window, %d drops, fill %v, full sockets of the pinned listener %d of 6",
		len(before.Groups), before.Visited, sumZeroWindow(before), sumDrops(before), before.Fill.Counts, srvFull.Full)
}

// stats sums what a walk of a quiescent population must keep whatever the grouping.
type stats struct{ sockets, recvQ, rmem, rcvbuf, full, locked uint64 }

func (s *stats) add(g sockiter.Stats) {
	s.sockets += g.Sockets
	s.recvQ += g.RecvQueue
	s.rmem += g.RmemAlloc
	s.rcvbuf += g.Rcvbuf
	s.full += g.Full
	s.locked += g.RcvbufLocked
}

func sumDrops(r *sockiter.Result) (n uint64) {
	for _, g := range r.Groups {
		n += g.Drops
	}
	return n
}

func sumZeroWindow(r *sockiter.Result) (n uint64) {
	for _, g := range r.Groups {
		n += g.ZeroWindow
	}
	return n
}

// ssSocket is one socket line of `ss -tanmiH` with its skmem.
type ssSocket struct {
	state         string
	recvQ         uint64
	local, peer   uint16
	rmem, rcvbuf  uint64
	hasSKMem      bool
	listenBacklog uint64
}

func lastPort(addr string) uint16 {
	i := strings.LastIndexByte(addr, ':')
	p, _ := strconv.ParseUint(addr[i+1:], 10, 16)
	return uint16(p)
}

// parseSS reads `ss -tanmiH`: a socket per line, its -m and -i details on indented lines after it.
func parseSS(t *testing.T, out string) []ssSocket {
	t.Helper()
	var socks []ssSocket
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if line[0] != ' ' && line[0] != '\t' {
			if len(f) < 5 {
				t.Fatalf("ss line %q", line)
			}
			rq, err1 := strconv.ParseUint(f[1], 10, 64)
			sq, err2 := strconv.ParseUint(f[2], 10, 64)
			if err1 != nil || err2 != nil {
				t.Fatalf("ss line %q", line)
			}
			socks = append(socks, ssSocket{state: f[0], recvQ: rq, listenBacklog: sq, local: lastPort(f[3]), peer: lastPort(f[4])})
			continue
		}
		if len(socks) == 0 {
			continue
		}
		s := &socks[len(socks)-1]
		for _, tok := range f {
			if !strings.HasPrefix(tok, "skmem:(") {
				continue
			}
			for _, kv := range strings.Split(strings.TrimSuffix(strings.TrimPrefix(tok, "skmem:("), ")"), ",") {
				switch {
				case strings.HasPrefix(kv, "rb"):
					s.rcvbuf, _ = strconv.ParseUint(kv[2:], 10, 64)
				case strings.HasPrefix(kv, "r"):
					s.rmem, _ = strconv.ParseUint(kv[1:], 10, 64)
				}
			}
			s.hasSKMem = true
		}
	}
	return socks
}

// foldSS groups ss's sockets of the default states as the collector does, without cgroups.
func foldSS(socks []ssSocket) map[sockiter.Key]sockiter.Stats {
	listening := map[uint16]bool{}
	for _, s := range socks {
		if s.state == "LISTEN" {
			listening[s.local] = true
		}
	}
	out := map[sockiter.Key]sockiter.Stats{}
	for _, s := range socks {
		switch s.state {
		case "LISTEN", "TIME-WAIT", "SYN-RECV":
			continue
		}
		k := sockiter.Key{Role: sockiter.RoleClient, Port: s.peer}
		if listening[s.local] {
			k = sockiter.Key{Role: sockiter.RoleServer, Port: s.local}
		}
		g := out[k]
		g.Sockets++
		g.RecvQueue += s.recvQ
		g.RmemAlloc += s.rmem
		g.Rcvbuf += s.rcvbuf
		if s.rcvbuf > 0 && float64(s.rmem)/float64(s.rcvbuf) >= fullRatio {
			g.Full++
		}
		out[k] = g
	}
	return out
}

func cmp2(want, got map[sockiter.Key]sockiter.Stats) string { return cmp.Diff(want, got) }

// TestIterateOnly: the benchmarks' floor program (Options.IterateOnly) visits the sockets the full walk
// visits, and only counts them.
func TestIterateOnly(t *testing.T) {
	testenv.RequireRoot(t)
	ns := testenv.NewNetNS(t)
	sockpop.OpenIn(t, ns)
	floor, err := sockiter.Open(sockiter.Options{IterateOnly: true})
	if errors.Is(err, sockiter.ErrUnavailable) {
		testenv.Missing(t, "%v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { floor.Close() })
	full := walkIn(t, ns, openEngine(t, false))
	bare := walkIn(t, ns, floor)
	if full.Visited == 0 || bare.Visited != full.Visited {
		t.Errorf("floor walk visited %d sockets, the full walk %d", bare.Visited, full.Visited)
	}
	if len(bare.Groups) != 0 {
		t.Errorf("floor walk made %d groups, want none", len(bare.Groups))
	}
}

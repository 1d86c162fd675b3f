package diagnose

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// source feeds the evidence generator: a seeded PRNG for the property test, the fuzzer's bytes for the fuzz
// target.
type source interface{ u64() uint64 }

type prng struct{ r *rand.Rand }

func (p prng) u64() uint64 { return p.r.Uint64() }

type byteSource struct{ b []byte }

func (s *byteSource) u64() uint64 {
	if len(s.b) == 0 {
		return 0
	}
	var buf [8]byte
	n := copy(buf[:], s.b)
	s.b = s.b[n:]
	return binary.LittleEndian.Uint64(buf[:])
}

// gen builds arbitrary evidence, leaning on the values that break arithmetic: 0, 1, the 32-bit and 64-bit
// limits, values just around the sysctls, and unknown readings.
type gen struct{ s source }

var interesting = []uint64{0, 1, 2, 3, 1000, rmemDefault, rmemMax2, coreRmemMax, 2 * coreRmemMax, 384612, 576918,
	math.MaxUint32, math.MaxUint32 + 1, math.MaxInt64, math.MaxUint64 - 1, math.MaxUint64}

func (g gen) n(k int) int { return int(g.s.u64() % uint64(k)) }

func (g gen) num() uint64 {
	v := g.s.u64()
	if v%4 == 0 {
		return v
	}
	return interesting[(v>>2)%uint64(len(interesting))]
}

func (g gen) val() Value {
	if g.n(5) == 0 {
		return Value{}
	}
	return Val(g.num())
}

func (g gen) str(pool ...string) string { return pool[g.n(len(pool))] }

func (g gen) evidence() *Evidence {
	ev := &Evidence{
		Window:  time.Duration(int64(g.num())),
		Samples: g.n(8) - 1,
		Sources: Sources{
			Netstat: g.n(2) == 0, Sockstat: g.n(2) == 0, Sysctl: g.n(2) == 0, Softnet: g.n(2) == 0, Sockets: g.n(2) == 0,
			TCPInfo: g.n(2) == 0, RcvbufLock: g.n(2) == 0, BPFDrops: g.n(2) == 0, BPFGrowth: g.n(2) == 0, BPFLimits: g.n(2) == 0,
			Cgroups: g.n(2) == 0, HostNetns: g.n(2) == 0,
		},
	}
	for _, f := range netstatFields {
		*f.get(&ev.Netstat) = g.val()
	}
	ev.Memory = Memory{TCPPagesMax: g.val(), TCPMem: [3]Value{g.val(), g.val(), g.val()}, PageSize: g.num()}
	ev.Sysctl = Sysctl{RmemMax: g.val(), RmemDefault: g.val(), TCPRmem: [3]Value{g.val(), g.val(), g.val()},
		ModerateRcvbuf: g.val(), NetdevMaxBacklog: g.val(), Somaxconn: g.val()}
	ev.Softnet = Softnet{Dropped: g.val(), TimesSqueezed: g.val()}
	roles := []string{"server", "client", "", "other"}
	ports := []string{"8080", "80", "other", "", `a"b\c`}
	cgroups := []string{"", "/a", "/system.slice/x.service", "/a\"b"}
	for range g.n(5) {
		gr := Group{Key: GroupKey{g.str(roles...), g.str(ports...), g.str(cgroups...), g.str("", "node", "python3")}, SocketDrops: g.val(),
			MemoryCgroup: g.str(append([]string{""}, cgroups...)...)}
		for range g.n(7) {
			gr.Samples = append(gr.Samples, GroupSample{
				Sockets: g.num(), Full: g.num(), RecvQ: g.num(), RmemAlloc: g.num(), Rcvbuf: g.num(),
				RcvbufMin: g.num(), RcvbufMax: g.num(), ZeroWindow: g.val(), Locked: g.val(), AtTCPRmemMax: g.val(), AtRmemMaxCap: g.val(),
			})
		}
		ev.Groups = append(ev.Groups, gr)
	}
	for range g.n(3) {
		l := Listener{Port: g.str(ports...)}
		for range g.n(6) {
			l.Samples = append(l.Samples, ListenSample{g.num(), g.num()})
		}
		ev.Listeners = append(ev.Listeners, l)
	}
	if g.n(2) == 0 {
		b := &BPF{Unattributed: map[string]uint64{"cpu_backlog": g.num()}}
		reasons := []string{"proto_mem", "tcp_ofo_queue_prune", "tcp_ofo_drop", "socket_backlog", "tcp_zerowindow", "tcp_old_data", ""}
		for range g.n(6) {
			b.Drops = append(b.Drops, ReceiveDrops{g.str(roles...), g.str(ports...), g.str(cgroups...), g.str(reasons...), g.n(2) == 0, g.num()})
		}
		for range g.n(3) {
			b.Growth = append(b.Growth, RcvbufGrowth{g.str(roles...), g.str(ports...), g.str(cgroups...), g.num()})
		}
		for range g.n(3) {
			b.LimitHits = append(b.LimitHits, MemoryLimitHits{g.str("recv", "send"), g.str(cgroups...), g.num()})
		}
		ev.BPF = b
	}
	for range g.n(3) {
		c := CgroupMemory{Cgroup: g.str(cgroups...), V1: g.n(2) == 1}
		if c.V1 {
			c.TCPLimit, c.TCPUsageMax, c.TCPMaxUsage, c.TCPMaxUsageRise, c.TCPFailcnt = g.val(), g.val(), g.val(), g.val(), g.val()
		} else {
			c.Max, c.CurrentMax, c.SockMax, c.EventsMax, c.EventsHigh, c.EventsOOM = g.val(), g.val(), g.val(), g.val(), g.val(), g.val()
		}
		ev.Cgroups = append(ev.Cgroups, c)
	}
	return ev
}

// checkReport is the property every report must have, whatever the evidence.
func checkReport(t *testing.T, ev *Evidence) {
	t.Helper()
	r := Diagnose(ev)
	js, err := json.Marshal(r)
	if err != nil {
		t.Fatalf("marshal: %v", err) // NaN or Inf in window_seconds
	}
	if r.Findings == nil || math.IsNaN(r.WindowSeconds) || r.WindowSeconds < 0 {
		t.Fatalf("findings %v, window %v", r.Findings, r.WindowSeconds)
	}
	var txt bytes.Buffer
	if err := WriteText(&txt, r); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{string(js), txt.String()} {
		for _, bad := range []string{"NaN", "Inf", "%!", "n/a n/a"} {
			if strings.Contains(s, bad) {
				t.Fatalf("output contains %q:\n%s", bad, s)
			}
		}
	}
	for i, f := range r.Findings {
		if _, ok := causeTitles[f.Cause]; !ok {
			t.Errorf("unknown cause %q", f.Cause)
		}
		if f.Confidence.rank() == 2 && f.Confidence != Low {
			t.Errorf("confidence %q", f.Confidence)
		}
		if len(f.Evidence) == 0 || len(f.Fix) == 0 || f.Verify == "" || math.IsNaN(f.Weight) {
			t.Errorf("incomplete finding %+v", f)
		}
		if i > 0 && compareFindings(r.Findings[i-1], f) > 0 {
			t.Errorf("findings %d and %d out of order", i-1, i)
		}
	}
	// Deterministic, and independent of the order of the evidence.
	if ev == nil {
		return
	}
	shuffled := *ev
	shuffled.Groups = slices.Clone(ev.Groups)
	slices.Reverse(shuffled.Groups)
	shuffled.Listeners = slices.Clone(ev.Listeners)
	slices.Reverse(shuffled.Listeners)
	shuffled.Cgroups = slices.Clone(ev.Cgroups)
	slices.Reverse(shuffled.Cgroups)
	if ev.BPF != nil {
		b := *ev.BPF
		b.Drops, b.Growth, b.LimitHits = slices.Clone(b.Drops), slices.Clone(b.Growth), slices.Clone(b.LimitHits)
		slices.Reverse(b.Drops)
		slices.Reverse(b.Growth)
		slices.Reverse(b.LimitHits)
		shuffled.BPF = &b
	}
	if diff := cmp.Diff(r, Diagnose(&shuffled)); diff != "" {
		t.Errorf("evidence reordered (-before +after):\n%s", diff)
	}
}

// TestArbitraryEvidence: no evidence (zero values, unknown readings, huge numbers, counters that went
// backwards) panics, yields NaN or Inf, breaks the JSON contract or depends on the order of the evidence.
func TestArbitraryEvidence(t *testing.T) {
	checkReport(t, &Evidence{})
	checkReport(t, nil)
	g := gen{prng{rand.New(rand.NewPCG(14, 10))}}
	n := 5000
	if testing.Short() {
		n = 2000
	}
	for range n {
		checkReport(t, g.evidence())
		if t.Failed() {
			return
		}
	}
}

func FuzzDiagnose(f *testing.F) {
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0xff}, 64))
	f.Add(bytes.Repeat([]byte{1, 0, 0, 0, 0, 0, 0, 0}, 200))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkReport(t, gen{&byteSource{data}}.evidence())
	})
}

func TestDelta(t *testing.T) {
	for _, tc := range []struct {
		name         string
		first, last  Value
		want, want32 Value
	}{
		{"rise", Val(10), Val(15), Val(5), Val(5)},
		{"flat", Val(7), Val(7), Val(0), Val(0)},
		{"went down: reset", Val(15), Val(10), Value{}, Val(math.MaxUint32 - 4)},
		{"32-bit wrap", Val(math.MaxUint32 - 1), Val(3), Value{}, Val(5)},
		{"first unknown", Value{}, Val(3), Value{}, Value{}},
		{"last unknown", Val(3), Value{}, Value{}, Value{}},
		{"beyond 32 bits", Val(1 << 40), Val(1<<40 + 1), Val(1), Value{}},
	} {
		if got := Delta(tc.first, tc.last); got != tc.want {
			t.Errorf("%s: Delta = %+v, want %+v", tc.name, got, tc.want)
		}
		if got := Delta32(tc.first, tc.last); got != tc.want32 {
			t.Errorf("%s: Delta32 = %+v, want %+v", tc.name, got, tc.want32)
		}
	}
}

func TestNetstatDelta(t *testing.T) {
	first := map[string]uint64{"PruneCalled": 100, "TCPRcvCollapsed": 5, "InSegs": 1000, "TCPRcvQDrop": 9}
	last := map[string]uint64{"PruneCalled": 160, "TCPRcvCollapsed": 5, "InSegs": 900, "TCPRcvQDrop": 9, "RcvPruned": 4}
	got := NetstatDelta(first, last)
	want := Netstat{PruneCalled: Val(60), RcvCollapsed: Val(0), RcvQDrop: Val(0)} // InSegs went down; RcvPruned missing first
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("NetstatDelta (-want +got):\n%s", diff)
	}
}

//go:build linux

package sockiter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Options configure an Engine.
type Options struct {
	// States selects the non-listening sockets to fold into groups: bit 1<<state, in the numbering of
	// sockdiag (StateEstablished = 1, ...); TCP_NEW_SYN_RECV request sockets count as SYN_RECV (3), as
	// inet_diag selects them. 0 means sockdiag.DefaultStates: every state that holds buffers. LISTEN
	// sockets are always recorded (for roles and Result.Listeners) and never folded into groups.
	States uint32
	// FullRatio: a socket is full when rmem_alloc >= FullRatio * rcvbuf. 0 means 0.9. Kept to 1e-6.
	FullRatio float64
	// FillBounds and RcvbufBounds are the upper bounds of Result.Fill, Result.Size and the per-group
	// RcvbufLockedHist; at most MaxBounds each, ascending. FillBounds must be multiples of 1e-6 (the kernel
	// compares rmem_alloc*1e6 <= bound*1e6*rcvbuf in integers, which gives what float64 division gives).
	FillBounds   []float64
	RcvbufBounds []float64
	// Cgroups keys groups by the owning cgroup's id; otherwise every group has CgroupID 0.
	Cgroups bool
	// Drops counts per group the sk_drops each socket added since the walk that last saw it, remembered
	// per socket in BPF socket storage (freed with the socket, and with the Engine).
	Drops bool
	// MaxGroups sizes the groups map; beyond it sockets go to Result.Overflow. 0 means 16384.
	MaxGroups int
	// IterateOnly, for benchmarks, walks the same sockets without looking at them: Result has only
	// Visited, and the walk costs what the kernel's iterator itself costs.
	IterateOnly bool
}

const defaultStates = 1<<1 | 1<<2 | 1<<4 | 1<<5 | 1<<7 | 1<<8 | 1<<9 | 1<<10 | 1<<11 // sockdiag.DefaultStates

// yieldEvery is how many sockets the program visits between two bytes it writes, so that each read(2) of
// the iterator returns and Walk can check its context. A power of two.
const yieldEvery = 1 << 16

// ErrUnavailable is wrapped by Open's errors when this kernel or process cannot run the iterator (no
// privileges, no BTF, no iter/tcp), as opposed to a bad Options.
var ErrUnavailable = errors.New("BPF socket iterator unavailable")

// objects are the loaded programs and maps, without bpf2go's Variables: assigning those would mmap .rodata,
// and the mapping (released only by the garbage collector) would keep that map loaded after Close.
type objects struct {
	sockiterPrograms
	sockiterMaps
}

func (o *objects) Close() error {
	return errors.Join(o.sockiterPrograms.Close(), o.sockiterMaps.Close())
}

// Engine is a loaded iter/tcp program and its maps. Walks take turns; Close unloads everything.
type Engine struct {
	mu   sync.Mutex
	objs objects
	iter *link.Iter

	fillBounds, rcvbufBounds []float64
	maxGroups                int

	dirty bool // maps may hold entries of a walk that did not finish

	res    Result
	keys   []sockiterGroupKey
	vals   []sockiterGroupVal
	lkeys  []uint16
	lvals  []sockiterListenVal
	carry  map[Key]uint64 // drops of walks that failed after counting them
	zeroT  sockiterWalkTotals
	zeroL  sockiterListeningBits
	totals sockiterWalkTotals
	buf    [1]byte
}

// Open loads the program, checking what it needs: BTF, privileges (CAP_BPF and CAP_PERFMON, or
// CAP_SYS_ADMIN) and the iter/tcp target. Its errors name what is missing and wrap ErrUnavailable (and
// os.ErrPermission when privileges are missing).
func Open(opts Options) (*Engine, error) {
	e := &Engine{maxGroups: opts.MaxGroups, carry: map[Key]uint64{}}
	if e.maxGroups == 0 {
		e.maxGroups = 16384
	}
	if e.maxGroups < 1 || e.maxGroups > 1<<20 {
		return nil, fmt.Errorf("sockiter: MaxGroups %d out of range [1, 1048576]", opts.MaxGroups)
	}
	states := opts.States
	if states == 0 {
		states = defaultStates
	}
	full := opts.FullRatio
	if full == 0 {
		full = 0.9
	}
	if !(full > 0 && full <= 2) {
		return nil, fmt.Errorf("sockiter: FullRatio %g out of range (0, 2]", full)
	}
	fillPPM, err := ppmBounds(opts.FillBounds)
	if err != nil {
		return nil, fmt.Errorf("sockiter: FillBounds: %w", err)
	}
	rcvbufB, err := intBounds(opts.RcvbufBounds)
	if err != nil {
		return nil, fmt.Errorf("sockiter: RcvbufBounds: %w", err)
	}
	e.fillBounds = append([]float64(nil), opts.FillBounds...)
	e.rcvbufBounds = append([]float64(nil), opts.RcvbufBounds...)

	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return nil, fmt.Errorf("%w: kernel BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF) is needed for CO-RE: %w", ErrUnavailable, err)
	}
	spec, err := loadSockiter()
	if err != nil {
		return nil, err
	}
	spec.Maps[sockiterMapGroups].MaxEntries = uint32(e.maxGroups)
	var fillArr, rcvArr [MaxBounds]uint64
	copy(fillArr[:], fillPPM)
	copy(rcvArr[:], rcvbufB)
	for name, v := range map[string]any{
		sockiterVarStateMask:     states,
		sockiterVarFullPpm:       uint64(math.Round(full * 1e6)),
		sockiterVarN_fill:        uint32(len(fillPPM)),
		sockiterVarFillBoundsPpm: fillArr,
		sockiterVarN_rcvbuf:      uint32(len(rcvbufB)),
		sockiterVarRcvbufBounds:  rcvArr,
		sockiterVarByCgroup:      b2u8(opts.Cgroups),
		sockiterVarTrackDrops:    b2u8(opts.Drops),
		sockiterVarYieldMask:     uint64(yieldEvery - 1),
	} {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("sockiter: setting %s: %w", name, err)
		}
	}
	if err := spec.LoadAndAssign(&e.objs, nil); err != nil {
		return nil, loadError(err)
	}
	prog := e.objs.Walk
	if opts.IterateOnly {
		prog = e.objs.WalkFloor
	}
	e.iter, err = link.AttachIter(link.IterOptions{Program: prog})
	if err != nil {
		e.objs.Close()
		return nil, fmt.Errorf("%w: attaching iter/tcp: %w", ErrUnavailable, err)
	}
	e.keys = make([]sockiterGroupKey, min(e.maxGroups, 4096))
	e.vals = make([]sockiterGroupVal, len(e.keys))
	e.lkeys = make([]uint16, 4096)
	e.lvals = make([]sockiterListenVal, len(e.lkeys))
	e.res.Fill = Histogram{Bounds: e.fillBounds, Counts: make([]uint64, len(e.fillBounds)+1)}
	e.res.Size = Histogram{Bounds: e.rcvbufBounds, Counts: make([]uint64, len(e.rcvbufBounds)+1)}
	return e, nil
}

func loadError(err error) error {
	var ve *ebpf.VerifierError
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, os.ErrPermission):
		return fmt.Errorf("%w: loading the iter/tcp program needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN): %w", ErrUnavailable, errors.Join(os.ErrPermission, err))
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ESRCH):
		return fmt.Errorf("%w: this kernel has no iter/tcp BPF iterator (bpf_iter_tcp, 5.9+): %w", ErrUnavailable, err)
	case errors.As(err, &ve):
		return fmt.Errorf("%w: the kernel's verifier rejected the iter/tcp program: %w", ErrUnavailable, err)
	}
	return fmt.Errorf("%w: loading the iter/tcp program: %w", ErrUnavailable, err)
}

func b2u8(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

func checkAscending(b []float64) error {
	if len(b) > MaxBounds {
		return fmt.Errorf("%d bounds, at most %d", len(b), MaxBounds)
	}
	for i := range b {
		if i > 0 && b[i] <= b[i-1] {
			return fmt.Errorf("bounds not ascending at %g", b[i])
		}
		if b[i] < 0 {
			return fmt.Errorf("negative bound %g", b[i])
		}
	}
	return nil
}

func ppmBounds(b []float64) ([]uint64, error) {
	if err := checkAscending(b); err != nil {
		return nil, err
	}
	out := make([]uint64, len(b))
	for i, v := range b {
		p := math.Round(v * 1e6)
		if math.Abs(p-v*1e6) > 1e-6 || p > 1e12 {
			return nil, fmt.Errorf("bound %g is not a multiple of 1e-6", v)
		}
		out[i] = uint64(p)
	}
	return out, nil
}

func intBounds(b []float64) ([]uint64, error) {
	if err := checkAscending(b); err != nil {
		return nil, err
	}
	out := make([]uint64, len(b))
	for i, v := range b {
		if v != math.Trunc(v) || v > 1<<40 {
			return nil, fmt.Errorf("bound %g is not a whole number of bytes", v)
		}
		out[i] = uint64(v)
	}
	return out, nil
}

// Close unloads the program and frees its maps (and the per-socket drops storage with them).
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var errs []error
	if e.iter != nil {
		errs = append(errs, e.iter.Close())
		e.iter = nil
	}
	errs = append(errs, e.objs.Close())
	return errors.Join(errs...)
}

// Walk folds every TCP socket of the calling OS thread's network namespace. To walk another namespace use
// WalkNetNS, or lock the goroutine to its thread and setns(2) it first. The Result is the Engine's and is
// valid until the next Walk. ctx is checked every 65,536 sockets.
func (e *Engine) Walk(ctx context.Context) (*Result, error) {
	return e.walk(ctx, -1)
}

// WalkNetNS is Walk over the network namespace that nsFD (an open /proc/PID/ns/net or /run/netns/NAME)
// refers to. It needs CAP_SYS_ADMIN for setns(2); only the creation of the iterator happens in the
// namespace, on a locked thread that is put back before it is unlocked.
func (e *Engine) WalkNetNS(ctx context.Context, nsFD int) (*Result, error) {
	return e.walk(ctx, nsFD)
}

func (e *Engine) walk(ctx context.Context, nsFD int) (*Result, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.iter == nil {
		return nil, errors.New("sockiter: walk on a closed Engine")
	}
	if e.dirty {
		if err := e.drainFailed(); err != nil {
			return nil, err
		}
	}
	r := &e.res
	r.Passes = 0
	r.Phases = Phases{}
	for pass := 1; pass <= 2; pass++ {
		e.dirty = true
		t0 := time.Now()
		if err := e.reset(pass == 1); err != nil {
			return nil, err
		}
		t1 := time.Now()
		if err := e.read(ctx, nsFD); err != nil {
			return nil, err
		}
		r.Phases.Reset += t1.Sub(t0)
		r.Phases.Iterate += time.Since(t1)
		if err := e.objs.Totals.Lookup(uint32(0), &e.totals); err != nil {
			return nil, fmt.Errorf("sockiter: reading totals: %w", err)
		}
		r.Passes = pass
		if e.totals.LateListeners == 0 {
			break
		}
		// A listener opened during the walk: the sockets before it may have the wrong role. Walk again
		// with every listener known; the groups of the first pass are dropped (their drops kept).
		if pass == 1 {
			if err := e.drainFailed(); err != nil {
				return nil, err
			}
		}
	}
	t2 := time.Now()
	if err := e.collect(); err != nil {
		return nil, err
	}
	r.Phases.Collect = time.Since(t2)
	e.dirty = false
	return r, nil
}

// reset zeroes the totals and, on a first pass, the listening bitset; the groups and listeners maps are
// empty (drained by the previous walk).
func (e *Engine) reset(first bool) error {
	if err := e.objs.Totals.Put(uint32(0), &e.zeroT); err != nil {
		return fmt.Errorf("sockiter: resetting totals: %w", err)
	}
	var zero sockiterGroupVal
	for r := uint32(0); r < 2; r++ {
		if err := e.objs.Overflow.Put(r, &zero); err != nil {
			return fmt.Errorf("sockiter: resetting overflow: %w", err)
		}
	}
	if first {
		if err := e.objs.Listening.Put(uint32(0), &e.zeroL); err != nil {
			return fmt.Errorf("sockiter: resetting listening ports: %w", err)
		}
	} else if err := e.drainListeners(false); err != nil {
		return err
	}
	return nil
}

func (e *Engine) read(ctx context.Context, nsFD int) error {
	rd, err := e.openIter(nsFD)
	if err != nil {
		return err
	}
	defer rd.Close()
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("sockiter: walk interrupted: %w", err)
		}
		_, err := rd.Read(e.buf[:])
		switch {
		case err == io.EOF:
			return nil
		case errors.Is(err, unix.EAGAIN):
			// The kernel stops a read after 1,000,000 sockets without output (kernel/bpf/bpf_iter.c
			// MAX_ITER_OBJECTS) and resumes where it stopped.
			continue
		case err != nil:
			return fmt.Errorf("sockiter: reading the iterator: %w", err)
		}
	}
}

func (e *Engine) openIter(nsFD int) (io.ReadCloser, error) {
	if nsFD < 0 {
		rd, err := e.iter.Open()
		if err != nil {
			return nil, fmt.Errorf("sockiter: opening the iterator: %w", err)
		}
		return rd, nil
	}
	// The iterator takes the network namespace of the thread that creates it (bpf_iter_init_seq_net).
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("sockiter: opening own network namespace: %w", err)
	}
	defer self.Close()
	if err := unix.Setns(nsFD, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("sockiter: entering network namespace: %w", err)
	}
	rd, openErr := e.iter.Open()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread is stuck in the other namespace: let it die with the goroutine instead of reusing it.
		if rd != nil {
			rd.Close()
		}
		return nil, fmt.Errorf("sockiter: returning to own network namespace: %w", err)
	}
	runtime.UnlockOSThread()
	if openErr != nil {
		return nil, fmt.Errorf("sockiter: opening the iterator: %w", openErr)
	}
	return rd, nil
}

// drainFailed empties the groups map after a walk that did not finish (or a first pass that is walked
// again), keeping the drops it counted: the per-socket storage already took them as seen.
func (e *Engine) drainFailed() error {
	err := e.drainGroups(func(k Key, s *sockiterGroupVal) {
		if s.Drops > 0 {
			e.carry[k] += s.Drops
		}
	})
	if err != nil {
		return err
	}
	for r := uint32(0); r < 2; r++ {
		var v sockiterGroupVal
		if err := e.objs.Overflow.Lookup(r, &v); err == nil && v.Drops > 0 {
			e.carry[Key{Role: Role(r), Port: 0, CgroupID: math.MaxUint64}] += v.Drops
		}
	}
	if err := e.drainListeners(false); err != nil {
		return err
	}
	e.dirty = false
	return nil
}

func (e *Engine) drainGroups(fn func(Key, *sockiterGroupVal)) error {
	var cursor ebpf.MapBatchCursor
	for {
		n, err := e.objs.Groups.BatchLookupAndDelete(&cursor, e.keys, e.vals, nil)
		for i := range n {
			k := &e.keys[i]
			fn(Key{CgroupID: k.CgroupId, Port: k.Port, Role: Role(k.Role)}, &e.vals[i])
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("sockiter: reading groups: %w", err)
		}
	}
}

func (e *Engine) drainListeners(keep bool) error {
	if keep {
		e.res.Listeners = e.res.Listeners[:0]
	}
	var cursor ebpf.MapBatchCursor
	for {
		n, err := e.objs.Listeners.BatchLookupAndDelete(&cursor, e.lkeys, e.lvals, nil)
		if keep {
			for i := range n {
				v := &e.lvals[i]
				e.res.Listeners = append(e.res.Listeners, Listener{Port: e.lkeys[i], Length: v.Length, Limit: v.Limit, Sockets: v.Sockets})
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("sockiter: reading listeners: %w", err)
		}
	}
}

func toStats(s *Stats, v *sockiterGroupVal) {
	*s = Stats{
		Sockets: v.Sockets, RecvQueue: v.RecvQ, RecvQueueMax: v.RecvQ_max, SendQueue: v.SendQ,
		RmemAlloc: v.RmemAlloc, Rcvbuf: v.Rcvbuf, Full: v.Full, ZeroWindow: v.ZeroWnd, Drops: v.Drops,
		RcvbufLocked: v.Locked, RcvbufLockedSum: v.LockedSum, RcvbufLockedHist: v.LockedHist,
	}
}

// collect turns the maps into e.res and empties them.
func (e *Engine) collect() error {
	r := &e.res
	r.Groups = r.Groups[:0]
	err := e.drainGroups(func(k Key, v *sockiterGroupVal) {
		r.Groups = append(r.Groups, Group{Key: k})
		toStats(&r.Groups[len(r.Groups)-1].Stats, v)
	})
	if err != nil {
		return err
	}
	for i := range r.Overflow {
		var v sockiterGroupVal
		if err := e.objs.Overflow.Lookup(uint32(i), &v); err != nil {
			return fmt.Errorf("sockiter: reading overflow: %w", err)
		}
		toStats(&r.Overflow[i], &v)
	}
	if len(e.carry) > 0 {
		e.applyCarry()
	}
	if err := e.drainListeners(true); err != nil {
		return err
	}
	t := &e.totals
	r.OverflowSockets, r.ListenOverflow = t.OverflowSockets, t.ListenOverflow
	r.States = t.States
	r.Visited, r.LateListeners, r.DropsUntracked = t.Visited, t.LateListeners, t.DropsUntracked
	copy(r.Fill.Counts, t.FillHist[:len(r.Fill.Counts)-1])
	r.Fill.Counts[len(r.Fill.Counts)-1] = sum(t.FillHist[len(r.Fill.Counts)-1:])
	r.Fill.Count = t.FillCount
	r.Fill.Sum = float64(t.FillSum) / (1 << 24)
	copy(r.Size.Counts, t.SizeHist[:len(r.Size.Counts)-1])
	r.Size.Counts[len(r.Size.Counts)-1] = sum(t.SizeHist[len(r.Size.Counts)-1:])
	r.Size.Count = t.SizeCount
	r.Size.Sum = float64(t.SizeSum)
	return nil
}

// applyCarry adds the drops of failed walks to this walk's groups (or to its role's overflow when the
// group has no socket left), so that no drop is lost with a walk that was cut short.
func (e *Engine) applyCarry() {
	r := &e.res
	for i := range r.Groups {
		g := &r.Groups[i]
		if d, ok := e.carry[g.Key]; ok {
			g.Drops += d
			delete(e.carry, g.Key)
		}
	}
	for k, d := range e.carry {
		r.Overflow[k.Role&1].Drops += d
	}
	clear(e.carry)
}

func sum(v []uint64) uint64 {
	var n uint64
	for _, x := range v {
		n += x
	}
	return n
}

// ProgramStats reports how often the kernel ran the program and for how long in all, when BPF run-time
// statistics are on (sysctl kernel.bpf_stats_enabled, or an ebpf.EnableStats handle); ok is false otherwise.
func (e *Engine) ProgramStats() (runs uint64, total time.Duration, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.objs.Walk == nil {
		return 0, 0, false
	}
	st, err := e.objs.Walk.Stats()
	if err != nil {
		return 0, 0, false
	}
	return st.RunCount, st.Runtime, st.RunCount > 0
}

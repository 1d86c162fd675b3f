//go:build linux

package sockiter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/sockbuf/sockbuf_exporter/netns"
)

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
	// The iterator takes the network namespace of the thread that creates it (bpf_iter_init_seq_net), so it
	// is created inside the namespace by netns.Do, on a locked thread that is never the thread group leader
	// (a setns there would make /proc/net files opened meanwhile by other goroutines show this namespace).
	var rd io.ReadCloser
	err := netns.Do(nsFD, func() (err error) {
		rd, err = e.iter.Open()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sockiter: opening the iterator in a network namespace: %w", err)
	}
	return rd, nil
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

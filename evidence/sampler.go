package evidence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/sockbuf/sockbuf_exporter/attrib"
	"github.com/sockbuf/sockbuf_exporter/diagnose"
	"github.com/sockbuf/sockbuf_exporter/memcg"
	"github.com/sockbuf/sockbuf_exporter/procnet"
	"github.com/sockbuf/sockbuf_exporter/sockdiag"
)

// Config configures a Sampler.
type Config struct {
	// ProcPath is the procfs mount point ("/proc" when empty).
	ProcPath string
	// FullRatio is the fill (rmem_alloc/rcvbuf) at which a socket counts as full; the sockets collector's
	// --collector.sockets.full-ratio. 0 means diagnose.DefaultFullRatio.
	FullRatio float64
	// TCPInfo checks the window of each full socket (a tcp_info lookup per full socket after the dump,
	// sockdiag.CheckWindows), for the zero windows of each group; the dump itself carries no tcp_info.
	TCPInfo bool
	// MaxGroups bounds the socket groups and the listening ports kept per reading; the rest fold into port
	// "other" (one group per role). 0 means DefaultMaxGroups.
	MaxGroups int
	// Readings is the length of the ring of readings kept; 0 means DefaultReadings. At least 2.
	Readings int
	// Dial opens the sock_diag client, in the calling thread's namespace when nil (sockdiag.Dial(nil)).
	Dial func() (*sockdiag.Client, error)
	// DumpTimeout bounds each socket dump; 0 means 30s.
	DumpTimeout time.Duration
	// Tracer, when set, adds the bpf drop tracer's counts to every reading; TracerNetNS is the inode number
	// of the namespace the readings are of (drops.OwnNetNS), for its listening ports.
	Tracer      Tracer
	TracerNetNS uint32
	// CgroupName, when set, splits the socket groups (and the bpf counts) by the sockets' cgroup, named as the
	// sockets collector names them (attrib.CgroupResolver.Name), so that findings name the cgroup too.
	CgroupName func(id uint64) string
	// Processes attributes the sockets to the processes that hold them (reading /proc/<pid>/fd links, as
	// `ss -p` does), so that groups and findings name the process.
	Processes bool
	// ProcessRescan is the least time between two full reads of every process's descriptors that sockets of
	// unknown owner ask for (a process that replaced its sockets keeps its descriptor count, so only a full
	// read finds the new ones); 0 means attrib.FullRescanMin. A short diagnose run wants about its reading
	// interval.
	ProcessRescan time.Duration
	// Memcg, with Processes, reads the memory cgroups of those processes: the socket memory charged to
	// them and their limits.
	Memcg *memcg.Reader
	// Locks, when set, counts the sockets with SO_RCVBUF set per group, with one walk of the bpf socket
	// iterator after each dump.
	Locks LockWalker
	// HostNetns says whether the readings are of the host's network namespace; nil finds out by comparing
	// the calling thread's namespace with that of pid 1 under ProcPath.
	HostNetns *bool
}

// Defaults of Config.
const (
	DefaultMaxGroups = 200
	DefaultReadings  = 64
)

// Sampler takes readings and keeps the last Config.Readings of them. Safe for concurrent use: readings are
// taken one at a time, and Evidence may be called while one is being taken.
type Sampler struct {
	cfg  Config
	fs   *procnet.FS
	host bool

	take   sync.Mutex // serializes readings; guards client and drops
	client *sockdiag.Client
	drops  dropTracker
	procs  *attrib.ProcessScanner // with Config.Processes
	// windowIDs are the full sockets of the reading in progress whose windows are checked, reused.
	windowIDs []sockdiag.Socket

	mu    sync.Mutex // guards the ring
	ring  []Reading
	next  int
	count int
}

// New returns a Sampler; nothing is read until Sample.
func New(cfg Config) *Sampler {
	if cfg.ProcPath == "" {
		cfg.ProcPath = "/proc"
	}
	if cfg.MaxGroups <= 0 {
		cfg.MaxGroups = DefaultMaxGroups
	}
	cfg.MaxGroups = max(cfg.MaxGroups, 2)
	if cfg.Readings <= 0 {
		cfg.Readings = DefaultReadings
	}
	cfg.Readings = max(cfg.Readings, 2)
	if cfg.DumpTimeout <= 0 {
		cfg.DumpTimeout = 30 * time.Second
	}
	if cfg.Dial == nil {
		cfg.Dial = func() (*sockdiag.Client, error) { return sockdiag.Dial(nil) }
	}
	s := &Sampler{cfg: cfg, fs: procnet.NewFS(cfg.ProcPath), ring: make([]Reading, cfg.Readings)}
	if cfg.HostNetns != nil {
		s.host = *cfg.HostNetns
	} else {
		s.host = isHostNetns(cfg.ProcPath)
	}
	s.drops.init()
	if cfg.Processes {
		s.procs = attrib.NewProcessScanner(cfg.ProcPath)
		if cfg.ProcessRescan > 0 {
			s.procs.RescanMin = cfg.ProcessRescan
		}
	}
	return s
}

// Close releases the sock_diag client.
func (s *Sampler) Close() error {
	s.take.Lock()
	defer s.take.Unlock()
	if s.client == nil {
		return nil
	}
	err := s.client.Close()
	s.client = nil
	return err
}

// Sample takes one reading and adds it to the ring. A source that cannot be read is recorded as missing in
// the reading (the rules then say what they could not tell); the error is only for a reading that has no
// source at all, or a cancelled context.
func (s *Sampler) Sample(ctx context.Context) error {
	s.take.Lock()
	defer s.take.Unlock()
	r := Reading{Time: time.Now()}
	fail := func(what string, err error) { r.Errors = append(r.Errors, fmt.Sprintf("%s: %v", what, err)) }

	if err := s.fs.Netstat(&r.Netstat); err != nil {
		fail("reading /proc/net/netstat and snmp", err)
	} else {
		r.NetstatOK = true
	}
	if err := s.fs.Sockstat(&r.Sockstat); err != nil {
		fail("reading /proc/net/sockstat", err)
	} else {
		r.SockstatOK = true
	}
	if err := s.fs.Sysctls(&r.Sysctls); err != nil {
		fail("reading /proc/sys/net", err)
	} else {
		r.SysctlOK = true
	}
	if err := s.fs.Softnet(func(row procnet.SoftnetRow) { r.Softnet = append(r.Softnet, row) }); err != nil {
		r.Softnet = nil
		fail("reading /proc/net/softnet_stat", err)
	} else {
		r.SoftnetOK = true
	}
	ports, err := s.dumpSockets(ctx, &r)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		fail("dumping sockets", err)
	} else if s.cfg.Tracer != nil {
		s.readTracer(&r, ports)
	}
	if !r.NetstatOK && !r.SockstatOK && !r.SysctlOK && !r.SoftnetOK && !r.Sockets {
		return fmt.Errorf("nothing could be read: %v", errors.New(joinErrors(r.Errors)))
	}
	s.mu.Lock()
	s.ring[s.next] = r
	s.next = (s.next + 1) % len(s.ring)
	s.count = min(s.count+1, len(s.ring))
	s.mu.Unlock()
	return nil
}

func joinErrors(errs []string) string {
	out := ""
	for i, e := range errs {
		if i > 0 {
			out += "; "
		}
		out += e
	}
	return out
}

// Readings returns the readings of the ring taken at or after since, oldest first.
func (s *Sampler) Readings(since time.Time) []Reading {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Reading, 0, s.count)
	for i := range s.count {
		r := s.ring[(s.next-s.count+i+len(s.ring))%len(s.ring)]
		if !r.Time.Before(since) {
			out = append(out, r)
		}
	}
	return out
}

// Evidence builds the evidence of the readings of the last window (all of the ring's when window is 0).
func (s *Sampler) Evidence(window time.Duration) *diagnose.Evidence {
	var since time.Time
	if window > 0 {
		since = time.Now().Add(-window)
	}
	ev := Build(s.Readings(since), s.host)
	if t := s.cfg.Tracer; t != nil {
		growth, limits := true, true
		for _, m := range t.Missing() {
			growth = growth && m != "tcp_rcvbuf_grow"
			limits = limits && m != "sock_exceed_buf_limit"
		}
		buildBPF(ev, s.Readings(since), t.Attributed(), growth, limits, s.cfg.CgroupName)
	}
	return ev
}

// Problems lists, once each, what the readings taken at or after since could not read.
func (s *Sampler) Problems(since time.Time) []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range s.Readings(since) {
		for _, e := range r.Errors {
			if !seen[e] {
				seen[e] = true
				out = append(out, e)
			}
		}
	}
	return out
}

// Run takes a reading every interval until ctx ends, logging a failure, or a source it could not read, when
// it differs from the reading before's.
func (s *Sampler) Run(ctx context.Context, interval time.Duration, logger *slog.Logger) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	last := ""
	for {
		start := time.Now()
		err := s.Sample(ctx)
		msg := ""
		if err != nil {
			msg = err.Error()
		} else if p := s.Problems(start); len(p) > 0 {
			msg = joinErrors(p)
		}
		if msg != last && msg != "" && ctx.Err() == nil {
			logger.Warn("diagnose: a reading is incomplete", "err", msg)
		}
		last = msg
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

package evidence

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"

	"github.com/sockbuf/sockbuf_exporter/diagnose"
	"github.com/sockbuf/sockbuf_exporter/sockdiag"
)

// The socket groups' roles and the port of the groups folded beyond the cap, as the sockets collector labels
// them.
const (
	roleServer = "server"
	roleClient = "client"
	portOther  = "other"
)

// groupKey is a group while a dump streams: role and port, before the port becomes a string.
type groupKey struct {
	server bool
	port   uint16
	cgroup uint64 // the socket's cgroup id, with Config.CgroupName; 0 otherwise
}

type groupAcc struct {
	sample diagnose.GroupSample
	drops  uint64
	// owners counts the group's sockets per holding process (name index of attrib.ProcessScanner), with
	// Config.Processes; pids has a pid of each. The process does not split groups: a socket whose owner a
	// scan has not found yet would otherwise make a group of its own. The group is named after the process
	// holding most of its sockets.
	owners map[int32]uint64
	pids   map[int32]int32
}

// owner is the name index and a pid of the process holding most of the group's sockets; 0, 0 if none.
func (g *groupAcc) owner() (name, pid int32) {
	var most uint64
	for n, c := range g.owners {
		if n != 0 && (c > most || (c == most && n < name)) {
			name, most = n, c
		}
	}
	return name, g.pids[name]
}

// dumpSockets takes the two dumps of a reading: the listeners first (their ports decide each socket's role),
// then every other socket with skmeminfo (and tcp_info when configured).
func (s *Sampler) dumpSockets(ctx context.Context, r *Reading) (listeningPorts []uint16, err error) {
	if s.client == nil {
		c, err := s.cfg.Dial()
		if err != nil {
			return nil, fmt.Errorf("opening sock_diag: %w", err)
		}
		s.client = c
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DumpTimeout)
	defer cancel()

	var listening [65536 / 64]uint64
	listeners := map[uint16]diagnose.ListenSample{}
	attempt := 0
	_, err = s.client.DumpContext(ctx, sockdiag.Request{Family: sockdiag.FamilyUnspec, States: 1 << sockdiag.StateListen},
		func(sk *sockdiag.Socket) error {
			if sk.Attempt != attempt { // the kernel restarted the dump: start over
				attempt = sk.Attempt
				clear(listening[:])
				clear(listeners)
			}
			if !sk.IsListen() {
				return nil
			}
			p := sk.Src.Port()
			listening[p/64] |= 1 << (p % 64)
			this := diagnose.ListenSample{Length: uint64(sk.AcceptQueue()), Limit: uint64(sk.AcceptQueueLimit())}
			if prev, ok := listeners[p]; !ok || fuller(this, prev) {
				listeners[p] = this
			}
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("dumping LISTEN sockets: %w", err)
	}

	// The dump asks for skmeminfo only; the windows of the full sockets, the only ones that can advertise a
	// zero window, are checked afterwards one by one (sockdiag.CheckWindows), as the sockets collector does,
	// instead of the kernel formatting tcp_info for every socket of every reading.
	checkWindows := s.cfg.TCPInfo && sockdiag.KernelHasRcvWnd()
	opts := diagnose.SampleOptions{FullRatio: s.cfg.FullRatio, Sysctl: sysctlOf(&r.Sysctls), TCPInfo: checkWindows}
	ratio := s.cfg.FullRatio
	if ratio == 0 {
		ratio = diagnose.DefaultFullRatio
	}
	var full []*groupAcc // the group of each socket in s.windowIDs
	s.windowIDs = s.windowIDs[:0]
	groups := map[groupKey]*groupAcc{}
	if s.procs != nil {
		deadline, _ := ctx.Deadline()
		if err := s.procs.Refresh(deadline); err != nil {
			r.Errors = append(r.Errors, fmt.Sprintf("process attribution: %v", err))
		}
	}
	attempt = 0
	s.drops.begin()
	sockets, dropsKnown := 0, false
	_, err = s.client.DumpContext(ctx, sockdiag.Request{Family: sockdiag.FamilyUnspec,
		States: sockdiag.DefaultStates &^ (1 << sockdiag.StateListen), Extensions: sockdiag.ExtSKMemInfo},
		func(sk *sockdiag.Socket) error {
			if sk.Attempt != attempt {
				attempt = sk.Attempt
				clear(groups)
				s.drops.restart()
				full, s.windowIDs = full[:0], s.windowIDs[:0]
			}
			if sk.IsListen() {
				return nil
			}
			k := groupKey{port: sk.Dst.Port()}
			if lp := sk.Src.Port(); listening[lp/64]&(1<<(lp%64)) != 0 {
				k = groupKey{server: true, port: lp}
			}
			if s.cfg.CgroupName != nil && sk.HasCgroupID {
				k.cgroup = sk.CgroupID
			}
			g := groups[k]
			if g == nil {
				g = &groupAcc{}
				groups[k] = g
			}
			if s.procs != nil {
				if name, pid := s.procs.OwnerPID(sk.Inode); name != 0 {
					if g.owners == nil {
						g.owners, g.pids = map[int32]uint64{}, map[int32]int32{}
					}
					g.owners[name]++
					g.pids[name] = pid
				}
			}
			rd := diagnose.SocketReading{RecvQ: uint64(sk.RecvQueue())}
			if sk.HasSKMemInfo {
				rd.RmemAlloc, rd.Rcvbuf = uint64(sk.SKMemInfo.RmemAlloc), uint64(sk.SKMemInfo.Rcvbuf)
				if sk.SKMemInfoHasDrops() {
					dropsKnown = true
					g.drops += s.drops.observe(sk.Cookie, sk.SKMemInfo.Drops)
				}
			}
			sockets++
			if checkWindows && sk.State == sockdiag.StateEstablished && rd.Rcvbuf > 0 &&
				float64(rd.RmemAlloc) >= ratio*float64(rd.Rcvbuf) && len(full) < maxWindowLookups {
				full = append(full, g)
				s.windowIDs = append(s.windowIDs, sockdiag.Socket{Family: sk.Family, Src: sk.Src, Dst: sk.Dst,
					IfIndex: sk.IfIndex, Cookie: sk.Cookie})
			}
			g.sample.Add(rd, &opts) // zero windows are counted after the lookups
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("dumping TCP sockets: %w", err)
	}
	s.drops.commit()
	r.TCPInfo = checkWindows
	if checkWindows {
		unchecked, hasRcvWnd := sockdiag.CheckWindows(ctx, s.client, s.windowIDs, func(i int) { full[i].sample.ZeroWindow.V++ })
		// A full socket beyond the bound, or closed or not reached before the deadline, makes the zero-window
		// counts a lower bound: the reading says they were not all read.
		r.TCPInfo = hasRcvWnd && unchecked == 0 && len(full) < maxWindowLookups
		if !r.TCPInfo {
			for _, g := range groups {
				g.sample.ZeroWindow = diagnose.Value{} // not known for every full socket: unknown, not a count
			}
		}
	}
	if s.cfg.Locks != nil {
		s.countLocks(ctx, r, groups)
	}
	r.Sockets, r.DropsKnown = true, dropsKnown || sockets == 0
	var processName func(int32) string
	if s.procs != nil {
		processName = s.procs.Name
	}
	r.Groups = foldGroups(groups, s.cfg.MaxGroups, s.cfg.CgroupName, processName)
	s.readMemcgs(r)
	r.Listeners = foldListeners(listeners, s.cfg.MaxGroups)
	for p := range listeners {
		listeningPorts = append(listeningPorts, p)
	}
	return listeningPorts, nil
}

// fuller orders listeners of one port: the fuller accept queue, then the longer one.
func fuller(a, b diagnose.ListenSample) bool {
	fill := func(l diagnose.ListenSample) float64 {
		if l.Limit == 0 {
			if l.Length == 0 {
				return 0
			}
			return 2
		}
		return float64(l.Length) / float64(l.Limit)
	}
	return cmp.Or(cmp.Compare(fill(a), fill(b)), cmp.Compare(a.Length, b.Length)) > 0
}

// foldGroups keeps the max groups with the most full sockets (then the most unread bytes, then the most
// sockets) and folds the rest into port "other", one group per role, so that a reading's size is bounded.
func foldGroups(groups map[groupKey]*groupAcc, maxGroups int, cgroupName func(uint64) string, processName func(int32) string) []GroupReading {
	out := make([]GroupReading, 0, len(groups))
	byKey := make(map[diagnose.GroupKey]int, len(groups))
	for k, g := range groups {
		role := roleClient
		if k.server {
			role = roleServer
		}
		key := diagnose.GroupKey{Role: role, Port: strconv.Itoa(int(k.port))}
		if k.cgroup != 0 && cgroupName != nil {
			key.Cgroup = cgroupName(k.cgroup)
		}
		// Two cgroup ids can get one name (the stable policy names a pod, not each container): one group.
		if i, ok := byKey[key]; ok {
			mergeSample(&out[i].Sample, &g.sample)
			out[i].Drops += g.drops
			if out[i].pid == 0 {
				out[i].Key.Process, out[i].pid = processOf(g, processName)
			}
			continue
		}
		byKey[key] = len(out)
		gr := GroupReading{Key: key, Sample: g.sample, Drops: g.drops}
		gr.Key.Process, gr.pid = processOf(g, processName)
		out = append(out, gr)
	}
	slices.SortFunc(out, func(x, y GroupReading) int {
		return cmp.Or(-cmp.Compare(x.Sample.Full, y.Sample.Full), -cmp.Compare(x.Sample.RecvQ, y.Sample.RecvQ),
			-cmp.Compare(x.Sample.Sockets, y.Sample.Sockets), cmp.Compare(x.Key.Role, y.Key.Role), cmp.Compare(x.Key.Port, y.Key.Port),
			cmp.Compare(x.Key.Cgroup, y.Key.Cgroup), cmp.Compare(x.Key.Process, y.Key.Process))
	})
	if len(out) <= maxGroups {
		return out
	}
	keep := maxGroups - 2 // room for both roles' "other"
	others := map[string]*GroupReading{}
	for _, g := range out[keep:] {
		o := others[g.Key.Role]
		if o == nil {
			o = &GroupReading{Key: diagnose.GroupKey{Role: g.Key.Role, Port: portOther}}
			others[g.Key.Role] = o
		}
		mergeSample(&o.Sample, &g.Sample)
		o.Drops += g.Drops
	}
	out = out[:keep]
	for _, role := range []string{roleServer, roleClient} {
		if o := others[role]; o != nil {
			out = append(out, *o)
		}
	}
	return out
}

// processOf names the process holding most of a group's sockets, and gives a pid of it.
func processOf(g *groupAcc, processName func(int32) string) (string, int32) {
	name, pid := g.owner()
	if name == 0 || processName == nil {
		return "", 0
	}
	return processName(name), pid
}

// mergeSample adds b's sums into a, as if b's sockets had been added to a.
func mergeSample(a, b *diagnose.GroupSample) {
	if b.Sockets == 0 {
		return
	}
	if a.Sockets == 0 || b.RcvbufMin < a.RcvbufMin {
		a.RcvbufMin = b.RcvbufMin
	}
	a.RcvbufMax = max(a.RcvbufMax, b.RcvbufMax)
	a.Sockets += b.Sockets
	a.Full += b.Full
	a.RecvQ += b.RecvQ
	a.RmemAlloc += b.RmemAlloc
	a.Rcvbuf += b.Rcvbuf
	for _, p := range []struct{ a, b *diagnose.Value }{
		{&a.ZeroWindow, &b.ZeroWindow}, {&a.Locked, &b.Locked}, {&a.AtTCPRmemMax, &b.AtTCPRmemMax}, {&a.AtRmemMaxCap, &b.AtRmemMaxCap},
	} {
		if p.b.Known {
			p.a.Known = true
			p.a.V += p.b.V
		}
	}
}

// foldListeners keeps the max fullest listening ports; the fullest of the rest is port "other".
func foldListeners(ls map[uint16]diagnose.ListenSample, maxPorts int) []ListenerReading {
	type pl struct {
		port uint16
		s    diagnose.ListenSample
	}
	all := make([]pl, 0, len(ls))
	for p, s := range ls {
		all = append(all, pl{p, s})
	}
	slices.SortFunc(all, func(x, y pl) int {
		if fuller(x.s, y.s) {
			return -1
		}
		if fuller(y.s, x.s) {
			return 1
		}
		return cmp.Compare(x.port, y.port)
	})
	out := make([]ListenerReading, 0, min(len(all), maxPorts))
	for i, l := range all {
		if i == maxPorts-1 && len(all) > maxPorts {
			out = append(out, ListenerReading{Port: portOther, Sample: l.s}) // sorted: the fullest of the rest
			break
		}
		out = append(out, ListenerReading{Port: strconv.Itoa(int(l.port)), Sample: l.s})
	}
	return out
}

// maxTrackedDroppers bounds the per-socket drops memory; only sockets that have dropped are tracked.
const maxTrackedDroppers = 1 << 16

// dropTracker turns per-socket sk_drops into increases between readings, keyed by the socket cookie (never
// reused while the kernel runs). A socket not seen before contributes all its drops: it was born after the
// reading before (or dropped nothing then, as only sockets with drops are tracked).
type dropTracker struct {
	last, cur map[uint64]uint32
}

func (d *dropTracker) init() { d.last, d.cur = map[uint64]uint32{}, map[uint64]uint32{} }

func (d *dropTracker) begin() { clear(d.cur) }

func (d *dropTracker) restart() { clear(d.cur) }

func (d *dropTracker) observe(cookie uint64, drops uint32) uint64 {
	if drops == 0 || (len(d.cur) >= maxTrackedDroppers) {
		return 0
	}
	d.cur[cookie] = drops
	prev, ok := d.last[cookie]
	if ok && drops >= prev {
		return uint64(drops - prev)
	}
	return uint64(drops)
}

// commit makes this dump's values the baseline; sockets not seen have closed.
func (d *dropTracker) commit() { d.last, d.cur = d.cur, d.last }

// isHostNetns compares the calling thread's network namespace with pid 1's.
func isHostNetns(procPath string) bool {
	own, err1 := os.Stat("/proc/thread-self/ns/net")
	init, err2 := os.Stat(filepath.Join(procPath, "1", "ns", "net"))
	if err1 != nil || err2 != nil {
		return false
	}
	a, ok1 := own.Sys().(*syscall.Stat_t)
	b, ok2 := init.Sys().(*syscall.Stat_t)
	return ok1 && ok2 && a.Ino == b.Ino && a.Dev == b.Dev
}

// maxWindowLookups bounds the full sockets whose window one reading checks.
const maxWindowLookups = 2048

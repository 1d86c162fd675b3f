package netns

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockbuf/sockbuf_exporter/attrib"
	"github.com/sockbuf/sockbuf_exporter/procnet"
)

const (
	// DefaultNamedDir is where `ip netns add` bind-mounts named namespaces.
	DefaultNamedDir = "/run/netns"
	// RecheckInterval bounds how long a cached pid → namespace entry is trusted.
	RecheckInterval = 5 * time.Minute
)

// Namespace is a network namespace found by a scan.
type Namespace struct {
	Pid   int // the process whose /proc/<pid>/net is read
	Ino   uint64
	Name  string // see the package comment; valid UTF-8
	Inode string // Ino, formatted for a label
	Stats procnet.Netstat
	seen  uint64
}

// pidNetns is a process's namespace as last read.
type pidNetns struct {
	ino    uint64
	reads  uint8  // consecutive reads that agreed, up to 2
	readAt uint64 // scan of the last read
	seenAt uint64 // scan that last listed the pid
}

// Discoverer finds the network namespaces of the processes under a procfs mount and caches what it read.
// It is not safe for concurrent use; the exporter runs one scrape of a collector at a time.
type Discoverer struct {
	procPath string
	namedDir string
	policy   attrib.CgroupPolicy

	// Readlink reads a link (os.Readlink); NamedInode returns the namespace inode bind-mounted at a path of
	// the named directory (StatNamedInode); Now is time.Now. Tests replace them: a fixture can hold a link to
	// "net:[1]" but not a namespace mount.
	Readlink   func(path string) (string, error)
	NamedInode func(path string, nsfs *unix.Stat_t) (uint64, bool)
	Now        func() time.Time

	scan      uint64                // scans so far
	pids      map[int]pidNetns      // cached namespace of every other process
	spaces    map[uint64]*Namespace // known namespaces by inode
	lastCheck time.Time             // last time every cached pid was read again
}

// New returns a Discoverer of the processes under procPath; namedDir is where named namespaces are
// bind-mounted (DefaultNamedDir when empty), policy names a namespace after its process's cgroup.
func New(procPath, namedDir string, policy attrib.CgroupPolicy) *Discoverer {
	if namedDir == "" {
		namedDir = DefaultNamedDir
	}
	return &Discoverer{
		procPath: procPath, namedDir: namedDir, policy: policy,
		Readlink: os.Readlink, NamedInode: StatNamedInode, Now: time.Now,
		pids: map[int]pidNetns{}, spaces: map[uint64]*Namespace{},
	}
}

// ProcPath is the procfs mount scanned.
func (d *Discoverer) ProcPath() string { return d.procPath }

// Scan returns the namespaces other than the exporter's own that have a verified process, each named.
func (d *Discoverer) Scan() ([]*Namespace, error) {
	d.scan++
	selfLink, err := d.Readlink(filepath.Join(d.procPath, "self", "ns", "net"))
	if err != nil {
		return nil, fmt.Errorf("reading the exporter's own network namespace: %w", err)
	}
	self, ok := ParseLink(selfLink)
	if !ok {
		return nil, fmt.Errorf("%s/self/ns/net points to %q, not a network namespace", d.procPath, selfLink)
	}
	if err := d.discover(); err != nil {
		return nil, err
	}
	found := d.choose(self)
	d.name(found)
	return found, nil
}

// Namespace returns a namespace of the last scan by inode, nil if it has none.
func (d *Discoverer) Namespace(ino uint64) *Namespace { return d.spaces[ino] }

// Namespaces is how many namespaces the last scan found.
func (d *Discoverer) Namespaces() int { return len(d.spaces) }

// PidNamespace returns the cached namespace of a process.
func (d *Discoverer) PidNamespace(pid int) (uint64, bool) {
	e, ok := d.pids[pid]
	return e.ino, ok
}

// Pids are the processes whose namespace is cached.
func (d *Discoverer) Pids() []int {
	out := make([]int, 0, len(d.pids))
	for pid := range d.pids {
		out = append(out, pid)
	}
	slices.Sort(out)
	return out
}

// discover brings the pid → namespace cache up to date with the processes in procPath.
func (d *Discoverer) discover() error {
	dir, err := os.Open(d.procPath)
	if err != nil {
		return fmt.Errorf("listing processes: %w", err)
	}
	names, err := dir.Readdirnames(-1)
	dir.Close()
	if err != nil {
		return fmt.Errorf("listing processes in %s: %w", d.procPath, err)
	}
	selfPid := -1
	if s, err := d.Readlink(filepath.Join(d.procPath, "self")); err == nil {
		if p, err := strconv.Atoi(s); err == nil {
			selfPid = p
		}
	}
	recheck := d.Now().Sub(d.lastCheck) >= RecheckInterval
	if recheck {
		d.lastCheck = d.Now()
	}
	others, readable := 0, 0
	var denied error
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil || pid <= 0 || pid == selfPid || name[0] < '0' || name[0] > '9' {
			continue
		}
		others++
		if e, ok := d.pids[pid]; ok && e.reads >= 2 && !recheck {
			e.seenAt = d.scan
			d.pids[pid] = e
			readable++
			continue
		}
		if _, err := d.readPid(pid); err != nil {
			if errors.Is(err, fs.ErrPermission) {
				denied = err
			}
			continue
		}
		readable++
	}
	for pid, e := range d.pids {
		if e.seenAt != d.scan {
			delete(d.pids, pid)
		}
	}
	if others > 0 && readable == 0 && denied != nil {
		return fmt.Errorf("no other process's network namespace is readable (%d processes): the netns collector needs root or CAP_SYS_PTRACE: %w", others, denied)
	}
	return nil
}

// readPid reads a process's namespace link and updates its cache entry; the entry is dropped when the
// process has gone or may not be read.
func (d *Discoverer) readPid(pid int) (uint64, error) {
	link, err := d.Readlink(filepath.Join(d.procPath, strconv.Itoa(pid), "ns", "net"))
	var ino uint64
	ok := err == nil
	if ok {
		ino, ok = ParseLink(link)
	}
	if !ok {
		delete(d.pids, pid)
		if err == nil {
			err = fmt.Errorf("pid %d: ns/net points to %q", pid, link)
		}
		return 0, err
	}
	e, known := d.pids[pid]
	reads := uint8(1)
	if known && e.ino == ino && e.reads > 0 {
		reads = min(e.reads+1, 2)
	}
	d.pids[pid] = pidNetns{ino: ino, reads: reads, readAt: d.scan, seenAt: d.scan}
	return ino, nil
}

// verify reports whether pid is still in namespace ino, reading its link unless this scan already did.
func (d *Discoverer) verify(pid int, ino uint64) bool {
	if e, ok := d.pids[pid]; ok && e.readAt == d.scan {
		return e.ino == ino
	}
	got, err := d.readPid(pid)
	return err == nil && got == ino
}

// choose returns the namespaces other than self that have a verified process, picking for each its known
// process while it stays, else the lowest pid; namespaces without one are forgotten.
//
// Nearly every scan keeps every namespace's process, so those are checked first, and lists of members are
// built only for the namespaces that are new or lost their process.
func (d *Discoverer) choose(self uint64) []*Namespace {
	found := make([]*Namespace, 0, len(d.spaces))
	for ino, ns := range d.spaces {
		if ino != self && d.verify(ns.Pid, ino) {
			ns.seen = d.scan
			found = append(found, ns)
		}
	}
	var members map[uint64][]int
	for pid, e := range d.pids {
		if e.ino == self {
			continue
		}
		if ns := d.spaces[e.ino]; ns != nil && ns.seen == d.scan {
			continue
		}
		if members == nil {
			members = map[uint64][]int{}
		}
		members[e.ino] = append(members[e.ino], pid)
	}
	for ino, pids := range members {
		slices.Sort(pids)
		chosen := -1
		for _, p := range pids {
			if d.verify(p, ino) {
				chosen = p
				break
			}
		}
		if chosen < 0 {
			continue
		}
		// A new process is named again: the namespace may be new too, with a dead one's inode.
		ns := &Namespace{Pid: chosen, Ino: ino, Inode: strconv.FormatUint(ino, 10), seen: d.scan}
		d.spaces[ino] = ns
		found = append(found, ns)
	}
	for ino, ns := range d.spaces {
		if ns.seen != d.scan {
			delete(d.spaces, ino)
		}
	}
	return found
}

// ParseLink returns the inode of a namespace link target "net:[4026531840]".
func ParseLink(s string) (uint64, bool) {
	digits, ok := strings.CutPrefix(s, "net:[")
	if !ok {
		return 0, false
	}
	digits, ok = strings.CutSuffix(digits, "]")
	if !ok {
		return 0, false
	}
	v, err := procnet.ParseUint([]byte(digits))
	return v, err == nil
}

// ReadCounters reads the namespace's netstat and snmp into ns.Stats through its process. A process that
// exited since it was verified makes it false, without error: the namespace is left out of this scrape. A
// file that cannot be parsed is an error for this namespace alone.
//
// The pid may also have been reused, or its process may have moved to another namespace, between the check
// and the reads: the files would then hold another namespace's counters, which under this namespace's label
// would look like a counter reset and make rate() spike. So the link is read again after the files, and a
// namespace whose process is no longer in it is left out of this scrape too; the pid is forgotten, so the
// next scan reads its link afresh and chooses another process for the namespace.
func (d *Discoverer) ReadCounters(ns *Namespace, buf *[]byte) (bool, error) {
	ns.Stats.Reset()
	pidDir := filepath.Join(d.procPath, strconv.Itoa(ns.Pid))
	dir := filepath.Join(pidDir, "net")
	for _, file := range procnet.NetstatFiles {
		path := filepath.Join(dir, file)
		data, err := procnet.ReadOnce(path, buf)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) || errors.Is(err, fs.ErrPermission) {
				return false, nil
			}
			return false, err
		}
		if err := procnet.ParseNetstat(file, data, &ns.Stats); err != nil {
			return false, fmt.Errorf("parsing %s: %w", path, err)
		}
	}
	link, err := d.Readlink(filepath.Join(pidDir, "ns", "net"))
	if ino, ok := ParseLink(link); err != nil || !ok || ino != ns.Ino {
		delete(d.pids, ns.Pid)
		return false, nil
	}
	return true, nil
}

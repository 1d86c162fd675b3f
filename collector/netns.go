package collector

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/sockbuf/sockbuf_exporter/bpf/sockiter"
	"github.com/sockbuf/sockbuf_exporter/procnet"
)

// The netns collector exports the receive-path counters of the host's other network namespaces (Kubernetes
// pods, containers, `ip netns add` namespaces), which the host's /proc/net/netstat does not include.
//
// Discovery: the distinct targets ("net:[INODE]") of the /proc/<pid>/ns/net links. Reading another user's
// link needs ptrace read access (root or CAP_SYS_PTRACE); processes that vanish or deny access are skipped,
// and only when no other process at all can be read does a scrape fail, with an error saying why. The
// exporter's own namespace is left out: the netstat collector exports it.
//
// Counters: /proc/<pid>/net/{netstat,snmp} show the namespace of <pid>, so one process per namespace (the
// lowest pid when the namespace was found, kept while it lives in it) is read with the netstat collector's
// parser. The files are opened and closed on every scrape: an open /proc/<pid>/net file holds a reference
// to its namespace, and keeping it would keep a deleted pod's namespace (and its veth) alive.
//
// Cost: readlink of a /proc/<pid>/ns/net costs about 2.4µs, reading the two files of a namespace about
// 100µs. A pid's namespace is cached once it was read twice on consecutive scrapes (`ip netns exec` and
// runc join the namespace right after fork, so a first read can see the parent's), every namespace's chosen
// pid is read again on every scrape, before and after its counters (see readCounters), and every cached pid
// is read again every netnsRecheckInterval (a pid reused between two scrapes, a process that moved later). A
// namespace whose processes all arrived that way shows up at most one interval late.
//
// Names (label netns), stable while the namespace lives and bounded by the number of namespaces:
//  1. the name under /run/netns bind-mounted to it (`ip netns add`), unless the name is random: containerd
//     and CRI-O pin pod namespaces as cni-<uuid> or <uuid>, which no other metric carries;
//  2. else the cgroup v2 directory of its chosen process (/proc/<pid>/cgroup, the "0::" line), and for a
//     Kubernetes pod the pod's directory (kubepods-burstable-pod<uid>.slice with the systemd driver, pod<uid>
//     with cgroupfs), which holds every container of the pod and carries the pod UID that kube-state-metrics'
//     kube_pod_info{uid} has (with "_" for "-" under systemd); otherwise the leaf, e.g. docker-<id>.scope or
//     nginx.service;
//  3. else netns-<inode>.
//
// Two namespaces can get the same name (two namespaces made by one service), and summing them would make
// the sum go backwards when one ends, so every series also has netns_inode. It adds no series (one per
// namespace either way) and marks a recreated namespace (a restarted pod sandbox) as a new series.
//
// Sockets (--collector.netns.sockets): the sums of each exported namespace's TCP sockets, see netns_sockets.go.
//
// Cap: at most MaxNamespaces namespaces are exported, those with the most PruneCalled, then the lowest inode,
// so the set is stable; the others are counted in sockbuf_netns_namespaces_skipped. They are not folded into
// an "other" series: its sum would go backwards whenever a namespace moved in or out of the top.

func init() {
	registerCollector("netns",
		"receive-path TCP counters of every other network namespace (pods, containers) from /proc/<pid>/net/netstat and snmp; needs root or CAP_SYS_PTRACE",
		false, func(cfg Config, logger *slog.Logger) (Collector, error) {
			if cfg.Netns.MaxNamespaces < 1 {
				return nil, fmt.Errorf("--collector.netns.max-namespaces must be at least 1, got %d", cfg.Netns.MaxNamespaces)
			}
			c := newNetnsCollector(cfg)
			if cfg.Netns.Sockets {
				ratio := cfg.Sockets.FullRatio
				if err := validFullRatio(ratio); err != nil {
					return nil, err
				}
				procPath := c.procPath
				c.socks = newNetnsSockets(ratio, func(pid int, ino uint64) (socketDumper, error) {
					return dialNetns(procPath, pid, ino)
				}, logger)
				err := c.socks.useEngine(cfg.Sockets, func(o sockiter.Options) (netnsWalker, error) { return sockiter.Open(o) },
					func(pid int, ino uint64) (*os.File, error) { return openNetns(procPath, pid, ino) })
				if err != nil {
					return nil, err
				}
			}
			return c, nil
		})
}

// NetnsConfig configures the netns collector.
type NetnsConfig struct {
	// MaxNamespaces caps the namespaces exported, at least 1; the rest are counted, not exported.
	MaxNamespaces int
	// NamedDir is where `ip netns add` bind-mounts named namespaces; /run/netns when empty.
	NamedDir string
	// Sockets dumps the TCP sockets of every exported namespace (netns_sockets.go); needs CAP_SYS_ADMIN.
	Sockets bool
}

// NetnsConfigWarning returns what is wrong with cfg.Netns given the enabled collectors that is not worth
// refusing to start for, or "": --collector.netns.sockets does nothing without the netns collector.
func NetnsConfigWarning(cfg Config, enabled []string) string {
	if cfg.Netns.Sockets && !slices.Contains(enabled, "netns") {
		return "--collector.netns.sockets has no effect without --collector.netns"
	}
	return ""
}

const (
	defaultNamedDir = "/run/netns"
	// netnsRecheckInterval bounds how long a cached pid → namespace entry is trusted.
	netnsRecheckInterval = 5 * time.Minute
)

var netnsLabels = []string{"netns", "netns_inode"}

// netnsField is a netstat collector field also exported per namespace.
type netnsField struct {
	counter procnet.Counter
	scale   float64 // the netstat field's: 0.001 for a counter kept in ms
	spec    MetricSpec
}

// netnsCounter exports the netstat field kernelName per namespace; why, when set, ends the HELP.
func netnsCounter(counter procnet.Counter, why string) netnsField {
	for _, f := range netstatFields {
		if f.counter != counter {
			continue
		}
		help := strings.TrimSuffix(f.spec.Help, ".") + ", in the network namespace netns."
		return netnsField{counter: counter, scale: f.scale, spec: spec("netns", MetricSpec{
			Name:   "netns_" + f.spec.Name,
			Type:   Counter,
			Unit:   f.spec.Unit,
			Labels: netnsLabels,
			Help:   help,
			Notes:  strings.TrimSpace(f.spec.Notes + " " + why),
			Source: strings.Replace(f.spec.Source, "/proc/net/", "/proc/<pid>/net/", 1) + ", <pid> a process in the namespace",
		})}
	}
	panic("netns: no netstat field " + counter.Name())
}

// netnsMemoryPressureWhy is why the memory-pressure counters are exported per namespace although pressure is
// host-wide: tcp_enter_memory_pressure and tcp_leave_memory_pressure (net/ipv4/tcp.c) count in
// sock_net(sk), the namespace of the socket that crossed tcp_mem.
const netnsMemoryPressureWhy = "TCP memory pressure (tcp_mem) is host-wide, but the kernel counts it in the namespace " +
	"of the socket that entered or left it, so on a host whose traffic is in pods or containers the host's own " +
	"counter misses most of it: add these, summed over namespaces, to the host's."

// netnsFields are the counters exported per namespace: the receive-buffer drops, listen overflows, InSegs as
// the denominator, and the memory-pressure counters the host's netstat misses. The first one ranks namespaces
// for the cap.
var netnsFields = []netnsField{
	netnsCounter(procnet.PruneCalled, ""),
	netnsCounter(procnet.RcvPruned, ""),
	netnsCounter(procnet.OfoPruned, ""),
	netnsCounter(procnet.TCPRcvCollapsed, ""),
	netnsCounter(procnet.TCPRcvQDrop, ""),
	netnsCounter(procnet.TCPBacklogDrop, ""),
	netnsCounter(procnet.ListenOverflows, ""),
	netnsCounter(procnet.InSegs, ""),
	netnsCounter(procnet.TCPMemoryPressures, netnsMemoryPressureWhy),
	netnsCounter(procnet.TCPMemoryPressuresChrono, netnsMemoryPressureWhy),
}

var (
	netnsNamespacesSpec = spec("netns", MetricSpec{
		Name: "netns_namespaces", Type: Gauge,
		Help:   "Network namespaces found other than the exporter's own: distinct /proc/<pid>/ns/net of the processes it may read.",
		Source: "readlink /proc/<pid>/ns/net",
	})
	netnsSkippedSpec = spec("netns", MetricSpec{
		Name: "netns_namespaces_skipped", Type: Gauge,
		Help:   "Network namespaces found but not exported: beyond --collector.netns.max-namespaces (those with the least PruneCalled).",
		Source: "the exporter",
	})
)

// netnsCollector exports netstat counters, and optionally socket sums, per network namespace. The exporter
// never runs two scrapes of it at once (see flight), so its caches need no lock.
type netnsCollector struct {
	procPath string
	namedDir string
	max      int

	descs          []*prometheus.Desc // one per netnsFields entry
	namespacesDesc *prometheus.Desc
	skippedDesc    *prometheus.Desc

	// readlink reads a link (os.Readlink); namedInode returns the namespace inode bind-mounted at a path of
	// namedDir (statNamedInode). Tests replace them: a fixture can hold a link to "net:[1]" but not a
	// namespace mount.
	readlink   func(path string) (string, error)
	namedInode func(path string, nsfs *unix.Stat_t) (uint64, bool)
	now        func() time.Time

	socks *netnsSockets // nil without --collector.netns.sockets

	scrape    uint64                 // scrapes so far
	pids      map[int]pidNetns       // cached namespace of every other process
	spaces    map[uint64]*netnsState // known namespaces by inode
	lastCheck time.Time              // last time every cached pid was read again
}

// pidNetns is a process's namespace as last read.
type pidNetns struct {
	ino    uint64
	reads  uint8  // consecutive reads that agreed, up to 2
	readAt uint64 // scrape of the last read
	seenAt uint64 // scrape that last listed the pid
}

// netnsState is a namespace being exported.
type netnsState struct {
	pid   int // the process whose /proc/<pid>/net is read
	ino   uint64
	name  string
	inode string // ino, formatted for the label
	seen  uint64
	stats procnet.Netstat
}

func newNetnsCollector(cfg Config) *netnsCollector {
	c := &netnsCollector{
		procPath:       cfg.ProcPath,
		namedDir:       cfg.Netns.NamedDir,
		max:            cfg.Netns.MaxNamespaces,
		namespacesDesc: netnsNamespacesSpec.Desc(),
		skippedDesc:    netnsSkippedSpec.Desc(),
		readlink:       os.Readlink,
		now:            time.Now,
		pids:           map[int]pidNetns{},
		spaces:         map[uint64]*netnsState{},
	}
	if c.namedDir == "" {
		c.namedDir = defaultNamedDir
	}
	c.namedInode = statNamedInode
	for _, f := range netnsFields {
		c.descs = append(c.descs, f.spec.Desc())
	}
	return c
}

// Update runs one scrape. Only the socket dumps can take long; the scrape's deadline bounds them.
func (c *netnsCollector) Update(ctx context.Context, ch chan<- prometheus.Metric) error {
	c.scrape++
	selfLink, err := c.readlink(filepath.Join(c.procPath, "self", "ns", "net"))
	if err != nil {
		return fmt.Errorf("reading the exporter's own network namespace: %w", err)
	}
	self, ok := parseNetnsLink(selfLink)
	if !ok {
		return fmt.Errorf("%s/self/ns/net points to %q, not a network namespace", c.procPath, selfLink)
	}
	if err := c.discover(); err != nil {
		return err
	}
	found := c.choose(self)
	c.name(found)

	buf := procnet.GetBuf()
	defer procnet.PutBuf(buf)
	read := found[:0]
	for _, ns := range found {
		ok, err := c.readCounters(ns, buf)
		if err != nil {
			return err
		}
		if ok {
			read = append(read, ns)
		}
	}
	// Ranked by PruneCalled (netnsFields[0]), then inode, so the exported set only changes when a namespace
	// overtakes another.
	prune := netnsFields[0].counter
	sort.Slice(read, func(i, j int) bool {
		a, _ := read[i].stats.Get(prune)
		b, _ := read[j].stats.Get(prune)
		if a != b {
			return a > b
		}
		return read[i].ino < read[j].ino
	})
	skipped := 0
	if len(read) > c.max {
		skipped = len(read) - c.max
		read = read[:c.max]
	}
	for _, ns := range read {
		for i, f := range netnsFields {
			// A field this kernel lacks stays absent, as in the netstat collector.
			if v, ok := ns.stats.Get(f.counter); ok {
				ch <- prometheus.MustNewConstMetric(c.descs[i], prometheus.CounterValue, float64(v)*f.scale, ns.name, ns.inode)
			}
		}
	}
	if c.socks != nil {
		c.socks.update(ctx, read, ch)
	}
	ch <- prometheus.MustNewConstMetric(c.namespacesDesc, prometheus.GaugeValue, float64(len(found)))
	ch <- prometheus.MustNewConstMetric(c.skippedDesc, prometheus.GaugeValue, float64(skipped))
	return nil
}

// discover brings the pid → namespace cache up to date with the processes in procPath.
func (c *netnsCollector) discover() error {
	dir, err := os.Open(c.procPath)
	if err != nil {
		return fmt.Errorf("listing processes: %w", err)
	}
	names, err := dir.Readdirnames(-1)
	dir.Close()
	if err != nil {
		return fmt.Errorf("listing processes in %s: %w", c.procPath, err)
	}
	selfPid := -1
	if s, err := c.readlink(filepath.Join(c.procPath, "self")); err == nil {
		if p, err := strconv.Atoi(s); err == nil {
			selfPid = p
		}
	}
	recheck := c.now().Sub(c.lastCheck) >= netnsRecheckInterval
	if recheck {
		c.lastCheck = c.now()
	}
	others, readable := 0, 0
	var denied error
	for _, name := range names {
		if !isDigits([]byte(name)) {
			continue
		}
		pid, err := strconv.Atoi(name)
		if err != nil || pid == selfPid {
			continue
		}
		others++
		if e, ok := c.pids[pid]; ok && e.reads >= 2 && !recheck {
			e.seenAt = c.scrape
			c.pids[pid] = e
			readable++
			continue
		}
		if _, err := c.readPid(pid); err != nil {
			if errors.Is(err, fs.ErrPermission) {
				denied = err
			}
			continue
		}
		readable++
	}
	for pid, e := range c.pids {
		if e.seenAt != c.scrape {
			delete(c.pids, pid)
		}
	}
	if others > 0 && readable == 0 && denied != nil {
		return fmt.Errorf("no other process's network namespace is readable (%d processes): the netns collector needs root or CAP_SYS_PTRACE: %w", others, denied)
	}
	return nil
}

// readPid reads a process's namespace link and updates its cache entry; the entry is dropped when the
// process has gone or may not be read.
func (c *netnsCollector) readPid(pid int) (uint64, error) {
	link, err := c.readlink(filepath.Join(c.procPath, strconv.Itoa(pid), "ns", "net"))
	var ino uint64
	ok := err == nil
	if ok {
		ino, ok = parseNetnsLink(link)
	}
	if !ok {
		delete(c.pids, pid)
		if err == nil {
			err = fmt.Errorf("pid %d: ns/net points to %q", pid, link)
		}
		return 0, err
	}
	e, known := c.pids[pid]
	reads := uint8(1)
	if known && e.ino == ino && e.reads > 0 {
		reads = min(e.reads+1, 2)
	}
	c.pids[pid] = pidNetns{ino: ino, reads: reads, readAt: c.scrape, seenAt: c.scrape}
	return ino, nil
}

// verify reports whether pid is still in namespace ino, reading its link unless this scrape already did.
func (c *netnsCollector) verify(pid int, ino uint64) bool {
	if e, ok := c.pids[pid]; ok && e.readAt == c.scrape {
		return e.ino == ino
	}
	got, err := c.readPid(pid)
	return err == nil && got == ino
}

// choose returns the namespaces other than self that have a verified process, picking for each its known
// process while it stays, else the lowest pid; namespaces without one are forgotten.
//
// Nearly every scrape keeps every namespace's process, so those are checked first, and lists of members are
// built only for the namespaces that are new or lost their process.
func (c *netnsCollector) choose(self uint64) []*netnsState {
	found := make([]*netnsState, 0, len(c.spaces))
	for ino, ns := range c.spaces {
		if ino != self && c.verify(ns.pid, ino) {
			ns.seen = c.scrape
			found = append(found, ns)
		}
	}
	var members map[uint64][]int
	for pid, e := range c.pids {
		if e.ino == self {
			continue
		}
		if ns := c.spaces[e.ino]; ns != nil && ns.seen == c.scrape {
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
			if c.verify(p, ino) {
				chosen = p
				break
			}
		}
		if chosen < 0 {
			continue
		}
		// A new process is named again: the namespace may be new too, with a dead one's inode.
		ns := &netnsState{pid: chosen, ino: ino, inode: strconv.FormatUint(ino, 10), seen: c.scrape}
		c.spaces[ino] = ns
		found = append(found, ns)
	}
	for ino, ns := range c.spaces {
		if ns.seen != c.scrape {
			delete(c.spaces, ino)
		}
	}
	return found
}

// name gives a name to the namespaces that have none yet.
func (c *netnsCollector) name(spaces []*netnsState) {
	var named map[uint64]string
	for _, ns := range spaces {
		if ns.name != "" {
			continue
		}
		if named == nil {
			named = c.namedNamespaces()
		}
		switch n := named[ns.ino]; {
		case n != "":
			ns.name = n
		default:
			ns.name = c.cgroupName(ns.pid)
			if ns.name == "" {
				ns.name = "netns-" + ns.inode
			}
		}
	}
}

// namedNamespaces maps namespace inodes to their non-random names in namedDir, the lowest name when a
// namespace has several.
func (c *netnsCollector) namedNamespaces() map[uint64]string {
	out := map[uint64]string{}
	entries, err := os.ReadDir(c.namedDir)
	if err != nil {
		return out // no named namespaces, or a container that does not mount the directory
	}
	// Our own namespace link, stat'ed once for all the entries: nil when it cannot be.
	var nsfs *unix.Stat_t
	statted := false
	for _, e := range entries { // sorted by name
		if randomNetnsName(e.Name()) {
			continue
		}
		if !statted {
			statted = true
			var st unix.Stat_t
			if unix.Stat(filepath.Join(c.procPath, "self", "ns", "net"), &st) == nil {
				nsfs = &st
			}
		}
		if ino, ok := c.namedInode(filepath.Join(c.namedDir, e.Name()), nsfs); ok {
			if _, dup := out[ino]; !dup {
				out[ino] = e.Name()
			}
		}
	}
	return out
}

// statNamedInode returns the inode of the namespace bind-mounted at path. A file left behind without its
// mount lies on tmpfs: the device must be nsfs's, that of nsfs, the stat of our own namespace link (nil when
// that could not be stat'ed: then nothing counts as a namespace).
func statNamedInode(path string, nsfs *unix.Stat_t) (uint64, bool) {
	var st unix.Stat_t
	if nsfs == nil || unix.Stat(path, &st) != nil {
		return 0, false
	}
	return st.Ino, st.Dev == nsfs.Dev
}

// cgroupName reads the cgroup v2 path of pid and names the namespace after it (see the file comment).
func (c *netnsCollector) cgroupName(pid int) string {
	data, err := os.ReadFile(filepath.Join(c.procPath, strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return cgroupPathName(p)
		}
	}
	return ""
}

// cgroupPathName is the Kubernetes pod directory of a cgroup path if it has one, else its last element; ""
// for the root, which says nothing about the namespace.
func cgroupPathName(p string) string {
	var elems []string
	for _, e := range strings.Split(p, "/") {
		if e != "" && e != "." && e != ".." {
			elems = append(elems, e)
		}
	}
	for i, e := range elems {
		// systemd driver: kubepods-pod<uid>.slice, kubepods-burstable-pod<uid>.slice, kubepods-besteffort-pod<uid>.slice.
		if strings.HasPrefix(e, "kubepods-") && strings.Contains(e, "-pod") && strings.HasSuffix(e, ".slice") {
			return e
		}
		// cgroupfs driver: /kubepods/pod<uid>, /kubepods/burstable/pod<uid>.
		if strings.HasPrefix(e, "pod") && slices.Contains(elems[:i], "kubepods") {
			return e
		}
	}
	if len(elems) == 0 {
		return ""
	}
	return elems[len(elems)-1]
}

// randomNetnsName reports whether a /run/netns name is one a container runtime made up: cni-<uuid>
// (containerd) or a bare UUID (CRI-O).
func randomNetnsName(n string) bool {
	if strings.HasPrefix(n, "cni-") {
		return true
	}
	if len(n) != 36 {
		return false
	}
	for i, r := range n {
		switch i {
		case 8, 13, 18, 23:
			if r != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
				return false
			}
		}
	}
	return true
}

// parseNetnsLink returns the inode of a namespace link target "net:[4026531840]".
func parseNetnsLink(s string) (uint64, bool) {
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

// readCounters reads the namespace's netstat and snmp through its process. A process that exited since it
// was verified makes it false, without error: the namespace is left out of this scrape.
//
// The pid may also have been reused, or its process may have moved to another namespace, between the check
// and the reads: the files would then hold another namespace's counters, which under this label would look
// like a counter reset and make rate() spike. So the link is read again after the files, and a namespace
// whose process is no longer in it is left out of this scrape too; the pid is forgotten, so the next scrape
// reads its link afresh and chooses another process for the namespace.
func (c *netnsCollector) readCounters(ns *netnsState, buf *[]byte) (bool, error) {
	ns.stats.Reset()
	pidDir := filepath.Join(c.procPath, strconv.Itoa(ns.pid))
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
		if err := procnet.ParseNetstat(file, data, &ns.stats); err != nil {
			return false, fmt.Errorf("parsing %s: %w", path, err)
		}
	}
	link, err := c.readlink(filepath.Join(pidDir, "ns", "net"))
	if ino, ok := parseNetnsLink(link); err != nil || !ok || ino != ns.ino {
		delete(c.pids, ns.pid)
		return false, nil
	}
	return true, nil
}

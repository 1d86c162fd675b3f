// Package memcg reads the socket memory that the kernel charges to memory cgroups: where a process's memory
// cgroup is, and that cgroup's socket memory, its limit and whether allocations hit it.
//
// Every TCP socket is charged to the memory cgroup of the task that created (or accepted) it, sk->sk_memcg.
// On cgroup v2 socket buffers count against the cgroup's memory.max like any memory (memory.stat "sock"); when
// a charge fails the kernel drops what arrives and treats the cgroup's sockets as under memory pressure. On
// cgroup v1 socket memory is accounted only once memory.kmem.tcp.limit_in_bytes is written, against that
// limit (mem_cgroup_charge_skmem); the kernel then drops received data beyond it (TcpExt TCPRcvQDrop) instead
// of growing the buffers. memory.kmem.tcp.failcnt does not count those refusals on recent kernels, so a hit
// shows as usage, and its high-water mark max_usage_in_bytes, at or above the limit.
//
// No Prometheus import: the evidence sampler of diagnose and the collectors share it.
package memcg

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/prometheus/procfs"
)

// Version says which hierarchy a memory cgroup belongs to.
type Version int

const (
	V1 Version = 1 // the v1 "memory" controller's hierarchy
	V2 Version = 2 // the unified hierarchy, with the memory controller enabled
)

// Value is a reading that may be absent: a file the kernel does not have, or a limit set to "max".
type Value struct {
	V  uint64
	OK bool
}

// Stats is one memory cgroup's socket memory at one moment. Fields of the other version are absent.
type Stats struct {
	Version Version

	// v1: memory.kmem.tcp.*, known only when TCP accounting is on (a limit was written).
	TCPAccounted bool
	TCPUsage     Value // usage_in_bytes: socket buffers charged now
	TCPLimit     Value // limit_in_bytes
	TCPMaxUsage  Value // max_usage_in_bytes: the high-water mark since the cgroup was made (or reset)
	TCPFailcnt   Value // failcnt

	// v2: memory.current, memory.max, memory.stat "sock" and memory.events.
	Current    Value
	Max        Value // absent when "max" (no limit)
	Sock       Value // socket buffers charged to the cgroup
	EventsMax  Value // allocations that hit memory.max
	EventsHigh Value // allocations over memory.high
	EventsOOM  Value
}

// Reader finds memory cgroups and reads them.
type Reader struct {
	fs procfs.FS
	// root is where the memory cgroups are mounted; mountRoot the hierarchy path mounted there ("/" unless
	// the mount is of a sub-tree, as in some containers).
	root, mountRoot string
	version         Version
}

// ErrNoMemoryCgroup says that neither a v1 memory hierarchy nor a unified one with the memory controller is
// mounted where procPath's self/mountinfo can see it.
var ErrNoMemoryCgroup = errors.New("no memory cgroup hierarchy mounted")

// NewReader finds the memory controller's hierarchy from <procPath>/self/mountinfo: the v1 "memory" one when
// mounted (it owns the controller then), else the unified one if its cgroup.controllers lists memory.
func NewReader(procPath string) (*Reader, error) {
	fs, err := procfs.NewFS(procPath)
	if err != nil {
		return nil, err
	}
	mounts, err := fs.GetMounts()
	if err != nil {
		return nil, fmt.Errorf("reading mountinfo: %w", err)
	}
	var v2 *procfs.MountInfo
	for _, m := range mounts {
		switch m.FSType {
		case "cgroup":
			if _, ok := m.SuperOptions["memory"]; ok {
				return &Reader{fs: fs, root: m.MountPoint, mountRoot: m.Root, version: V1}, nil
			}
		case "cgroup2":
			if v2 == nil {
				v2 = m
			}
		}
	}
	if v2 != nil {
		b, err := readSmall(filepath.Join(v2.MountPoint, "cgroup.controllers"))
		if err == nil && hasWord(b, "memory") {
			return &Reader{fs: fs, root: v2.MountPoint, mountRoot: v2.Root, version: V2}, nil
		}
	}
	return nil, ErrNoMemoryCgroup
}

// Open is NewReader with a cgroup root given (--collector.sockets.cgroup-root, e.g. /host/sys/fs/cgroup in
// a Kubernetes pod, whose own /sys/fs/cgroup shows only its cgroup namespace): the unified hierarchy mounted
// there when it has the memory controller, else a v1 memory hierarchy at <root>/memory; failing both, or
// with root empty, the mounts that procPath's self/mountinfo lists.
func Open(procPath, root string) (*Reader, error) {
	if root != "" {
		fs, err := procfs.NewFS(procPath)
		if err != nil {
			return nil, err
		}
		if b, err := readSmall(filepath.Join(root, "cgroup.controllers")); err == nil {
			if hasWord(b, "memory") {
				return &Reader{fs: fs, root: root, mountRoot: "/", version: V2}, nil
			}
		}
		v1 := filepath.Join(root, "memory")
		if _, err := os.Stat(filepath.Join(v1, "memory.limit_in_bytes")); err == nil {
			return &Reader{fs: fs, root: v1, mountRoot: "/", version: V1}, nil
		}
	}
	return NewReader(procPath)
}

// Version is the hierarchy the reader reads.
func (r *Reader) Version() Version { return r.version }

// CgroupOf returns the memory cgroup path (within its hierarchy, "/..." as /proc/<pid>/cgroup says) of a
// process.
func (r *Reader) CgroupOf(pid int) (string, error) {
	p, err := r.fs.Proc(pid)
	if err != nil {
		return "", err
	}
	cgs, err := p.Cgroups()
	if err != nil {
		return "", err
	}
	for _, c := range cgs {
		if r.version == V2 && c.HierarchyID == 0 && len(c.Controllers) == 0 {
			return c.Path, nil
		}
		if r.version == V1 && c.HierarchyID != 0 {
			for _, ctl := range c.Controllers {
				if ctl == "memory" {
					return c.Path, nil
				}
			}
		}
	}
	return "", fmt.Errorf("process %d has no memory cgroup in /proc/%d/cgroup", pid, pid)
}

// dir maps a cgroup path to its directory under the mount, refusing one that is outside the mounted
// sub-tree or that climbs out of it.
func (r *Reader) dir(path string) (string, error) {
	if !strings.HasPrefix(path, "/") {
		return "", fmt.Errorf("cgroup path %q is not absolute", path)
	}
	clean := filepath.Clean(path)
	if clean != path && clean+"/" != path {
		return "", fmt.Errorf("cgroup path %q is not clean", path)
	}
	rel := clean
	if r.mountRoot != "" && r.mountRoot != "/" {
		if clean != r.mountRoot && !strings.HasPrefix(clean, r.mountRoot+"/") {
			return "", fmt.Errorf("cgroup %q is outside the mounted %q", path, r.mountRoot)
		}
		rel = strings.TrimPrefix(clean, r.mountRoot)
	}
	return filepath.Join(r.root, rel), nil
}

// Read reads a memory cgroup's socket memory. A file the kernel lacks leaves its fields absent; a file
// that exists but does not parse is an error.
func (r *Reader) Read(path string) (Stats, error) {
	d, err := r.dir(path)
	if err != nil {
		return Stats{}, err
	}
	if fi, err := os.Stat(d); err != nil {
		return Stats{}, err
	} else if !fi.IsDir() {
		return Stats{}, fmt.Errorf("%s is not a directory", d)
	}
	if r.version == V1 {
		return readV1(d)
	}
	return readV2(d)
}

// readV1 reads memory.kmem.tcp.*. TCP accounting is on once a limit was written: the kernel leaves the
// usage at 0 and the limit at its maximum (PAGE_COUNTER_MAX pages) until then.
func readV1(d string) (Stats, error) {
	s := Stats{Version: V1}
	for _, f := range []struct {
		name string
		v    *Value
	}{
		{"memory.kmem.tcp.usage_in_bytes", &s.TCPUsage},
		{"memory.kmem.tcp.limit_in_bytes", &s.TCPLimit},
		{"memory.kmem.tcp.max_usage_in_bytes", &s.TCPMaxUsage},
		{"memory.kmem.tcp.failcnt", &s.TCPFailcnt},
	} {
		v, err := readUint(filepath.Join(d, f.name))
		if err != nil {
			return s, err
		}
		*f.v = v
	}
	// An unset limit reads as PAGE_COUNTER_MAX pages (9223372036854771712 with 4 KiB pages).
	s.TCPAccounted = s.TCPLimit.OK && s.TCPLimit.V < 1<<62
	if !s.TCPAccounted {
		s.TCPLimit = Value{}
	}
	return s, nil
}

func readV2(d string) (Stats, error) {
	s := Stats{Version: V2}
	var err error
	if s.Current, err = readUint(filepath.Join(d, "memory.current")); err != nil {
		return s, err
	}
	if s.Max, err = readUint(filepath.Join(d, "memory.max")); err != nil {
		return s, err
	}
	kv := func(file string, fields map[string]*Value) error {
		b, err := readSmall(filepath.Join(d, file))
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		for line := range bytes.SplitSeq(b, []byte("\n")) {
			k, v, ok := bytes.Cut(line, []byte(" "))
			if !ok {
				continue
			}
			if dst := fields[string(k)]; dst != nil {
				n, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
				if err != nil {
					return fmt.Errorf("%s: %s: %w", file, k, err)
				}
				*dst = Value{V: n, OK: true}
			}
		}
		return nil
	}
	if err := kv("memory.stat", map[string]*Value{"sock": &s.Sock}); err != nil {
		return s, err
	}
	if err := kv("memory.events", map[string]*Value{"max": &s.EventsMax, "high": &s.EventsHigh, "oom": &s.EventsOOM}); err != nil {
		return s, err
	}
	return s, nil
}

// readUint reads a one-number cgroup file; "max" and a missing file are absent values.
func readUint(path string) (Value, error) {
	b, err := readSmall(path)
	if errors.Is(err, os.ErrNotExist) {
		return Value{}, nil
	}
	if err != nil {
		return Value{}, err
	}
	t := string(bytes.TrimSpace(b))
	if t == "max" {
		return Value{}, nil
	}
	n, err := strconv.ParseUint(t, 10, 64)
	if err != nil {
		return Value{}, fmt.Errorf("%s: %w", path, err)
	}
	return Value{V: n, OK: true}, nil
}

// maxFile bounds what is read of one cgroup file (memory.stat is a few KiB).
const maxFile = 64 << 10

// readSmall reads a cgroup file, at most maxFile bytes, refusing anything but a regular file (a FIFO
// would block the reader).
func readSmall(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFile {
		return nil, fmt.Errorf("%s is longer than %d bytes", path, maxFile)
	}
	return b, nil
}

func hasWord(b []byte, w string) bool {
	for f := range bytes.FieldsSeq(b) {
		if string(f) == w {
			return true
		}
	}
	return false
}

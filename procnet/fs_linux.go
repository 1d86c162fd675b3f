package procnet

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
)

// FS reads from one procfs mount (/proc, or /host/proc in a container), keeping its files open between
// reads. Safe for concurrent use.
type FS struct {
	root     string
	netstat  []*File // by NetstatFiles
	sockstat *File
	softnet  *File
	sysctls  [NumSysctls]*File
	// maxCPUs bounds the softnet_stat rows: the CPUs the sysfs next to root says are possible.
	maxCPUs func() int
}

// NewFS returns an FS for the procfs mounted at root; nothing is opened until the first read. Its files
// are closed once the FS is garbage, so every method keeps fs alive until its reads are done: otherwise the
// descriptor could be closed, and its number reused by another file, in the middle of a read.
func NewFS(root string) *FS {
	fs := &FS{
		root:     root,
		sockstat: NewFile(filepath.Join(root, "net", "sockstat")),
		softnet:  NewFile(filepath.Join(root, "net", "softnet_stat")),
		maxCPUs:  sync.OnceValue(func() int { return possibleCPUs(root) }),
	}
	for _, name := range NetstatFiles {
		fs.netstat = append(fs.netstat, NewFile(filepath.Join(root, "net", name)))
	}
	for s := range NumSysctls {
		fs.sysctls[s] = NewFile(filepath.Join(root, "sys", s.Path()))
	}
	files := append([]*File{fs.sockstat, fs.softnet}, fs.netstat...)
	files = append(files, fs.sysctls[:]...)
	runtime.AddCleanup(fs, func(files []*File) {
		for _, f := range files {
			f.Close()
		}
	}, files)
	return fs
}

// Root is the procfs mount point.
func (fs *FS) Root() string { return fs.root }

// Netstat reads /proc/net/netstat and /proc/net/snmp into n.
func (fs *FS) Netstat(n *Netstat) error {
	defer runtime.KeepAlive(fs) // its cleanup closes the descriptors being read
	n.Reset()
	buf := GetBuf()
	defer PutBuf(buf)
	for i, f := range fs.netstat {
		data, err := f.Read(buf)
		if err != nil {
			return err
		}
		if err := ParseNetstat(NetstatFiles[i], data, n); err != nil {
			return fmt.Errorf("parsing %s: %w", f.Path, err)
		}
	}
	return nil
}

// Sockstat reads /proc/net/sockstat into s.
func (fs *FS) Sockstat(s *Sockstat) error {
	defer runtime.KeepAlive(fs) // its cleanup closes the descriptors being read
	buf := GetBuf()
	defer PutBuf(buf)
	data, err := fs.sockstat.Read(buf)
	if err != nil {
		return err
	}
	if err := ParseSockstat(data, s); err != nil {
		return fmt.Errorf("parsing %s: %w", fs.sockstat.Path, err)
	}
	return nil
}

// Sysctl reads one setting. A missing file is not an error but a value that is not OK: several of these
// files exist only in the host's network namespace.
func (fs *FS) Sysctl(s Sysctl) (SysctlValue, error) {
	defer runtime.KeepAlive(fs) // its cleanup closes the descriptors being read
	buf := GetBuf()
	defer PutBuf(buf)
	f := fs.sysctls[s]
	data, err := f.Read(buf)
	if errors.Is(err, os.ErrNotExist) {
		return SysctlValue{}, nil
	}
	if err != nil {
		return SysctlValue{}, err
	}
	v, err := ParseSysctl(s, data)
	if err != nil {
		return SysctlValue{}, fmt.Errorf("parsing %s: %w", f.Path, err)
	}
	return v, nil
}

// Sysctls reads every setting into out. It fails when none exists: that is a wrong procfs path, not a
// namespace that lacks a few.
func (fs *FS) Sysctls(out *Sysctls) error {
	seen := false
	for s := range NumSysctls {
		v, err := fs.Sysctl(s)
		if err != nil {
			return err
		}
		out[s] = v
		seen = seen || v.OK
	}
	if !seen {
		return fmt.Errorf("none of the sysctl files exist under %s: %w", filepath.Join(fs.root, "sys"), os.ErrNotExist)
	}
	return nil
}

// Softnet reads /proc/net/softnet_stat and calls fn for each CPU's row.
func (fs *FS) Softnet(fn func(SoftnetRow)) error {
	defer runtime.KeepAlive(fs) // its cleanup closes the descriptors being read
	buf := GetBuf()
	defer PutBuf(buf)
	data, err := fs.softnet.Read(buf)
	if err != nil {
		return err
	}
	if err := ParseSoftnet(data, fs.maxCPUs(), fn); err != nil {
		return fmt.Errorf("parsing %s: %w", fs.softnet.Path, err)
	}
	return nil
}

// possibleCPUs reads the possible CPUs from the sysfs mounted next to the procfs at root: /sys for /proc,
// /host/sys for /host/proc as container deployments mount them. Without it (a tree of fixtures, a container
// without /host/sys) the bound is MaxCPUs; a fixture tree may carry a sys/ of its own.
func possibleCPUs(root string) int {
	n, _ := PossibleCPUs(filepath.Join(filepath.Dir(filepath.Clean(root)), "sys", "devices", "system", "cpu", "possible"))
	return n
}

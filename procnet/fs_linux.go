package procnet

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
)

// FS reads from one procfs mount (/proc, or /host/proc in a container), keeping its files open between
// reads. Safe for concurrent use.
type FS struct {
	root     string
	netstat  []*File // by NetstatFiles
	sockstat *File
	softnet  *File
	sysctls  [NumSysctls]*File
}

// NewFS returns an FS for the procfs mounted at root; nothing is opened until the first read. Its files
// are closed once the FS is garbage.
func NewFS(root string) *FS {
	fs := &FS{
		root:     root,
		sockstat: NewFile(filepath.Join(root, "net", "sockstat")),
		softnet:  NewFile(filepath.Join(root, "net", "softnet_stat")),
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
	buf := GetBuf()
	defer PutBuf(buf)
	data, err := fs.softnet.Read(buf)
	if err != nil {
		return err
	}
	if err := ParseSoftnet(data, fn); err != nil {
		return fmt.Errorf("parsing %s: %w", fs.softnet.Path, err)
	}
	return nil
}

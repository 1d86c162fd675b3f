package netns

import (
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sockbuf/sockbuf_exporter/attrib"
)

// name gives a name to the namespaces that have none yet.
func (d *Discoverer) name(spaces []*Namespace) {
	var named map[uint64]string
	for _, ns := range spaces {
		if ns.Name != "" {
			continue
		}
		if named == nil {
			named = d.namedNamespaces()
		}
		if n := named[ns.Ino]; n != "" {
			ns.Name = n
			continue
		}
		ns.Name = attrib.PidCgroupName(d.procPath, ns.Pid, d.policy)
		if ns.Name == "" || ns.Name == "/" { // the root cgroup says nothing about the namespace
			ns.Name = "netns-" + ns.Inode
		}
	}
}

// namedNamespaces maps namespace inodes to their non-random names in namedDir, the lowest name when a
// namespace has several.
func (d *Discoverer) namedNamespaces() map[uint64]string {
	out := map[uint64]string{}
	entries, err := os.ReadDir(d.namedDir)
	if err != nil {
		return out // no named namespaces, or a container that does not mount the directory
	}
	// Our own namespace link, stat'ed once for all the entries: nil when it cannot be.
	var nsfs *unix.Stat_t
	statted := false
	for _, e := range entries { // sorted by name
		if randomName(e.Name()) {
			continue
		}
		if !statted {
			statted = true
			var st unix.Stat_t
			if unix.Stat(filepath.Join(d.procPath, "self", "ns", "net"), &st) == nil {
				nsfs = &st
			}
		}
		if ino, ok := d.NamedInode(filepath.Join(d.namedDir, e.Name()), nsfs); ok {
			if _, dup := out[ino]; !dup {
				out[ino] = attrib.Label(e.Name())
			}
		}
	}
	return out
}

// StatNamedInode returns the inode of the namespace bind-mounted at path. A file left behind without its
// mount lies on tmpfs: the device must be nsfs's, that of nsfs, the stat of our own namespace link (nil when
// that could not be stat'ed: then nothing counts as a namespace).
func StatNamedInode(path string, nsfs *unix.Stat_t) (uint64, bool) {
	var st unix.Stat_t
	if nsfs == nil || unix.Stat(path, &st) != nil {
		return 0, false
	}
	return st.Ino, st.Dev == nsfs.Dev
}

// randomName reports whether a /run/netns name is one a container runtime made up: cni-<uuid>
// (containerd) or a bare UUID (CRI-O).
func randomName(n string) bool {
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

package attrib

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The kernel puts the id of each socket's cgroup v2 in its inet_diag reply (INET_DIAG_CGROUP_ID, kernel
// 5.7+). On cgroup v2 that id is the kernfs node id of the cgroup's directory, which on 64-bit kernels is
// also the directory's inode number (kernfs_id_ino in include/linux/kernfs.h), so a walk of the hierarchy
// that stats every directory maps ids to paths without any other interface.
//
// A socket whose cgroup is not found (no cgroup v2 mounted, a cgroup outside the exporter's cgroup
// namespace, a cgroup created and removed between two walks) gets the empty label.

const (
	// CgroupRefreshInterval rate-limits the walks that an unknown cgroup id triggers: a socket of an unknown
	// cgroup costs at most one walk per interval, however many scrapes see it.
	CgroupRefreshInterval = 10 * time.Second
	// CgroupNegativeTTL is how long an id that a walk did not find is answered "" without walking again: a
	// cgroup outside the exporter's cgroup namespace is never found, and must not cost a walk every interval.
	// A walk made for another id clears it sooner if it finds it.
	CgroupNegativeTTL = 5 * time.Minute
	// maxCgroupMisses bounds the negative cache; beyond it the cache starts over.
	maxCgroupMisses = 4096
)

// FindCgroup2Mount returns where the cgroup v2 hierarchy is mounted according to <procPath>/self/mountinfo,
// or "" if it is not mounted: /sys/fs/cgroup on unified hosts, /sys/fs/cgroup/unified on hybrid ones.
func FindCgroup2Mount(procPath string) (string, error) {
	f, err := os.Open(filepath.Join(procPath, "self", "mountinfo"))
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		// 41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
		// (proc(5): the optional fields end at "-", then the filesystem type.)
		line := sc.Text()
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		fsType, _, _ := strings.Cut(post, " ")
		if fsType != "cgroup2" {
			continue
		}
		fields := strings.Fields(pre)
		if len(fields) < 5 {
			continue
		}
		return unescapeMountPath(fields[4]), nil
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("reading mountinfo: %w", err)
	}
	return "", nil
}

// unescapeMountPath undoes the octal escapes (\040 for a space) that mountinfo uses in paths.
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, ok := octal3(s[i+1 : i+4]); ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func octal3(s string) (byte, bool) {
	var v int
	for i := 0; i < 3; i++ {
		if s[i] < '0' || s[i] > '7' {
			return 0, false
		}
		v = v*8 + int(s[i]-'0')
	}
	if v > 255 {
		return 0, false
	}
	return byte(v), true
}

// CgroupResolver maps cgroup ids to labels (CgroupName) from a cached walk of the cgroup v2 hierarchy. Safe
// for concurrent use.
type CgroupResolver struct {
	root   string // mount point of cgroup v2
	policy CgroupPolicy
	now    func() time.Time

	mu       sync.Mutex
	names    map[uint64]string
	misses   map[uint64]time.Time // ids a walk did not find, and when
	lastWalk time.Time            // zero before the first walk
	walks    uint64
}

// NewCgroupResolver returns a resolver of the hierarchy mounted at root; it walks on the first lookup.
func NewCgroupResolver(root string, policy CgroupPolicy) *CgroupResolver {
	return &CgroupResolver{root: filepath.Clean(root), policy: policy, now: time.Now, names: map[uint64]string{}, misses: map[uint64]time.Time{}}
}

// Name returns the label of a cgroup id, or "" for an id it cannot find. An unknown id makes it walk the
// hierarchy again, unless the last walk is younger than CgroupRefreshInterval or a walk missed this id less
// than CgroupNegativeTTL ago.
func (r *CgroupResolver) Name(id uint64) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n, ok := r.names[id]; ok {
		return n
	}
	now := r.now()
	if t, ok := r.misses[id]; ok && now.Sub(t) < CgroupNegativeTTL {
		return ""
	}
	if !r.lastWalk.IsZero() && now.Sub(r.lastWalk) < CgroupRefreshInterval {
		return ""
	}
	if err := r.walkLocked(); err != nil {
		return ""
	}
	n, ok := r.names[id]
	if !ok {
		if len(r.misses) >= maxCgroupMisses {
			clear(r.misses)
		}
		r.misses[id] = now
	}
	return n
}

// Walks is how many times the hierarchy was walked.
func (r *CgroupResolver) Walks() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.walks
}

// Walk rebuilds the id → label map from the hierarchy.
func (r *CgroupResolver) Walk() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.walkLocked()
}

func (r *CgroupResolver) walkLocked() error {
	r.lastWalk = r.now()
	r.walks++
	names := make(map[uint64]string, len(r.names))
	err := filepath.WalkDir(r.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			// A cgroup removed during the walk is not an error; the root missing is.
			if path != r.root && errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("no inode number for %s", path)
		}
		names[st.Ino] = CgroupName(strings.TrimPrefix(path, r.root), r.policy)
		return nil
	})
	if err != nil {
		return fmt.Errorf("walking cgroup hierarchy %s: %w", r.root, err)
	}
	r.names = names
	for id := range r.misses {
		if _, ok := names[id]; ok {
			delete(r.misses, id)
		}
	}
	return nil
}

// PidCgroupName is the label of the cgroup v2 of process pid, from the "0::" line of <procPath>/<pid>/cgroup;
// "" when it cannot be read or has no cgroup v2 line.
func PidCgroupName(procPath string, pid int, p CgroupPolicy) string {
	data, err := os.ReadFile(filepath.Join(procPath, fmt.Sprint(pid), "cgroup"))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		if path, ok := strings.CutPrefix(line, "0::"); ok {
			return CgroupName(path, p)
		}
	}
	return ""
}

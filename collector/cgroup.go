package collector

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
// The label is the last element of the path (nginx.service, docker-<id>.scope, cri-containerd-<id>.scope,
// the pod's container id under the cgroupfs driver): what `systemctl status` and container tools show, and
// short. Two cgroups with the same last element (a unit of the same name in system.slice and in a user's
// slice) share a label and their groups are summed. The root cgroup is "/". A socket whose cgroup is not
// found (no cgroup v2 mounted, a cgroup outside the exporter's cgroup namespace, a cgroup created and
// removed between two walks) gets the empty label.

// cgroupRefreshInterval rate-limits the walks that an unknown cgroup id triggers: a socket of an unknown
// cgroup costs at most one walk per interval, however many scrapes see it.
const cgroupRefreshInterval = 10 * time.Second

// findCgroup2Mount returns where the cgroup v2 hierarchy is mounted according to <procPath>/self/mountinfo,
// or "" if it is not mounted: /sys/fs/cgroup on unified hosts, /sys/fs/cgroup/unified on hybrid ones.
func findCgroup2Mount(procPath string) (string, error) {
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

// cgroupResolver maps cgroup ids to labels from a cached walk of the cgroup v2 hierarchy.
type cgroupResolver struct {
	root     string // mount point of cgroup v2
	interval time.Duration
	now      func() time.Time

	mu       sync.Mutex
	names    map[uint64]string
	lastWalk time.Time // zero before the first walk
}

func newCgroupResolver(root string) *cgroupResolver {
	return &cgroupResolver{root: root, interval: cgroupRefreshInterval, now: time.Now, names: map[uint64]string{}}
}

// name returns the label of a cgroup id, walking the hierarchy again when the id is unknown and the last
// walk is older than the interval. It returns "" for an id it cannot find.
func (r *cgroupResolver) name(id uint64) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n, ok := r.names[id]; ok {
		return n
	}
	if !r.lastWalk.IsZero() && r.now().Sub(r.lastWalk) < r.interval {
		return ""
	}
	if err := r.walkLocked(); err != nil {
		return ""
	}
	return r.names[id]
}

// walk rebuilds the id → label map from the hierarchy.
func (r *cgroupResolver) walk() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.walkLocked()
}

func (r *cgroupResolver) walkLocked() error {
	r.lastWalk = r.now()
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
		label := "/"
		if path != r.root {
			label = d.Name()
		}
		names[st.Ino] = label
		return nil
	})
	if err != nil {
		return fmt.Errorf("walking cgroup hierarchy %s: %w", r.root, err)
	}
	r.names = names
	return nil
}

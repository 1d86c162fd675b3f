package memcg

import (
	"context"
	"os"
	"path"
	"path/filepath"
)

// Bounds of a walk, whatever the caller asks: a hierarchy deeper than MaxDepth below the mount is not
// descended further (systemd and Kubernetes nest five or six levels).
const MaxDepth = 32

// WalkResult says what a walk saw besides the cgroups it yielded.
type WalkResult struct {
	// Visited is the number of cgroup directories read, the mount's own included.
	Visited int
	// Truncated is true when the walk stopped at its bound on visited cgroups (or at MaxDepth) with
	// cgroups left unseen.
	Truncated bool
	// Unreadable counts cgroups skipped because a directory or one of their files could not be read or
	// parsed (a cgroup removed during the walk, permission denied, a malformed file).
	Unreadable int
}

// Walk visits the memory hierarchy breadth first, in name order, reading at most maxVisit cgroups, and calls
// fn with each one that can hit a socket memory limit:
//   - v1: TCP accounting is on (a memory.kmem.tcp.limit_in_bytes was written). Without it the kernel does not
//     account that cgroup's sockets at all (mem_cgroup_sk_alloc skips them), so there is nothing to show.
//   - v2: memory.max is set. Socket memory then counts against it; a cgroup without a limit of its own is
//     limited by an ancestor, whose memory.stat "sock" includes it (v2 statistics are recursive).
//
// Symbolic links are not followed (cgroupfs has none; a tree that does is not a cgroup hierarchy). A
// directory or cgroup that cannot be read is skipped and counted. An error from fn stops the walk and is
// returned; so does ctx ending.
func (r *Reader) Walk(ctx context.Context, maxVisit int, fn func(path string, s Stats) error) (WalkResult, error) {
	var res WalkResult
	type entry struct {
		rel   string // below the mount, "" for the mount itself
		depth int
	}
	queue := []entry{{}}
	for len(queue) > 0 {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if res.Visited >= maxVisit {
			res.Truncated = true
			return res, nil
		}
		e := queue[0]
		queue = queue[1:]
		res.Visited++
		dir := filepath.Join(r.root, e.rel)
		ents, err := os.ReadDir(dir)
		if err != nil {
			res.Unreadable++
			continue
		}
		for _, de := range ents {
			// Type() is from the directory entry (lstat semantics): a symbolic link is not a directory here.
			if !de.IsDir() {
				continue
			}
			if e.depth+1 > MaxDepth {
				res.Truncated = true
				break
			}
			queue = append(queue, entry{rel: path.Join(e.rel, de.Name()), depth: e.depth + 1})
		}
		// ReadDir sorts by name; children are queued in that order, so the walk is deterministic.
		if ok, err := r.limited(dir); err != nil {
			res.Unreadable++
			continue
		} else if !ok {
			continue
		}
		p := r.hierarchyPath(e.rel)
		s, err := r.Read(p)
		if err != nil {
			res.Unreadable++
			continue
		}
		if !worthExporting(s) {
			continue
		}
		if err := fn(p, s); err != nil {
			return res, err
		}
	}
	return res, nil
}

// limited reads only the file that tells whether the cgroup in dir has a limit (Walk's filter), so that the
// many cgroups without one cost one read, not Read's four.
func (r *Reader) limited(dir string) (bool, error) {
	if r.version == V1 {
		v, err := readUint(filepath.Join(dir, "memory.kmem.tcp.limit_in_bytes"))
		return v.OK && v.V < 1<<62, err // as in readV1
	}
	v, err := readUint(filepath.Join(dir, "memory.max"))
	return v.OK, err
}

// worthExporting is Walk's filter; see there.
func worthExporting(s Stats) bool {
	if s.Version == V1 {
		return s.TCPAccounted
	}
	return s.Max.OK
}

// hierarchyPath is the path /proc/<pid>/cgroup would give for a directory rel below the mount.
func (r *Reader) hierarchyPath(rel string) string {
	root := r.mountRoot
	if root == "" {
		root = "/"
	}
	return path.Join(root, rel)
}

package attrib

import (
	"fmt"
	"slices"
	"strings"
)

// CgroupPolicy is how a cgroup v2 path becomes a label, the same for the sockets and netns collectors.
type CgroupPolicy uint8

const (
	// CgroupStable names a cgroup after what outlives a restart of what runs in it: the Kubernetes pod's
	// directory (kubepods-burstable-pod<uid>.slice with the systemd driver, pod<uid> with cgroupfs), else the
	// deepest systemd service unit on the path (foo.service for /system.slice/foo.service/worker), else the
	// leaf. A pod's containers share its label; a restarted container keeps it.
	CgroupStable CgroupPolicy = iota
	// CgroupLeaf names a cgroup after its own directory: cri-containerd-<id>.scope, docker-<id>.scope,
	// nginx.service. A restarted container gets a new label, and with it new series (docs/cardinality.md).
	CgroupLeaf
)

// ParseCgroupPolicy reads --collector.sockets.cgroup-label: "stable" or "leaf"; empty is stable.
func ParseCgroupPolicy(s string) (CgroupPolicy, error) {
	switch s {
	case "", "stable":
		return CgroupStable, nil
	case "leaf":
		return CgroupLeaf, nil
	}
	return 0, fmt.Errorf("cgroup label policy must be stable or leaf, got %q", s)
}

func (p CgroupPolicy) String() string {
	if p == CgroupLeaf {
		return "leaf"
	}
	return "stable"
}

// CgroupName is the label of the cgroup at path (relative to the cgroup v2 root, as in the "0::" line of
// /proc/<pid>/cgroup), valid UTF-8 (Label); "/" for the root.
func CgroupName(path string, p CgroupPolicy) string {
	var elems []string
	for _, e := range strings.Split(path, "/") {
		if e != "" && e != "." && e != ".." {
			elems = append(elems, e)
		}
	}
	if len(elems) == 0 {
		return "/"
	}
	if p == CgroupStable {
		if n := stableName(elems); n != "" {
			return Label(n)
		}
	}
	return Label(elems[len(elems)-1])
}

func stableName(elems []string) string {
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
	for i := len(elems) - 1; i >= 0; i-- {
		if strings.HasSuffix(elems[i], ".service") {
			return elems[i]
		}
	}
	return ""
}

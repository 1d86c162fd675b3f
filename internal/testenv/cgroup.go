package testenv

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Cgroup2Mount returns where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified
// on hybrid hosts); it skips (fails in CI) when there is none.
func Cgroup2Mount(t testing.TB) string {
	t.Helper()
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(info), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if f := strings.Fields(pre); ok && strings.HasPrefix(post, "cgroup2 ") && len(f) > 4 {
			return f[4]
		}
	}
	Missing(t, "no cgroup2 mount in /proc/self/mountinfo")
	return ""
}

// OwnCgroup returns this process's cgroup directory below mount, a cgroup v2 hierarchy; it skips (fails
// in CI) when the process has no cgroup v2 entry.
func OwnCgroup(t testing.TB, mount string) string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return filepath.Join(mount, p)
		}
	}
	Missing(t, "no cgroup v2 entry in /proc/self/cgroup: %q", data)
	return ""
}

// InChildCgroup runs fn with this whole process moved into a new cgroup called name below its own (in the
// cgroup v2 hierarchy mounted at mount), moves it back, and returns the new cgroup's directory. Sockets
// opened in fn (and those their listeners accept later) belong to the new cgroup. It is removed when the
// test ends. Name must be unique per test.
func InChildCgroup(t testing.TB, mount, name string, fn func() error) string {
	t.Helper()
	own := OwnCgroup(t, mount)
	child := NewCgroup(t, own, name)
	pid := []byte(strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(filepath.Join(child, "cgroup.procs"), pid, 0); err != nil {
		Missing(t, "cannot move into a child cgroup: %v", err)
	}
	ferr := fn()
	if err := os.WriteFile(filepath.Join(own, "cgroup.procs"), pid, 0); err != nil {
		t.Fatalf("moving back to %s: %v", own, err)
	}
	if ferr != nil {
		t.Fatal(ferr)
	}
	return child
}

// MountCgroup2 mounts the cgroup v2 hierarchy (the same one: there is only one) in a temporary directory
// and unmounts it when the test ends. `ip netns exec` mounts a fresh /sys for the namespace, which hides
// /sys/fs/cgroup from the processes it starts; they see this mount.
func MountCgroup2(t testing.TB) string {
	t.Helper()
	mount := filepath.Join(t.TempDir(), "cgroup2")
	if err := os.Mkdir(mount, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("none", mount, "cgroup2", 0, ""); err != nil {
		Missing(t, "cannot mount the cgroup v2 hierarchy: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(mount, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", mount, err)
		}
	})
	return mount
}

// NewCgroup creates the cgroup name below the cgroup directory parent and removes it when the test ends,
// once its processes have left. Name must be unique per test.
func NewCgroup(t testing.TB, parent, name string) string {
	t.Helper()
	dir := filepath.Join(parent, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		Missing(t, "cannot create a cgroup: %v", err)
	}
	t.Cleanup(func() { removeCgroup(t, dir) })
	return dir
}

// removeCgroup removes a cgroup once its processes have left; the kernel needs a moment after they move.
func removeCgroup(t testing.TB, dir string) {
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		err := os.Remove(dir)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("removing cgroup %s: %v", dir, err)
			return
		}
	}
}

// TCPLimitedMemcg creates a cgroup v1 memory cgroup called name below this process's own, with TCP memory
// accounting on and limited to tcpLimit bytes (memory.kmem.tcp.limit_in_bytes), and returns its directory
// and its path in the hierarchy (as /proc/<pid>/cgroup names it). It is removed when the test ends. It skips
// (fails in CI) on hosts without a v1 memory hierarchy that has memory.kmem.tcp files.
func TCPLimitedMemcg(t testing.TB, name string, tcpLimit int) (dir, path string) {
	t.Helper()
	RequireRoot(t)
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	mount := ""
	for _, line := range strings.Split(string(info), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f, p := strings.Fields(pre), strings.Fields(post)
		if ok && len(f) > 4 && len(p) == 3 && p[0] == "cgroup" && slices.Contains(strings.Split(p[2], ","), "memory") {
			mount = f[4]
		}
	}
	if mount == "" {
		Missing(t, "no cgroup v1 memory hierarchy mounted (cgroup v1 memory.kmem.tcp limits the socket memory of a cgroup)")
	}
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	own := ""
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if f := strings.SplitN(line, ":", 3); len(f) == 3 && slices.Contains(strings.Split(f[1], ","), "memory") {
			own = f[2]
		}
	}
	if own == "" {
		Missing(t, "no memory entry in /proc/self/cgroup: %q", data)
	}
	dir = NewCgroup(t, filepath.Join(mount, own), name)
	limitFile := filepath.Join(dir, "memory.kmem.tcp.limit_in_bytes")
	if err := os.WriteFile(limitFile, []byte(strconv.Itoa(tcpLimit)), 0); err != nil {
		Missing(t, "cannot limit a memory cgroup's TCP memory: %v", err)
	}
	return dir, filepath.Join(own, name)
}

// CommandInCgroup is Command with the process moved into the cgroup directory cgroupDir (its cgroup.procs)
// before it runs name, so that every socket it creates or accepts is charged to that cgroup.
func (ns *NetNS) CommandInCgroup(ctx context.Context, cgroupDir, name string, args ...string) *exec.Cmd {
	script := `echo $$ > "$0/cgroup.procs" && exec "$@"`
	return exec.CommandContext(ctx, "sh", append([]string{"-c", script, cgroupDir, ns.ip, "netns", "exec", ns.Name, name}, args...)...)
}

// CommandKeepSys is Command for a process that must see the host's /sys (its cgroup hierarchies): it enters
// only the network namespace (nsenter --net), where `ip netns exec` also mounts a fresh /sys that hides
// /sys/fs/cgroup.
func (ns *NetNS) CommandKeepSys(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + ns.Path, "--", name}, args...)...)
}

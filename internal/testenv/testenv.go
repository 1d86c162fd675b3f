// Package testenv holds the helpers that tests against the real kernel share: skipping (or, in CI, failing)
// when a prerequisite is missing, and creating network namespaces that are removed when the test ends.
package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/sockbuf/sockbuf_exporter/internal/sysutil"
)

// inCI reports whether the tests run in CI, where a missing prerequisite is a failure and not a skip.
func inCI() bool { return os.Getenv("CI") != "" }

// Missing skips the test with reason, or fails it when running in CI: in CI every prerequisite must be there,
// so that an end-to-end test can never pass by silently skipping.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	reason := fmt.Sprintf(format, args...)
	if inCI() {
		t.Fatalf("prerequisite missing in CI: %s", reason)
	}
	t.Skipf("skipping: %s", reason)
}

// RequireRoot needs uid 0, which namespaces, nft rules and sysctls need.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "needs root (uid 0) to create network namespaces")
	}
}

// RequireBinary returns the path of an executable (see sysutil.LookPath: PATH, then the sbin directories),
// else skips or fails. Debian packages to install are named in the failure so the fix is obvious.
func RequireBinary(t testing.TB, name, debianPackage string) string {
	t.Helper()
	p, err := sysutil.LookPath(name)
	if err != nil {
		Missing(t, "%v (apt-get install -y %s)", err, debianPackage)
	}
	return p
}

var nsCounter atomic.Uint64

// NetNS is a network namespace created for one test, with its loopback up.
type NetNS struct {
	Name string // name under /run/netns, usable with `ip netns exec`
	Path string // /run/netns/<name>
	ip   string // the ip binary RequireBinary found, which may be off PATH (in /usr/sbin)
}

// NewNetNS creates a fresh network namespace with loopback up, deleted when the test ends. Host sysctls that
// a namespace copies when created (net.ipv4.tcp_child_ehash_entries) must be set before calling it.
func NewNetNS(t testing.TB) *NetNS {
	t.Helper()
	RequireRoot(t)
	ip := RequireBinary(t, "ip", "iproute2")
	name := fmt.Sprintf("sbtest-%d-%d", os.Getpid(), nsCounter.Add(1))
	if out, err := exec.Command(ip, "netns", "add", name).CombinedOutput(); err != nil {
		Missing(t, "cannot create network namespace: ip netns add: %v: %s", err, out)
	}
	ns := &NetNS{Name: name, Path: "/run/netns/" + name, ip: ip}
	t.Cleanup(func() {
		if out, err := exec.Command(ip, "netns", "delete", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns delete %s: %v: %s", name, err, out)
		}
	})
	ns.MustRun(t, ip, "link", "set", "lo", "up")
	return ns
}

// NewIsolatedNetNS creates a network namespace with a TCP established-hash table of its own
// (net.ipv4.tcp_child_ehash_entries), so that socket dumps in it cost what its own sockets cost and not what the
// whole host's do. The host sysctl is set, the namespace created and the sysctl put back under a lock that
// all test processes share, so concurrent test packages cannot leave the host changed.
func NewIsolatedNetNS(t testing.TB, ehashEntries int) *NetNS {
	t.Helper()
	RequireRoot(t)
	// sockdiag/bench.sh takes the same lock.
	if err := os.MkdirAll("/run/lock", 0o755); err != nil {
		Missing(t, "creating /run/lock: %v", err)
	}
	lock, err := os.OpenFile("/run/lock/sockbuf-test-sysctl.lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		Missing(t, "opening sysctl lock: %v", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatalf("locking %s: %v", lock.Name(), err)
	}
	defer unix.Flock(int(lock.Fd()), unix.LOCK_UN) //nolint:errcheck // closing releases it too

	restore, err := sysutil.SetSysctl("net/ipv4/tcp_child_ehash_entries", fmt.Sprint(ehashEntries))
	if errors.Is(err, fs.ErrNotExist) {
		Missing(t, "kernel has no tcp_child_ehash_entries (5.19+): %v", err)
	} else if err != nil {
		Missing(t, "%v", err)
	}
	var ns *NetNS
	func() {
		defer func() {
			if err := restore(); err != nil {
				t.Error(err)
			}
		}()
		ns = NewNetNS(t)
	}()
	return ns
}

// Command returns a command that runs inside the namespace (through `ip netns exec`, which execs name and so
// looks it up on PATH itself: pass a path for a binary that may be off PATH, as RequireBinary returns).
func (ns *NetNS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, ns.ip, append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// MustRun runs a command inside the namespace and returns its standard output; any failure fails the test.
func (ns *NetNS) MustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := ns.Command(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("in netns %s: %s %s: %v: %s", ns.Name, name, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// Do runs fn on a locked OS thread that has joined the namespace, then returns the thread to the original
// namespace. Sockets opened inside fn belong to the namespace for their whole life.
func (ns *NetNS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is left locked on purpose when restoring fails: Go then kills it instead of reusing
		// a thread stuck in the wrong namespace.
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- fmt.Errorf("opening current netns: %w", err)
			return
		}
		defer orig.Close()
		target, err := os.Open(ns.Path)
		if err != nil {
			errc <- fmt.Errorf("opening netns %s: %w", ns.Path, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("entering netns %s: %w", ns.Name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("leaving netns %s: %w", ns.Name, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Golden compares a generated file with the committed one at path, or rewrites it when update is set (the
// packages' -update flags). regenerate is the command that rewrites it, for the failure message.
func Golden(t testing.TB, path string, want []byte, update bool, regenerate string) {
	t.Helper()
	if update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("%v; generate it with: %s", err, regenerate)
		return
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is stale; regenerate it with: %s (-committed +generated):\n%s", path, regenerate,
			cmp.Diff(strings.Split(string(got), "\n"), strings.Split(string(want), "\n")))
	}
}

package netns

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/sockbuf/sockbuf_exporter/sockdiag"
)

// Client is a sock_diag client inside a network namespace, holding the namespace's fd (and so the namespace)
// open for its life.
type Client struct {
	*sockdiag.Client
	fd int
}

// Close closes the client and the namespace's fd.
func (c *Client) Close() error {
	err := c.Client.Close()
	unix.Close(c.fd)
	return err
}

// Dial opens a sock_diag client in the network namespace ino of process pid. setns into another namespace
// needs CAP_SYS_ADMIN; without it Dial fails with EPERM. A pid that is now in another namespace (the process
// exited and its pid was reused) fails with ENOENT.
func Dial(procPath string, pid int, ino uint64) (*Client, error) {
	fd, err := open(procPath, pid, ino)
	if err != nil {
		return nil, err
	}
	var cl *sockdiag.Client
	err = Do(fd, func() error {
		var err error
		cl, err = sockdiag.Dial(nil) // on this thread, which is in the namespace
		return err
	})
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("entering network namespace %d (needs CAP_SYS_ADMIN): %w", ino, err)
	}
	return &Client{Client: cl, fd: fd}, nil
}

// Open opens the network namespace ino of process pid (for the bpf engine's walks, which enter it
// themselves), with Dial's checks.
func Open(procPath string, pid int, ino uint64) (*os.File, error) {
	fd, err := open(procPath, pid, ino)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), filepath.Join(procPath, strconv.Itoa(pid), "ns", "net")), nil
}

// open opens /proc/<pid>/ns/net and checks that it is still namespace ino: the process may have exited
// and its pid gone to a process of another namespace (ENOENT then).
func open(procPath string, pid int, ino uint64) (int, error) {
	path := filepath.Join(procPath, strconv.Itoa(pid), "ns", "net")
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("opening %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("stat %s: %w", path, err)
	}
	if st.Ino != ino {
		unix.Close(fd)
		return -1, fmt.Errorf("%s is namespace %d now, not %d: %w", path, st.Ino, ino, unix.ENOENT)
	}
	return fd, nil
}

// Do runs fn on an OS thread that has joined the network namespace nsfd and that is not the thread group
// leader, and puts the thread back in its namespace afterwards.
//
// Not the leader: /proc/net is a link to /proc/self/net, and /proc/<tgid>/net shows the namespace of the
// thread group leader (get_proc_task_net in fs/proc/proc_net.c takes the task of the pid directory). A setns
// on the leader would make every thread that opens a /proc/net file meanwhile, such as the netstat
// collector opening its kept files for the first time, get the other namespace's file, and keep it.
// sockdiag.Dial with a NetNS runs its setns on whatever thread the runtime gives a new goroutine, which
// can be the leader; so the setns is done here instead. The thread stays locked for as long as it is in the
// other namespace, so no other goroutine runs there; fn must not open /proc files that are kept.
//
// A thread that cannot be put back is never unlocked: the runtime ends it with its goroutine. Everything in
// the exporter that setns(2)s (bpf/sockiter opening an iterator in a namespace) should go through Do.
func Do(nsfd int, fn func() error) error {
	done := make(chan error, 1)
	go func() { done <- runInNetns(nsfd, fn) }()
	return <-done
}

// runInNetns is Do on the calling goroutine, whose thread it locks: if that thread is the leader, it
// keeps it locked, so that the goroutine it starts, which cannot run there, gets another thread. The thread
// stays locked on return when it could not be put back into its namespace; the caller's goroutine must then
// end.
func runInNetns(nsfd int, fn func() error) error {
	runtime.LockOSThread()
	if unix.Gettid() != unix.Getpid() {
		restored, err := setnsRun(nsfd, fn)
		if restored {
			runtime.UnlockOSThread()
		}
		return err
	}
	inner := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		restored, err := setnsRun(nsfd, fn)
		if restored {
			runtime.UnlockOSThread()
		}
		inner <- err
	}()
	err := <-inner
	runtime.UnlockOSThread()
	return err
}

// setnsRun runs fn with the calling thread, locked by the caller, in the namespace nsfd. restored is false
// when the thread could not be put back into its own namespace, and must then not be unlocked.
func setnsRun(nsfd int, fn func() error) (restored bool, err error) {
	self, err := unix.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return true, fmt.Errorf("opening this thread's network namespace: %w", err)
	}
	defer unix.Close(self)
	if err := unix.Setns(nsfd, unix.CLONE_NEWNET); err != nil {
		return true, fmt.Errorf("setns: %w", err)
	}
	ferr := fn()
	if err := unix.Setns(self, unix.CLONE_NEWNET); err != nil {
		return false, fmt.Errorf("setns back into the exporter's network namespace: %w", err)
	}
	return true, ferr
}

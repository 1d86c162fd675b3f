package netns

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
	"github.com/sockbuf/sockbuf_exporter/sockdiag"
)

// The main goroutine stays on the thread group leader (init locks it there) and runs the functions the
// tests send it, while the tests themselves run on other goroutines: a goroutine that merely hopes to be
// scheduled on the leader may never be, on a busy machine.
var leaderWork = make(chan func())

func init() { runtime.LockOSThread() }

func TestMain(m *testing.M) {
	done := make(chan int)
	go func() { done <- m.Run() }()
	for {
		select {
		case fn := <-leaderWork:
			fn()
		case code := <-done:
			os.Exit(code)
		}
	}
}

// onLeader runs fn on the thread group leader.
func onLeader(t *testing.T, fn func()) {
	t.Helper()
	finished := make(chan struct{})
	leaderWork <- func() {
		defer close(finished)
		if unix.Gettid() != unix.Getpid() {
			t.Errorf("the main goroutine is not on the thread group leader")
			return
		}
		fn()
	}
	<-finished
}

func readlink(t *testing.T, path string) string {
	t.Helper()
	l, err := os.Readlink(path)
	if err != nil {
		t.Error(err)
	}
	return l
}

// newNamespace creates a namespace for the test and returns it open, and its inode.
func newNamespace(t *testing.T) (*os.File, uint64) {
	t.Helper()
	ns := testenv.NewNetNS(t)
	nsf, err := os.Open(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nsf.Close() })
	var st unix.Stat_t
	if err := unix.Fstat(int(nsf.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return nsf, st.Ino
}

// TestSetnsOnLeaderMovesProcNet shows why Do keeps off the leader: while the leader is in another
// namespace, /proc/self/net (and so /proc/net) of every thread shows that namespace.
func TestSetnsOnLeaderMovesProcNet(t *testing.T) {
	nsf, ino := newNamespace(t)
	self := readlink(t, "/proc/self/ns/net")
	var during string
	onLeader(t, func() {
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			t.Error(err)
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(nsf.Fd()), unix.CLONE_NEWNET); err != nil {
			t.Error(err)
			return
		}
		done := make(chan string)
		go func() { // on another thread: this one is locked
			l, _ := os.Readlink("/proc/self/ns/net")
			done <- l
		}()
		during = <-done
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			t.Fatalf("setns back: %v", err) // leaves the thread locked: the runtime ends it
		}
	})
	if want, _ := ParseLink(during); want != ino {
		t.Errorf("another thread's /proc/self/ns/net while the leader was in %d = %s (ours %s)", ino, during, self)
	}
}

// TestInNetnsOffLeader checks that runInNetns, when the goroutine Do starts for it lands on the leader,
// runs fn on another thread in the target namespace, leaving the leader, and so /proc/self/net, in the
// exporter's namespace.
func TestInNetnsOffLeader(t *testing.T) {
	nsf, ino := newNamespace(t)
	self := readlink(t, "/proc/self/ns/net")
	var tid int
	var leaderNs, threadNs string
	onLeader(t, func() {
		err := runInNetns(int(nsf.Fd()), func() error {
			tid = unix.Gettid()
			leaderNs = readlink(t, "/proc/self/ns/net")
			threadNs = readlink(t, "/proc/thread-self/ns/net")
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	})
	t.Logf("tid %d pid %d leader %s thread %s self %s", tid, unix.Getpid(), leaderNs, threadNs, self)
	if tid == unix.Getpid() {
		t.Errorf("fn ran on the thread group leader")
	}
	if leaderNs != self {
		t.Errorf("leader's namespace during fn = %s, want ours %s", leaderNs, self)
	}
	if got, _ := ParseLink(threadNs); got != ino {
		t.Errorf("fn's thread in %s, want net:[%d]", threadNs, ino)
	}
	if got := readlink(t, "/proc/thread-self/ns/net"); got != self {
		t.Errorf("after Do this thread is in %s, want %s", got, self)
	}
}

// TestDial checks that a client dialed through a process of a namespace dumps that namespace's sockets, and
// that a pid now in another namespace is refused.
func TestDial(t *testing.T) {
	ns := testenv.NewNetNS(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := ns.Command(ctx, "sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	var st unix.Stat_t
	if err := unix.Stat(ns.Path, &st); err != nil {
		t.Fatal(err)
	}
	ino := st.Ino
	var port uint16
	var lfd int
	err := ns.Do(func() error {
		var err error
		lfd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if err := unix.Bind(lfd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			return err
		}
		if err := unix.Listen(lfd, 8); err != nil {
			return err
		}
		sa, err := unix.Getsockname(lfd)
		if err != nil {
			return err
		}
		port = uint16(sa.(*unix.SockaddrInet4).Port)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(lfd)
	// `ip netns exec` execs sleep in the namespace; until it has, its pid is still in ours.
	pid := cmd.Process.Pid
	waitIn(t, pid, ino)
	cl, err := Dial("/proc", pid, ino)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	found := false
	_, err = cl.DumpContext(context.Background(), sockdiag.Request{Family: sockdiag.FamilyUnspec, States: 1 << sockdiag.StateListen},
		func(s *sockdiag.Socket) error {
			found = found || s.Src.Port() == port
			return nil
		})
	if err != nil || !found {
		t.Errorf("dump in the namespace: listener on %d found %v, err %v", port, found, err)
	}
	if _, err := Dial("/proc", pid, ino+1); err == nil {
		t.Error("Dial with the wrong namespace inode: no error")
	}
}

func waitIn(t *testing.T, pid int, ino uint64) {
	t.Helper()
	for range 200 {
		l, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/net")
		if got, _ := ParseLink(l); got == ino {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("pid %d never joined namespace %d", pid, ino)
}

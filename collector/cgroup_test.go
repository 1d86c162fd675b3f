package collector

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockbuf/sockbuf_exporter/attrib"
	"github.com/sockbuf/sockbuf_exporter/internal/socktest"
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
	"github.com/sockbuf/sockbuf_exporter/sockdiag"
)

// inode returns a path's inode number, which is what the kernel reports as the cgroup id of a cgroup v2
// directory.
func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// badNames is a process in a namespace of its own, in a cgroup whose name is not valid UTF-8, with a comm that
// is not either, holding a listener and both ends of a connection to it.
type badNames struct {
	ns     *testenv.NetNS
	root   string // cgroup v2 mount
	port   int    // the listener's
	pid    int
	cgroup string // the label the cgroup must get
	comm   string // the label the process must get
}

// Any user with a delegated cgroup subtree can name a cgroup like this, and any process can set its comm so.
const (
	badCgroupName = "x\xff"
	badComm       = "p\xfe"
)

// startBadNames starts the process of badNames; it ends with the test.
func startBadNames(t *testing.T) *badNames {
	t.Helper()
	testenv.RequireRoot(t)
	python := testenv.RequireBinary(t, "python3", "python3")
	root, err := attrib.FindCgroup2Mount("/proc")
	if err != nil || root == "" {
		testenv.Missing(t, "no cgroup v2 hierarchy mounted: %v", err)
	}
	ns := testenv.NewNetNS(t)
	parent := testenv.NewCgroup(t, root, fmt.Sprintf("sbtest-%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "-")))
	leaf := testenv.NewCgroup(t, parent, badCgroupName) // removed first: cleanups run last-in first-out
	cgfd, err := syscall.Open(leaf, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(cgfd)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	const script = `import socket, time
open("/proc/self/comm", "wb").write(b"p\xfe")
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
c = socket.create_connection(s.getsockname()); a, _ = s.accept()
print(s.getsockname()[1], flush=True)
time.sleep(60)
`
	cmd := ns.Command(ctx, python, "-c", script)
	// Born in the cgroup (CLONE_INTO_CGROUP), so that its sockets are charged to it from the start.
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgfd}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		cancel()
		testenv.Missing(t, "starting a process in cgroup %q: %v", leaf, err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the listener's port: %v", err)
	}
	port, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	return &badNames{ns: ns, root: root, port: port, pid: cmd.Process.Pid, cgroup: `x\xff`, comm: `p\xfe`}
}

// TestSocketsCollectorInvalidUTF8 checks that a cgroup and a process whose names are not valid UTF-8 do not fail
// the sockets collector: they get escaped labels, and the other series are there.
func TestSocketsCollectorInvalidUTF8(t *testing.T) {
	b := startBadNames(t)
	c := newBadNamesSockets(t, b, SocketsConfig{CgroupAttribution: true, ProcessAttribution: true, CgroupRoot: b.root})
	m := gather(t, c) // fails the test if the registry rejects a label
	p := strconv.Itoa(b.port)
	for _, role := range []string{"server", "client"} {
		k := `sockbuf_sockets{cgroup="` + b.cgroup + `",port="` + p + `",process="` + b.comm + `",role="` + role + `"}`
		if m[k] != 1 {
			t.Errorf("%s = %g, want 1; series: %v", k, m[k], gatherPrefix(m, "sockbuf_sockets{"))
		}
	}
	if m[`sockbuf_listen_queue_limit{port="`+p+`"}`] == 0 {
		t.Errorf("listener's series missing: %v", gatherPrefix(m, "sockbuf_listen_queue_limit"))
	}
}

// newBadNamesSockets returns a sockets collector dumping the namespace of b.
func newBadNamesSockets(t *testing.T, b *badNames, sc SocketsConfig) *socketsCollector {
	t.Helper()
	nsf, err := os.Open(b.ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nsf.Close() })
	c, err := newSocketsCollector(Config{ProcPath: "/proc", Sockets: withTestDefaults(sc)}, nil, func() (socketDumper, error) {
		return sockdiag.Dial(&sockdiag.Config{NetNS: int(nsf.Fd())})
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestSocketsCollectorCgroupPolicy checks that --collector.sockets.cgroup-label reaches the sockets collector:
// a container's sockets carry its pod's directory under stable (the default) and its own under leaf.
func TestSocketsCollectorCgroupPolicy(t *testing.T) {
	root := t.TempDir()
	pod := "kubepods-burstable-pod0a1b_2c3d.slice"
	dir := filepath.Join(root, "kubepods.slice", "kubepods-burstable.slice", pod, "cri-containerd-abc.scope")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for policy, want := range map[attrib.CgroupPolicy]string{attrib.CgroupStable: pod, attrib.CgroupLeaf: "cri-containerd-abc.scope"} {
		d := &fakeDumper{socks: []socktest.Sock{socktest.Listen(80, 0, 10), {Local: 80, Remote: 1, Cgroup: inode(t, dir)}}}
		c := newTestSockets(t, SocketsConfig{CgroupAttribution: true, CgroupRoot: root, CgroupLabel: policy}, d)
		k := `sockbuf_sockets{cgroup="` + want + `",port="80",process="",role="server"}`
		if m := gather(t, c); m[k] != 1 {
			t.Errorf("%v: %s = %g, want 1; have %v", policy, k, m[k], gatherPrefix(m, "sockbuf_sockets{"))
		}
	}
}

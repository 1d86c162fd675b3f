package evidence

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sockbuf/sockbuf_exporter/bpf/sockiter"
	"github.com/sockbuf/sockbuf_exporter/diagnose"
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
	"github.com/sockbuf/sockbuf_exporter/internal/trafficgen"
	"github.com/sockbuf/sockbuf_exporter/memcg"
)

// TestSamplerSockets takes two readings of a namespace with 5 connections holding 3000 unread bytes each on
// the server side, and a listener whose accept queue is full, and checks the groups and listeners against
// them. The sockets are dumped in the test thread's namespace (the /proc files are the process's, not
// checked here: the end-to-end tests of cmd/sockbuf_exporter run the binary inside the namespace).
func TestSamplerSockets(t *testing.T) {
	ns := testenv.NewNetNS(t)
	const conns, unread = 5, 3000
	var port, blPort int
	var ev *diagnose.Evidence
	err := ns.Do(func() error {
		ctx := context.Background()
		c, err := trafficgen.Unread(ctx, trafficgen.UnreadConfig{Conns: conns, Bytes: unread})
		if err != nil {
			return err
		}
		defer c.Close()
		port = c.Servers[0].Port()
		b, err := trafficgen.FullAcceptQueue(ctx, "127.0.0.1:0", 2, 0)
		if err != nil {
			return err
		}
		defer b.Close()
		blPort = b.Server.Port()
		s := New(Config{TCPInfo: true, Readings: 2})
		defer s.Close()
		for range 3 { // a ring of 2 keeps the last two
			if err := s.Sample(ctx); err != nil {
				return err
			}
			time.Sleep(10 * time.Millisecond)
		}
		ev = s.Evidence(0)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Samples != 2 || !ev.Sources.Sockets || !ev.Sources.TCPInfo {
		t.Fatalf("samples %d, sources %+v", ev.Samples, ev.Sources)
	}
	byKey := map[diagnose.GroupKey]diagnose.Group{}
	for _, g := range ev.Groups {
		byKey[g.Key] = g
	}
	srv := byKey[diagnose.GroupKey{Role: "server", Port: strconv.Itoa(port)}]
	if len(srv.Samples) != 2 {
		t.Fatalf("server group of port %d: %+v (groups %+v)", port, srv, ev.Groups)
	}
	for _, s := range srv.Samples {
		if s.Sockets != conns || s.RecvQ != conns*unread || s.Rcvbuf == 0 || s.RcvbufMin > s.RcvbufMax || !s.ZeroWindow.Known || s.ZeroWindow.V != 0 {
			t.Errorf("server sample %+v; want %d sockets holding %d bytes, open windows", s, conns, conns*unread)
		}
		if !s.AtTCPRmemMax.Known && ev.Sources.Sysctl {
			t.Errorf("AtTCPRmemMax unknown with sysctls read")
		}
	}
	if cl := byKey[diagnose.GroupKey{Role: "client", Port: strconv.Itoa(port)}]; len(cl.Samples) != 2 || cl.Samples[0].Sockets != conns || cl.Samples[0].RecvQ != 0 {
		t.Errorf("client group: %+v", cl)
	}
	if srv.SocketDrops != diagnose.Val(0) {
		t.Errorf("server drops %+v; want known 0", srv.SocketDrops)
	}
	found := false
	for _, l := range ev.Listeners {
		if l.Port == strconv.Itoa(blPort) {
			found = true
			for _, s := range l.Samples {
				if s.Limit != 2 || s.Length != 3 {
					t.Errorf("backlogged listener sample %+v; want 3 waiting over limit 2", s)
				}
			}
		}
	}
	if !found {
		t.Errorf("listener on %d not seen: %+v", blPort, ev.Listeners)
	}
}

// TestSamplerProcessesAndMemcgs: with Processes and a memcg reader, a group holds the name of the process
// that holds its sockets (this test binary) and the memory cgroup that process is in, which is read.
func TestSamplerProcessesAndMemcgs(t *testing.T) {
	ns := testenv.NewNetNS(t)
	r, err := memcg.NewReader("/proc")
	if err != nil {
		testenv.Missing(t, "no memory cgroup hierarchy: %v", err)
	}
	own, err := r.CgroupOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	var port int
	var ev *diagnose.Evidence
	err = ns.Do(func() error {
		ctx := context.Background()
		c, err := trafficgen.Unread(ctx, trafficgen.UnreadConfig{Conns: 2, Bytes: 1000})
		if err != nil {
			return err
		}
		defer c.Close()
		port = c.Servers[0].Port()
		s := New(Config{Readings: 2, Processes: true, Memcg: r})
		defer s.Close()
		for range 2 {
			if err := s.Sample(ctx); err != nil {
				return err
			}
		}
		ev = s.Evidence(0)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	key := diagnose.GroupKey{Role: "server", Port: strconv.Itoa(port), Process: strings.TrimSpace(string(comm))}
	var g *diagnose.Group
	for i := range ev.Groups {
		if ev.Groups[i].Key == key {
			g = &ev.Groups[i]
		}
	}
	if g == nil {
		t.Fatalf("no group %+v in %+v", key, ev.Groups)
	}
	if g.MemoryCgroup != own {
		t.Errorf("group's memory cgroup %q, want this process's %q", g.MemoryCgroup, own)
	}
	if !ev.Sources.Cgroups {
		t.Error("Sources.Cgroups false with a memcg reader")
	}
	found := false
	for _, c := range ev.Cgroups {
		found = found || c.Cgroup == own
	}
	if !found {
		t.Errorf("this process's memory cgroup %q not read: %+v", own, ev.Cgroups)
	}
}

// TestSamplerLockBits: with the bpf socket iterator, a pinned listener's accepted sockets (SO_RCVBUF set on
// the listener before listen(), inherited) count as locked, and an unpinned listener's as not.
func TestSamplerLockBits(t *testing.T) {
	ns := testenv.NewNetNS(t)
	var pinnedPort, autoPort int
	var ev *diagnose.Evidence
	err := ns.Do(func() error {
		e, err := sockiter.Open(sockiter.Options{})
		if err != nil {
			return err
		}
		defer e.Close()
		ctx := context.Background()
		pinned, err := trafficgen.Unread(ctx, trafficgen.UnreadConfig{Listen: trafficgen.ListenConfig{RcvBuf: 65536}, Conns: 3, Bytes: 1000})
		if err != nil {
			return err
		}
		defer pinned.Close()
		auto, err := trafficgen.Unread(ctx, trafficgen.UnreadConfig{Conns: 2, Bytes: 1000})
		if err != nil {
			return err
		}
		defer auto.Close()
		pinnedPort, autoPort = pinned.Servers[0].Port(), auto.Servers[0].Port()
		s := New(Config{Readings: 2, Locks: e})
		defer s.Close()
		for range 2 {
			if err := s.Sample(ctx); err != nil {
				return err
			}
		}
		ev = s.Evidence(0)
		return nil
	})
	if errors.Is(err, sockiter.ErrUnavailable) {
		testenv.Missing(t, "bpf socket iterator: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if !ev.Sources.RcvbufLock {
		t.Fatalf("Sources.RcvbufLock false with the iterator: %+v", ev.Sources)
	}
	for _, c := range []struct {
		port   int
		locked uint64
	}{{pinnedPort, 3}, {autoPort, 0}} {
		found := false
		for _, g := range ev.Groups {
			if g.Key.Role == "server" && g.Key.Port == strconv.Itoa(c.port) {
				found = true
				for _, s := range g.Samples {
					if s.Locked != diagnose.Val(c.locked) {
						t.Errorf("server port %d: Locked %+v, want %d", c.port, s.Locked, c.locked)
					}
				}
			}
		}
		if !found {
			t.Errorf("no server group of port %d", c.port)
		}
	}
}

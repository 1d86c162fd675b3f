//go:build linux

package drops

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
	"github.com/sockbuf/sockbuf_exporter/internal/trafficgen"
)

// overflowClients makes the client side of connections drop data: the server writes 32 KiB that the
// clients leave unread, the clients shrink SO_RCVBUF below it (which also locks the buffer), and the server
// writes on in 1-byte segments into the window the clients already advertised (trafficgen.Shrink with the
// roles swapped). It returns once the clients' sockets have dropped data, within 5s.
func overflowClients(srv *trafficgen.Server, clients *trafficgen.Clients) error {
	fill := make([]byte, trafficgen.DefaultShrinkFill)
	for _, c := range srv.Conns() {
		if err := c.SetNoDelay(true); err != nil {
			return err
		}
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(fill); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, c := range clients.Conns {
		for {
			n, err := trafficgen.RecvQueue(c)
			if err != nil {
				return err
			}
			if n >= len(fill) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("client queue holds %d of %d bytes after 5s", n, len(fill))
			}
			time.Sleep(time.Millisecond)
		}
		if err := c.SetReadBuffer(trafficgen.DefaultShrinkRcvBuf); err != nil {
			return err
		}
	}
	one := []byte{'x'}
	for time.Now().Before(deadline) {
		for _, c := range srv.Conns() {
			c.SetWriteDeadline(time.Now().Add(time.Millisecond))
			c.Write(one)
		}
		var drops uint64
		for _, c := range clients.Conns {
			mi, err := trafficgen.SocketMemInfo(c)
			if err != nil {
				return err
			}
			drops += uint64(mi.Drops)
		}
		if drops > 0 {
			return nil
		}
	}
	return fmt.Errorf("client sockets dropped nothing within 5s")
}

// TestGroups runs three receivers side by side in one namespace and checks that each one's drops land on
// its own group, with rcvbuf_locked right: a server pinned with SO_RCVBUF before listen() and overrun with
// 1-byte segments, an autotuned server that only sees window probes, and a client whose buffer was shrunk
// (so pinned) under data in flight. All sockets belong to this process's cgroup.
func TestGroups(t *testing.T) {
	ns := testenv.NewNetNS(t)
	tr := openTracer(t, ns)
	cgroup := cgroupID(t, testenv.OwnCgroup(t, testenv.Cgroup2Mount(t)))
	ino, err := NetNSInode(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var probed *trafficgen.Server
	// The probed listener, and so the sockets it accepts, live in a cgroup of their own.
	probedCgroup := inChildCgroup(t, func() error {
		return ns.Do(func() (err error) {
			probed, err = trafficgen.Listen(trafficgen.ListenConfig{})
			return err
		})
	})
	var pinned *trafficgen.Load
	var talker *trafficgen.Server
	var probers, listeners *trafficgen.Clients
	err = ns.Do(func() (err error) {
		if pinned, err = trafficgen.NewLoad(ctx, trafficgen.Options{Conns: 4, Duration: 5 * time.Second}); err != nil {
			return err
		}
		if probers, err = trafficgen.Dial(ctx, probed.Addr(), 2, trafficgen.DialConfig{}); err != nil {
			return err
		}
		if talker, err = trafficgen.Listen(trafficgen.ListenConfig{}); err != nil {
			return err
		}
		if listeners, err = trafficgen.Dial(ctx, talker.Addr(), 2, trafficgen.DialConfig{}); err != nil {
			return err
		}
		if err := probed.WaitAccepted(2, 5*time.Second); err != nil {
			return err
		}
		return talker.WaitAccepted(2, 5*time.Second)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pinned.Close()
		probed.Close()
		probers.Close()
		talker.Close()
		listeners.Close()
	})
	ports := []uint16{uint16(pinned.Port()), uint16(probed.Port()), uint16(talker.Port())}
	if err := tr.SetListening(ino, ports); err != nil {
		t.Fatal(err)
	}
	if res, n, err := pinned.RunUntilDrops(ctx, 1); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("pinned server: %s, %d drops", res, n)
	}
	if err := trafficgen.CloseWindows(probers.Conns); err != nil {
		t.Fatal(err)
	}
	if err := overflowClients(talker, listeners); err != nil {
		t.Fatal(err)
	}
	type group struct {
		role   Role
		port   uint16
		locked bool
	}
	want := []group{
		{RoleServer, ports[0], true},
		{RoleServer, ports[1], false},
		{RoleClient, ports[2], true},
	}
	waitDrops(t, tr, 2, func(d Drop) bool { return d.Role == RoleServer && d.Port == ports[1] })
	// sk_drops read before and after the snapshot brackets what the tracer may have counted.
	pinnedSk0, clientSk0 := serverDrops(t, pinned.Server()), clientDrops(t, listeners)
	s := read(t, tr)
	pinnedSk1, clientSk1 := serverDrops(t, pinned.Server()), clientDrops(t, listeners)
	seen := map[group]map[string]uint64{}
	for _, d := range s.Drops {
		g := group{d.Role, d.Port, d.RcvbufLocked}
		if seen[g] == nil {
			seen[g] = map[string]uint64{}
		}
		seen[g][d.Reason] += d.Packets
		wantCgroup := cgroup
		if d.Port == ports[1] {
			wantCgroup = probedCgroup
		}
		if d.CgroupID != wantCgroup {
			t.Errorf("drop in cgroup %d, want %d: %+v", d.CgroupID, wantCgroup, d)
		}
		if d.Role == RoleUnknown {
			t.Errorf("role unknown in a described namespace: %+v", d)
		}
	}
	t.Logf("groups: %v; cgroups: own %d, probed listener's %d", seen, cgroup, probedCgroup)
	for _, g := range want {
		if len(seen[g]) == 0 {
			t.Errorf("no drops for %+v", g)
		}
		// The same sockets never show up with the other lock state.
		if other := (group{g.role, g.port, !g.locked}); len(seen[other]) != 0 {
			t.Errorf("drops for %+v: %v, want none (rcvbuf_locked is %v there)", other, seen[other], g.locked)
		}
	}
	// The pinned listener's connections mostly close their windows before losing data (see
	// trafficgen.Prune): their drops may all be probes. The shrunk client always loses data.
	if seen[want[2]]["proto_mem"] == 0 {
		t.Errorf("the overrun client has no proto_mem drops: %v", seen[want[2]])
	}
	if seen[want[1]]["proto_mem"] != 0 {
		t.Errorf("the probed receiver has proto_mem drops: %v", seen[want[1]])
	}
	// Every drop of the pinned server's and the client's sockets is in the tracer, and nothing else.
	if got := sum(seen[want[0]]); got < pinnedSk0 || got > pinnedSk1 {
		t.Errorf("pinned server: tracer %d drops, sk_drops %d..%d", got, pinnedSk0, pinnedSk1)
	}
	if got := sum(seen[want[2]]); got < clientSk0 || got > clientSk1 {
		t.Errorf("client: tracer %d drops, sk_drops %d..%d", got, clientSk0, clientSk1)
	}
}

// clientDrops sums sk_drops (skmeminfo) over client sockets.
func clientDrops(t *testing.T, c *trafficgen.Clients) uint64 {
	t.Helper()
	var n uint64
	for _, conn := range c.Conns {
		mi, err := trafficgen.SocketMemInfo(conn)
		if err != nil {
			t.Fatal(err)
		}
		n += uint64(mi.Drops)
	}
	return n
}

func sum(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

// TestListenerNotYetDescribed: the drops of sockets accepted by a listener that user space has not yet
// reported (opened since the last SetListening) count as the listener port's server drops, not as client
// drops under each peer's ephemeral port: the peers' ports are in ip_local_port_range and the listener's is
// not.
func TestListenerNotYetDescribed(t *testing.T) {
	ns := testenv.NewNetNS(t)
	tr := openTracer(t, ns)
	ino, err := NetNSInode(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	// The namespace is described, but without this listener.
	if err := tr.SetListening(ino, nil); err != nil {
		t.Fatal(err)
	}
	var srv *trafficgen.Server
	var probers *trafficgen.Clients
	err = ns.Do(func() (err error) {
		// A fixed port below ip_local_port_range, as a service binds.
		if srv, err = trafficgen.Listen(trafficgen.ListenConfig{Addr: "127.0.0.1:8765"}); err != nil {
			return err
		}
		if probers, err = trafficgen.Dial(context.Background(), srv.Addr(), 2, trafficgen.DialConfig{}); err != nil {
			return err
		}
		return srv.WaitAccepted(2, 5*time.Second)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Close()
		probers.Close()
	})
	if err := trafficgen.CloseWindows(probers.Conns); err != nil {
		t.Fatal(err)
	}
	port := uint16(srv.Port())
	s := waitDrops(t, tr, 2, func(d Drop) bool { return d.Role == RoleServer && d.Port == port })
	for _, d := range s.Drops {
		if d.Role != RoleServer || d.Port != port {
			t.Errorf("drop outside the listener's server group %d: %+v", port, d)
		}
	}
}

// TestClientsOfUndescribedNetNS: in a namespace whose listening ports user space never told (a pod's, when
// every namespace is counted), a client's drops still land on its group when its local port is ephemeral
// and the remote one is not: client of that fixed port. The server side of the same connections, local
// port fixed and remote ephemeral, is a server of its port.
func TestClientsOfUndescribedNetNS(t *testing.T) {
	ns := testenv.NewNetNS(t)
	tr := openTracer(t, ns)
	const fixed = 8080 // below the default ip_local_port_range (32768-60999) of a new namespace
	var talker *trafficgen.Server
	var listeners *trafficgen.Clients
	err := ns.Do(func() (err error) {
		if talker, err = trafficgen.Listen(trafficgen.ListenConfig{Addr: fmt.Sprintf("127.0.0.1:%d", fixed)}); err != nil {
			return err
		}
		if listeners, err = trafficgen.Dial(context.Background(), talker.Addr(), 2, trafficgen.DialConfig{}); err != nil {
			return err
		}
		if err := talker.WaitAccepted(2, 5*time.Second); err != nil {
			return err
		}
		return overflowClients(talker, listeners)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		talker.Close()
		listeners.Close()
	})
	waitDrops(t, tr, 1, func(d Drop) bool { return d.Role == RoleClient && d.Port == fixed })
	s := read(t, tr)
	var client uint64
	for _, d := range s.Drops {
		switch {
		case d.Role == RoleClient && d.Port == fixed:
			client += d.Packets
			if !d.RcvbufLocked {
				t.Errorf("client drop not locked (the clients shrank SO_RCVBUF): %+v", d)
			}
		case d.Role == RoleServer && d.Port == fixed:
		default:
			t.Errorf("drop %+v; want every drop on the client or server group of port %d", d, fixed)
		}
	}
	if client == 0 {
		t.Errorf("no client drops of port %d: %+v", fixed, s.Drops)
	}
}

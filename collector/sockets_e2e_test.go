//go:build linux

package collector

import (
	"bufio"
	"context"
	"fmt"
	"golang.org/x/sys/unix"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockbuf/sockbuf_exporter/internal/e2e"
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
	"github.com/sockbuf/sockbuf_exporter/internal/trafficgen"
)

// End-to-end tests of the sockets collector (issue 4): the real exporter binary inside a network namespace
// the test creates, real sockets in it, and ss as the reference.

// TestMain removes the binaries that the end-to-end tests build.
func TestMain(m *testing.M) { os.Exit(e2e.Main(m)) }

// buildTrafficgen builds cmd/sockbuf-trafficgen, for load that must live in a process of its own (each
// process is held to RLIMIT_NOFILE, which the test may not be able to raise).
func buildTrafficgen(t testing.TB) string {
	t.Helper()
	return e2e.Build(t, e2e.TrafficgenPackage)
}

// startInNS starts a command inside ns and stops it (SIGTERM, then SIGKILL) when the test ends. ready, if
// set, is a line prefix to wait for on its standard output.
func startInNS(t testing.TB, ns *testenv.NetNS, ready string, name string, args ...string) {
	t.Helper()
	cmd := ns.Command(context.Background(), name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var logs strings.Builder
	cmd.Stderr = &logs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	done := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	if ready == "" {
		return
	}
	timeout := time.After(60 * time.Second)
	for {
		select {
		case l := <-lines:
			if strings.HasPrefix(l, ready) {
				return
			}
		case <-done:
			t.Fatalf("%s exited before it was ready: %s", name, logs.String())
		case <-timeout:
			t.Fatalf("%s not ready after 60s: %s", name, logs.String())
		}
	}
}

// ssSocket is one line of `ss -tanH`.
type ssSocket struct {
	state        string
	recvQ, sendQ uint64
	local, peer  uint16
}

// runSS lists the namespace's TCP sockets as ss sees them, without the TIME-WAIT and SYN-RECV ones the
// collector does not dump by default.
func runSS(t *testing.T, ns *testenv.NetNS) []ssSocket {
	t.Helper()
	out := ns.MustRun(t, "ss", "-tanH")
	var socks []ssSocket
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		if f[0] == "TIME-WAIT" || f[0] == "SYN-RECV" {
			continue
		}
		s := ssSocket{state: f[0], local: ssPort(t, f[3]), peer: ssPort(t, f[4])}
		s.recvQ, _ = strconv.ParseUint(f[1], 10, 64)
		s.sendQ, _ = strconv.ParseUint(f[2], 10, 64)
		socks = append(socks, s)
	}
	return socks
}

func ssPort(t *testing.T, addr string) uint16 {
	i := strings.LastIndexByte(addr, ':')
	if addr[i+1:] == "*" {
		return 0
	}
	p, err := strconv.ParseUint(addr[i+1:], 10, 16)
	if err != nil {
		t.Fatalf("ss address %q: %v", addr, err)
	}
	return uint16(p)
}

// ssGroup is what ss says about a group: its sockets and their Recv-Q sum.
type ssGroup struct{ Sockets, RecvQ uint64 }

// groupSS groups ss's sockets the way the collector does: role by listening port, port by role; a port's
// listener is its fullest LISTEN socket (Recv-Q / Send-Q, ties by Recv-Q).
func groupSS(socks []ssSocket) (groups map[string]ssGroup, listeners map[uint16][2]uint64) {
	listeners = map[uint16][2]uint64{}
	for _, s := range socks {
		if s.state != "LISTEN" {
			continue
		}
		l, seen := listeners[s.local]
		if !seen || s.recvQ*l[1] > l[0]*s.sendQ || (s.recvQ*l[1] == l[0]*s.sendQ && s.recvQ > l[0]) {
			listeners[s.local] = [2]uint64{s.recvQ, s.sendQ}
		}
	}
	groups = map[string]ssGroup{}
	for _, s := range socks {
		if s.state == "LISTEN" {
			continue
		}
		key := fmt.Sprintf("client/%d", s.peer)
		if _, ok := listeners[s.local]; ok {
			key = fmt.Sprintf("server/%d", s.local)
		}
		g := groups[key]
		g.Sockets++
		g.RecvQ += s.recvQ
		groups[key] = g
	}
	return groups, listeners
}

// exporterGroup sums a group's series over the attribution labels.
func exporterGroup(m e2e.Metrics, metric, role string, port uint16) float64 {
	var v float64
	for _, x := range m.Select(metric, map[string]string{"role": role, "port": strconv.Itoa(int(port))}) {
		v += x
	}
	return v
}

func TestSocketsEndToEnd(t *testing.T) {
	e2e.Require(t)
	testenv.RequireBinary(t, "ss", "iproute2")
	ns := testenv.NewNetNS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// Two services with known unread bytes, one listener that never accepts, and a load that drives a third
	// service's locked 8 KiB buffers full until they drop. The client ends of all of them are the client
	// groups, one per service port.
	var svcA, svcB *trafficgen.Conns
	var backlogged *trafficgen.Backlogged
	var load *trafficgen.Load
	err := ns.Do(func() (err error) {
		if svcA, err = trafficgen.Unread(ctx, trafficgen.UnreadConfig{Conns: 5, Bytes: 1000}); err != nil {
			return err
		}
		if svcB, err = trafficgen.Unread(ctx, trafficgen.UnreadConfig{Conns: 3, Bytes: 30000}); err != nil {
			return err
		}
		if backlogged, err = trafficgen.FullAcceptQueue(ctx, "127.0.0.1:0", 4, 0); err != nil {
			return err
		}
		// Duration bounds each run of the load below, the wait for full buffers included.
		load, err = trafficgen.NewLoad(ctx, trafficgen.Options{Conns: 8, Duration: fullWait})
		return err
	})
	for _, c := range []interface{ Close() error }{svcA, svcB, backlogged, load} {
		if c != nil {
			t.Cleanup(func() { c.Close() })
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := load.RunUntilDrops(ctx, 1); err != nil {
		t.Fatal(err)
	}
	fullAfterDrops, _ := fullConns(load)
	// Dropping once does not mean the buffers are full now (a collapse frees room, and under -race the load
	// may stop early), so the load goes on, for at most fullWait, until the kernel says every one of its
	// server sockets is full; the comparison below then needs at least one.
	var fullErr error
	res, err := load.RunUntil(ctx, func() bool {
		n, err := fullConns(load)
		if err != nil {
			fullErr = err
			return true
		}
		return n == len(load.Server().Conns())
	})
	if err == nil {
		err = fullErr
	}
	if err != nil {
		t.Fatal(err)
	}
	n, err := fullConns(load)
	if err != nil || n == 0 {
		t.Fatalf("after %s, %d of the load's %d server sockets are full (%v): the comparison needs some",
			res, n, len(load.Server().Conns()), err)
	}
	t.Logf("load's full server sockets: %d at the first drop, %d after %s", fullAfterDrops, n, res)

	exp := e2e.StartExporter(t, ns)
	expPort, _ := strconv.Atoi(exp.Addr[strings.LastIndexByte(exp.Addr, ':')+1:])
	m := exp.Scrape(t)
	ss := runSS(t, ns)
	if got := m[`sockbuf_scrape_collector_success{collector="sockets"}`]; got != 1 {
		t.Fatalf("sockets collector success = %g\n%s", got, exp.Logs())
	}

	groups, listeners := groupSS(ss)
	t.Logf("ss groups: %v", groups)
	portA, portB := uint16(svcA.Servers[0].Port()), uint16(svcB.Servers[0].Port())
	portFull, portLoad := uint16(backlogged.Server.Port()), uint16(load.Port())
	for _, p := range []uint16{portA, portB, portFull, portLoad} {
		for _, role := range []string{"server", "client"} {
			want := groups[fmt.Sprintf("%s/%d", role, p)]
			got := ssGroup{
				Sockets: uint64(exporterGroup(m, "sockbuf_sockets", role, p)),
				RecvQ:   uint64(exporterGroup(m, "sockbuf_recv_queue_bytes", role, p)),
			}
			if p == portLoad {
				// Retransmissions into the load's full buffers may move Recv-Q between the scrape and ss.
				got.RecvQ, want.RecvQ = 0, 0
			}
			if got != want || want.Sockets == 0 {
				t.Errorf("group %s port %d: exporter %+v, ss %+v", role, p, got, want)
			}
		}
	}
	// Every group ss sees is exported with the same numbers (the exporter's own port aside: the scrape's
	// connection comes and goes).
	for key, want := range groups {
		role, port, _ := strings.Cut(key, "/")
		p, _ := strconv.Atoi(port)
		if p == expPort {
			continue
		}
		if got := exporterGroup(m, "sockbuf_sockets", role, uint16(p)); uint64(got) != want.Sockets {
			t.Errorf("group %s: exporter has %g sockets, ss %d", key, got, want.Sockets)
		}
	}
	// The known unread bytes, independently of ss.
	if got := exporterGroup(m, "sockbuf_recv_queue_bytes", "server", portA); got != 5*1000 {
		t.Errorf("service A Recv-Q sum = %g, want 5000", got)
	}
	if got := exporterGroup(m, "sockbuf_recv_queue_bytes", "server", portB); got != 3*30000 {
		t.Errorf("service B Recv-Q sum = %g, want 90000", got)
	}
	if got := exporterGroup(m, "sockbuf_recv_queue_max_bytes", "server", portB); got != 30000 {
		t.Errorf("service B Recv-Q max = %g, want 30000", got)
	}

	// The listener that never accepts: queue length and limit as ss shows them (5 queued over a backlog of 4).
	l := listeners[portFull]
	lp := strconv.Itoa(int(portFull))
	if got, want := m[`sockbuf_listen_queue_length{port="`+lp+`"}`], float64(l[0]); got != want || want != 5 {
		t.Errorf("listen queue length = %g, ss %g (want 5)", got, want)
	}
	if got, want := m[`sockbuf_listen_queue_limit{port="`+lp+`"}`], float64(l[1]); got != want || want != 4 {
		t.Errorf("listen queue limit = %g, ss %g (want 4)", got, want)
	}

	// The load's server sockets were driven full: the exporter counts the ones the kernel says are full
	// (asked right after the scrape; a retransmission may change one in between, hence a few tries).
	for try := 1; ; try++ {
		n, err := fullConns(load)
		if err != nil {
			t.Fatal(err)
		}
		wantFull := float64(n)
		got := exporterGroup(m, "sockbuf_rcvbuf_full_sockets", "server", portLoad)
		if got == wantFull && wantFull > 0 {
			break
		}
		if try == 3 {
			t.Errorf("full sockets of the load = %g, kernel says %g (must be > 0)", got, wantFull)
			break
		}
		m = exp.Scrape(t)
	}
	for _, p := range []uint16{portA, portB} {
		if got := exporterGroup(m, "sockbuf_rcvbuf_full_sockets", "server", p); got != 0 {
			t.Errorf("port %d: %g full sockets, want 0", p, got)
		}
	}

	// Zero windows without --collector.sockets.tcp-info: the full sockets were looked up one by one, and the
	// exporter counts the load's server sockets that the kernel says advertise a zero window (tcpi_rcv_wnd).
	for try := 1; ; try++ {
		want, err := zeroWindowConns(load)
		if err != nil {
			t.Fatal(err)
		}
		got := exporterGroup(m, "sockbuf_rcv_window_zero_sockets", "server", portLoad)
		if got == float64(want) && m["sockbuf_rcv_window_unchecked_sockets"] == 0 {
			t.Logf("zero-window sockets of the load: %d", want)
			break
		}
		if try == 3 {
			t.Errorf("zero-window sockets of the load = %g (unchecked %g), kernel says %d", got, m["sockbuf_rcv_window_unchecked_sockets"], want)
			break
		}
		m = exp.Scrape(t)
	}

	// Drops: counted while the sockets live, kept after they close.
	drops := exporterGroup(m, "sockbuf_socket_drops_total", "server", portLoad)
	kernelDrops, err := load.ServerDrops()
	if err != nil {
		t.Fatal(err)
	}
	if drops == 0 || drops > float64(kernelDrops) {
		t.Errorf("drops of the load = %g, kernel says %d now", drops, kernelDrops)
	}
	if err := load.Close(); err != nil {
		t.Fatal(err)
	}
	m2 := exp.Scrape(t)
	if got := exporterGroup(m2, "sockbuf_sockets", "server", portLoad); got != 0 {
		t.Errorf("closed load still has %g sockets", got)
	}
	if got := exporterGroup(m2, "sockbuf_socket_drops_total", "server", portLoad); got < drops {
		t.Errorf("drops after the sockets closed = %g, was %g: the counter went down", got, drops)
	}

	// The state counts agree with ss.
	byState := map[string]float64{}
	for _, s := range runSS(t, ns) {
		byState[strings.ToLower(strings.ReplaceAll(s.state, "-", "_"))]++
	}
	if got, want := m2[`sockbuf_tcp_sockets_by_state{state="listen"}`], byState["listen"]; got != want {
		t.Errorf("listen sockets = %g, ss %g", got, want)
	}
	if got, want := m2[`sockbuf_tcp_sockets_by_state{state="established"}`], byState["estab"]; got < want-2 || got > want+2 {
		t.Errorf("established sockets = %g, ss %g (±2 for the scrape's own connection)", got, want)
	}
}

// fullWait bounds the wait for the load's receive buffers to fill.
const fullWait = 10 * time.Second

// fullConns counts the load's server sockets whose receive buffer the kernel reports full, by the
// collector's default ratio.
func fullConns(load *trafficgen.Load) (int, error) {
	n := 0
	for _, c := range load.Server().Conns() {
		mi, err := trafficgen.SocketMemInfo(c)
		if err != nil {
			return n, err
		}
		if float64(mi.RmemAlloc) >= DefaultFullRatio*float64(mi.RcvBuf) {
			n++
		}
	}
	return n, nil
}

// zeroWindowConns counts the load's server sockets whose last advertised window is zero.
func zeroWindowConns(load *trafficgen.Load) (int, error) {
	n := 0
	for _, c := range load.Server().Conns() {
		rc, err := c.SyscallConn()
		if err != nil {
			return n, err
		}
		var info *unix.TCPInfo
		var ierr error
		if err := rc.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil {
			return n, err
		}
		if ierr != nil {
			return n, ierr
		}
		if info.Rcv_wnd == 0 {
			n++
		}
	}
	return n, nil
}

// TestSocketsCardinality checks that 20,000 connections over 2,000 ports stay within the group cap.
func TestSocketsCardinality(t *testing.T) {
	e2e.Require(t)
	if testing.Short() {
		// Missing: a -short run in CI must not pass by skipping this.
		testenv.Missing(t, "-short: the cardinality test opens 20,000 connections")
	}
	// A namespace of its own TCP hash table, so that the dump walks only its sockets.
	ns := testenv.NewIsolatedNetNS(t, 1024)
	// The descriptors are spread over two processes: RLIMIT_NOFILE's hard limit may be 20,000 and root
	// may lack CAP_SYS_RESOURCE to raise it. The listeners never accept, so the server ends cost none.
	restore, err := trafficgen.RaiseNoFile(16_000)
	if err != nil {
		testenv.Missing(t, "raising RLIMIT_NOFILE: %v", err)
	}
	t.Cleanup(func() { restore() })
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const basePort, ports, conns = 20000, 2000, 20_000
	var listeners, dialed *trafficgen.Conns
	err = ns.Do(func() (err error) {
		listeners, err = trafficgen.Fanout(ctx, trafficgen.FanoutConfig{Ports: ports, BasePort: basePort,
			NoAccept: true, ListenOnly: true})
		return err
	})
	if listeners != nil {
		t.Cleanup(func() { listeners.Close() })
	}
	if err != nil {
		t.Fatal(err)
	}
	startInNS(t, ns, "trafficgen: port=", buildTrafficgen(t), "--mode=fanout", "--fanout-side=dial",
		fmt.Sprint("--port=", basePort), fmt.Sprint("--ports=", ports), fmt.Sprint("--conns=", conns/2), "--hold=3m")
	err = ns.Do(func() (err error) {
		dialed, err = trafficgen.Fanout(ctx, trafficgen.FanoutConfig{Ports: ports, BasePort: basePort,
			Conns: conns / 2, DialOnly: true})
		return err
	})
	if dialed != nil {
		t.Cleanup(func() { dialed.Close() })
	}
	if err != nil {
		t.Fatal(err)
	}
	const maxGroups = 200
	exp := e2e.StartExporter(t, ns, fmt.Sprintf("--collector.sockets.max-groups=%d", maxGroups))
	m := exp.Scrape(t)
	t.Logf("%g sockets in %d series, %g groups folded, scrape of the sockets collector took %gs",
		m.Sum("sockbuf_sockets"), len(m.Select("sockbuf_sockets", nil)), m["sockbuf_socket_groups_folded"],
		m[`sockbuf_scrape_collector_duration_seconds{collector="sockets"}`])
	for _, name := range []string{"sockbuf_sockets", "sockbuf_recv_queue_bytes", "sockbuf_rcvbuf_full_sockets",
		"sockbuf_socket_drops_total", "sockbuf_listen_queue_length"} {
		if n := len(m.Select(name, nil)); n > maxGroups {
			t.Errorf("%s has %d series, cap is %d", name, n, maxGroups)
		}
	}
	// 2,000 server groups and 2,000 client groups (one per port), plus the exporter's own two.
	if got := m["sockbuf_socket_groups_folded"]; got < 4000-maxGroups {
		t.Errorf("folded groups = %g, want at least %d", got, 4000-maxGroups)
	}
	if got := m.Sum("sockbuf_sockets"); got < 40_000 || got > 40_004 {
		t.Errorf("sockets over all groups = %g, want 40,000 (+ the scrape's own): folding must not lose any", got)
	}
	if len(m.Select("sockbuf_sockets", map[string]string{"port": "other"})) != 2 {
		t.Errorf("want one port=\"other\" group per role: %v", m.Select("sockbuf_sockets", map[string]string{"port": "other"}))
	}
}

// TestSocketsAttribution starts a service inside a cgroup the test creates and checks that its sockets
// carry the cgroup's name, and the process name with --collector.sockets.process.
func TestSocketsAttribution(t *testing.T) {
	e2e.Require(t)
	ns := testenv.NewNetNS(t)
	bin := e2e.BuildExporter(t)

	// Without a cgroup v2 hierarchy the label is empty and nothing fails.
	noCgroup := e2e.StartExporter(t, ns, "--collector.sockets.cgroup-root="+filepath.Join(t.TempDir(), "none"))
	m := noCgroup.Scrape(t)
	if got := m[`sockbuf_scrape_collector_success{collector="sockets"}`]; got != 1 {
		t.Errorf("without cgroup v2: sockets collector success = %g", got)
	}
	for k := range m.Select("sockbuf_sockets", nil) {
		if !strings.Contains(k, `cgroup=""`) {
			t.Errorf("without cgroup v2: %s has a cgroup", k)
		}
	}

	// `ip netns exec` hides /sys/fs/cgroup from the processes it starts: they see the test's own mount.
	mount := testenv.MountCgroup2(t)
	name := fmt.Sprintf("sbtest-%d.scope", os.Getpid())
	cg := testenv.NewCgroup(t, mount, name)

	// The service: a second exporter, moved into the cgroup by its shell before it execs, so that its
	// listener (and the sockets it accepts, which inherit the listener's cgroup) belong to the cgroup.
	port := e2e.FreePort(t, ns)
	startInNS(t, ns, "", "sh", "-c", `echo $$ > "$1/cgroup.procs" && exec "$2" --web.listen-address="127.0.0.1:$3"`,
		"sh", cg, bin, strconv.Itoa(port))
	const conns = 3
	var held []net.Conn
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	err := ns.Do(func() error {
		for len(held) < conns {
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				if time.Now().After(deadline) {
					return fmt.Errorf("service did not listen: %w", err)
				}
				time.Sleep(50 * time.Millisecond)
				continue
			}
			held = append(held, c)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	exp := e2e.StartExporter(t, ns, "--collector.sockets.process", "--collector.sockets.cgroup-root="+mount)
	m = exp.Scrape(t)
	p := strconv.Itoa(port)
	t.Logf("series of the service's port: %v", m.Select("sockbuf_sockets", map[string]string{"port": p}))
	if got := m[`sockbuf_sockets{cgroup="`+name+`",port="`+p+`",process="sockbuf_exporte",role="server"}`]; got != conns {
		t.Errorf("service sockets labelled with cgroup %s and process sockbuf_exporte = %g, want %d; service port series:\n%v",
			name, got, conns, m.Select("sockbuf_sockets", map[string]string{"port": p}))
	}
	// The test's own ends of the connections: this process' cgroup and name.
	self := filepath.Base(os.Args[0])
	if len(self) > 15 {
		self = self[:15] // comm is truncated to TASK_COMM_LEN-1
	}
	if got := exporterGroup(m, "sockbuf_sockets", "client", uint16(port)); got != conns {
		t.Errorf("client sockets to the service = %g, want %d", got, conns)
	}
	if n := len(m.Select("sockbuf_sockets", map[string]string{"role": "client", "port": p, "process": self})); n != 1 {
		t.Errorf("client group with process %q: %d series; have %v", self, n,
			m.Select("sockbuf_sockets", map[string]string{"role": "client", "port": p}))
	}
}

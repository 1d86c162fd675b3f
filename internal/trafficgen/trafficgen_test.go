package trafficgen

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

func TestParseNetstat(t *testing.T) {
	in := "TcpExt: SyncookiesSent PruneCalled RcvPruned\n" +
		"TcpExt: 0 12 3\n" +
		"Tcp: RtoAlgorithm MaxConn InSegs\n" +
		"Tcp: 1 -1 18446744073709551615\n"
	got, err := ParseNetstat(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := Netstat{
		"TcpExt": {"SyncookiesSent": 0, "PruneCalled": 12, "RcvPruned": 3},
		// MaxConn is -1, not a counter: left out.
		"Tcp": {"RtoAlgorithm": 1, "InSegs": 18446744073709551615},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseNetstat (-want +got):\n%s", diff)
	}
	for _, bad := range []string{
		"TcpExt: A B\n",                  // no value line
		"TcpExt: A B\nTcpExt: 1\n",       // count mismatch
		"TcpExt: A B\nIpExt: 1 2\n",      // section mismatch
		"TcpExt: A\nTcpExt: 1\nTcp: A\n", // second pair cut
	} {
		if _, err := ParseNetstat(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseNetstat(%q): no error", bad)
		}
	}
	after := Netstat{"TcpExt": {"PruneCalled": 20, "RcvPruned": 1, "New": 5}}
	if diff := cmp.Diff(Netstat{"TcpExt": {"PruneCalled": 8, "RcvPruned": 0}}, after.Sub(got)); diff != "" {
		t.Errorf("Sub (-want +got):\n%s", diff)
	}
}

// inNetNS runs fn inside a fresh namespace and fails the test on error.
func inNetNS(t *testing.T, fn func() error) *testenv.NetNS {
	t.Helper()
	ns := testenv.NewNetNS(t)
	if err := ns.Do(fn); err != nil {
		t.Fatal(err)
	}
	return ns
}

// checkRecipe runs a pruning recipe in a fresh namespace until every TcpExt field of want has risen, and
// fails the test when the recipe stops for another reason. It returns the namespace for further checks.
func checkRecipe(t *testing.T, recipe func(context.Context, Options) (Result, error), opts Options, want ...string) *testenv.NetNS {
	t.Helper()
	return inNetNS(t, func() error {
		before, err := ReadNetstat()
		if err != nil {
			return err
		}
		opts.Until = Moved(before, want...)
		res, err := recipe(context.Background(), opts)
		if err != nil {
			return err
		}
		after, err := ReadNetstat()
		if err != nil {
			return err
		}
		d := after.Sub(before)["TcpExt"]
		t.Logf("%s; TcpExt deltas: PruneCalled=%d RcvPruned=%d TCPRcvCollapsed=%d OfoPruned=%d TCPRcvQDrop=%d TCPOFOQueue=%d",
			res, d["PruneCalled"], d["RcvPruned"], d["TCPRcvCollapsed"], d["OfoPruned"], d["TCPRcvQDrop"], d["TCPOFOQueue"])
		if res.Stopped != StoppedUntil {
			t.Errorf("%v did not all rise: %s", want, res)
		}
		return nil
	})
}

func TestPrune(t *testing.T) {
	checkRecipe(t, Prune, Options{Duration: 20 * time.Second}, "PruneCalled", "TCPRcvCollapsed")
}

// TestPruneData checks the recipe that makes RcvPruned rise every time: the 1-byte load above gets there
// only on some sets of connections.
func TestPruneData(t *testing.T) {
	checkRecipe(t, PruneData, Options{Conns: 8, Duration: 10 * time.Second}, "PruneCalled", "RcvPruned", "TCPRcvQDrop")
}

func TestPruneOfo(t *testing.T) {
	nft := testenv.RequireBinary(t, "nft", "nftables")
	ns := checkRecipe(t, PruneOfo, Options{Conns: 8, Duration: 10 * time.Second}, "OfoPruned")
	// The namespace's sysctl is back, and the nft table gone.
	if got := strings.TrimSpace(ns.MustRun(t, "cat", "/proc/sys/net/ipv4/tcp_retrans_collapse")); got != "1" {
		t.Errorf("tcp_retrans_collapse = %s after PruneOfo, want 1", got)
	}
	if out := ns.MustRun(t, nft, "list", "tables"); strings.Contains(out, "sockbuf_trafficgen") {
		t.Errorf("nft table left behind:\n%s", out)
	}
}

func TestPruneRenewKeepsPruning(t *testing.T) {
	inNetNS(t, func() error {
		ctx := context.Background()
		l, err := NewLoad(ctx, Options{Duration: 3500 * time.Millisecond, Renew: time.Second})
		if err != nil {
			return err
		}
		defer l.Close()
		var last uint64
		var seconds []uint64
		l.opts.CheckEvery = time.Second
		res, err := l.RunUntil(ctx, func() bool {
			n, _ := ReadNetstat()
			v := n["TcpExt"]["PruneCalled"]
			seconds = append(seconds, v-last)
			last = v
			return false
		})
		t.Logf("%s; PruneCalled per second: %v", res, seconds)
		for i, n := range seconds {
			if n == 0 {
				t.Errorf("no pruning in second %d: %v", i+1, seconds)
			}
		}
		return err
	})
}

func TestUnread(t *testing.T) {
	ns := testenv.NewNetNS(t)
	var c *Conns
	if err := ns.Do(func() (err error) {
		c, err = Unread(context.Background(), UnreadConfig{Conns: 5, Bytes: 3000})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	port := c.Servers[0].Port()
	// ss agrees, seen from outside the process: five established server-side sockets with 3000 bytes each.
	out := ns.MustRun(t, "ss", "-Htn", "state", "established", "sport", "= :"+itoa(port))
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 {
		t.Fatalf("ss shows %d server sockets, want 5:\n%s", len(lines), out)
	}
	for _, l := range lines {
		if f := strings.Fields(l); f[0] != "3000" {
			t.Errorf("Recv-Q %s, want 3000: %s", f[0], l)
		}
	}
}

func TestFullAcceptQueue(t *testing.T) {
	ns := testenv.NewNetNS(t)
	var b *Backlogged
	var before Netstat
	if err := ns.Do(func() (err error) {
		if before, err = ReadNetstat(); err != nil {
			return err
		}
		b, err = FullAcceptQueue(context.Background(), "", 4, 3)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	n, limit, err := AcceptQueue(b.Server.Listener())
	if err != nil {
		t.Fatal(err)
	}
	if n != 5 || limit != 4 {
		t.Errorf("accept queue %d/%d, want 5/4", n, limit)
	}
	out := ns.MustRun(t, "ss", "-Htln", "sport", "= :"+itoa(b.Server.Port()))
	if f := strings.Fields(out); len(f) < 3 || f[1] != "5" || f[2] != "4" {
		t.Errorf("ss shows %q, want Recv-Q 5 and Send-Q 4", out)
	}
	var after Netstat
	ns.Do(func() (err error) { after, err = ReadNetstat(); return err })
	if d := after.Sub(before)["TcpExt"]["ListenOverflows"]; d < 3 {
		t.Errorf("ListenOverflows rose by %d, want at least the 3 pending SYNs", d)
	}
}

func TestFanout(t *testing.T) {
	ns := testenv.NewNetNS(t)
	restore, err := RaiseNoFile(4096)
	if err != nil {
		t.Fatal(err)
	}
	defer restore()
	// Listeners and clients opened by separate calls, as they would be in separate processes.
	var split, dialed *Conns
	if err := ns.Do(func() (err error) {
		if split, err = Fanout(context.Background(), FanoutConfig{Ports: 3, BasePort: 20000, ListenOnly: true, NoAccept: true}); err != nil {
			return err
		}
		dialed, err = Fanout(context.Background(), FanoutConfig{Ports: 3, BasePort: 20000, Conns: 9, DialOnly: true})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer split.Close()
	defer dialed.Close()
	for _, s := range split.Servers {
		if n, _, err := AcceptQueue(s.Listener()); err != nil || n != 3 {
			t.Errorf("port %d: accept queue %d (%v), want 3", s.Port(), n, err)
		}
	}

	var c *Conns
	if err := ns.Do(func() (err error) {
		c, err = Fanout(context.Background(), FanoutConfig{Ports: 20, Conns: 200})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := len(c.serverConns()); got != 200 {
		t.Errorf("%d server-side connections, want 200", got)
	}
	ports := map[string]int{}
	for _, cl := range c.Clients.Conns {
		ports[cl.RemoteAddr().String()]++
	}
	if len(ports) != 20 {
		t.Errorf("clients reach %d ports, want 20", len(ports))
	}
	for p, n := range ports {
		if n != 10 {
			t.Errorf("port %s has %d connections, want 10", p, n)
		}
	}
}

// TestDropsThenClose shows the recipe for per-socket drops: one connection pruned until its server-side
// socket has dropped data, visible in skmeminfo.
func TestDropsThenClose(t *testing.T) {
	inNetNS(t, func() error {
		ctx := context.Background()
		l, err := NewLoad(ctx, Options{Conns: 1, Duration: 5 * time.Second})
		if err != nil {
			return err
		}
		defer l.Close()
		res, d, err := l.RunUntilDrops(ctx, 1)
		t.Logf("%s; drops %d", res, d)
		return err
	})
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestBackground(t *testing.T) {
	ns := testenv.NewNetNS(t)
	stop := Background(ns.Do, Options{Duration: 10 * time.Second})
	time.Sleep(300 * time.Millisecond)
	res, err := stop()
	if err != nil {
		t.Fatal(err)
	}
	if res.Stopped != StoppedUntil || res.Writes == 0 || res.Elapsed > 2*time.Second {
		t.Errorf("stop did not end a running load promptly: %s", res)
	}
	var n Netstat
	ns.Do(func() (err error) { n, err = ReadNetstat(); return err })
	if n["TcpExt"]["PruneCalled"] == 0 {
		t.Errorf("no pruning in the namespace after %s", res)
	}
	if again, _ := stop(); again != res {
		t.Errorf("second stop returned %v, want %v", again, res)
	}
}

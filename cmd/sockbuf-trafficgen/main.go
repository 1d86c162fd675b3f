// Command sockbuf-trafficgen drives loopback traffic that makes the kernel prune, collapse and drop TCP
// receive data, or holds connections in the states sockbuf_exporter's socket metrics describe. It is for use
// by hand, by the bench scripts and by end-to-end tests; run it inside a network namespace of its own:
//
//	ip netns add sbdemo && ip -n sbdemo link set lo up
//	ip netns exec sbdemo sockbuf-trafficgen --mode=prune --duration=10s --renew=1s --drop-every=50
//	ip netns exec sbdemo sockbuf-trafficgen --mode=unread --conns=10 --unread-bytes=4096 --port=9000 --hold=1m
//
// Every mode is bounded in time (--duration, --hold) and stops early on SIGINT or SIGTERM. Lines starting
// with "trafficgen:" on standard output are meant for scripts: key=value pairs, the listening port first.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/sockbuf/sockbuf_exporter/internal/trafficgen"
)

func main() {
	app := kingpin.New("sockbuf-trafficgen", "Loopback traffic that fills TCP receive buffers, for testing sockbuf_exporter.")
	var (
		mode      = app.Flag("mode", "prune: small locked receive buffers, 1-byte writes, never read (PruneCalled, TCPRcvCollapsed; RcvPruned only sometimes); shrink: fill autotuned buffers, shrink SO_RCVBUF under the queued data, keep writing (RcvPruned, TCPRcvQDrop, every time); hole: data queued out of order behind a segment nft drops, buffers shrunk, then the hole filled (OfoPruned, every time; needs nft); drops: prune until the server sockets drop data, then hold them; unread: connections with --unread-bytes left in each server-side receive queue; backlog: a listener that never accepts, its queue full, --pending more connecting; fanout: --conns connections over --ports listening ports.").Default("prune").Enum("prune", "shrink", "hole", "drops", "unread", "backlog", "fanout")
		addr      = app.Flag("address", "Loopback address to listen on.").Default("127.0.0.1").String()
		port      = app.Flag("port", "Listening port; 0 lets the kernel choose (printed). Ignored by fanout.").Default("0").Int()
		conns     = app.Flag("conns", "Client connections.").Default(strconv.Itoa(trafficgen.DefaultConns)).Int()
		rcvbuf    = app.Flag("rcvbuf", "SO_RCVBUF of the prune/drops listener, set before listen(); -1 leaves autotuning on (no RcvPruned then).").Default(strconv.Itoa(trafficgen.DefaultRcvBuf)).Int()
		chunk     = app.Flag("chunk", "Bytes per write in prune/drops mode.").Default("1").Int()
		duration  = app.Flag("duration", "Longest the prune/drops load runs.").Default(trafficgen.DefaultDuration.String()).Duration()
		maxWrites = app.Flag("max-writes", "Most writes in prune/drops mode.").Default(strconv.Itoa(trafficgen.DefaultMaxWrites)).Int()
		renew     = app.Flag("renew", "Reopen all prune connections this often, so pruning goes on for all of --duration; 0 never.").Default("0").Duration()
		dropEvery = app.Flag("drop-every", "With nft, drop one in this many data packets to the listener (adds OfoPruned); 0 drops none.").Default("0").Int()
		minDrops  = app.Flag("min-drops", "drops mode: server-side skmeminfo drops to reach.").Default("1").Uint64()
		unread    = app.Flag("unread-bytes", "unread mode: bytes left in each server-side receive queue.").Default("4096").Int()
		backlog   = app.Flag("backlog", "backlog mode: listen() backlog; the queue holds backlog+1.").Default("8").Int()
		pending   = app.Flag("pending", "backlog mode: further connections left knocking (their SYNs are dropped).").Default("4").Int()
		ports     = app.Flag("ports", "fanout mode: listening ports, --port, --port+1, ... (kernel-chosen when --port is 0).").Default("10").Int()
		side      = app.Flag("fanout-side", "fanout mode: both ends here, or only the listeners (never accepting: no descriptor per connection), or only the clients (dialing --port.. opened by another process). Splitting keeps each process under RLIMIT_NOFILE.").Default("both").Enum("both", "listen", "dial")
		hold      = app.Flag("hold", "How long to keep the connections open after setting them up (prune: after the load).").Default("0s").Duration()
	)
	app.HelpFlag.Short('h')
	kingpin.MustParse(app.Parse(os.Args[1:]))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	listen := net.JoinHostPort(*addr, strconv.Itoa(*port))
	opts := trafficgen.Options{
		Addr: listen, Conns: *conns, RcvBuf: *rcvbuf, Chunk: *chunk,
		Duration: *duration, MaxWrites: *maxWrites, Renew: *renew,
	}
	before, err := trafficgen.ReadNetstat()
	fatal(err)

	var closer interface{ Close() error }
	switch *mode {
	case "prune", "shrink", "drops":
		if *mode == "shrink" {
			opts.RcvBuf, opts.Renew = -1, 0
		}
		l, err := trafficgen.NewLoad(ctx, opts)
		fatal(err)
		closer = l
		if *mode == "shrink" {
			fatalClose(l.Shrink(ctx, 0, 0), l)
		}
		fmt.Printf("trafficgen: port=%d mode=%s conns=%d\n", l.Port(), *mode, *conns)
		if *dropEvery > 0 {
			remove, err := trafficgen.AddDropRule(l.Port(), *dropEvery)
			fatalClose(err, l)
			defer remove()
		}
		var res trafficgen.Result
		if *mode == "drops" {
			var drops uint64
			res, drops, err = l.RunUntilDrops(ctx, *minDrops)
			fmt.Printf("trafficgen: socket_drops=%d\n", drops)
		} else {
			res, err = l.Run(ctx)
		}
		fatalClose(err, l)
		fmt.Printf("trafficgen: writes=%d bytes=%d renews=%d elapsed=%s stopped=%q\n",
			res.Writes, res.Bytes, res.Renews, res.Elapsed.Round(time.Millisecond), res.Stopped)
	case "hole":
		res, err := trafficgen.PruneOfo(ctx, opts)
		fatal(err)
		fmt.Printf("trafficgen: mode=hole writes=%d elapsed=%s\n", res.Writes, res.Elapsed.Round(time.Millisecond))
	case "unread":
		c, err := trafficgen.Unread(ctx, trafficgen.UnreadConfig{
			Listen: trafficgen.ListenConfig{Addr: listen}, Conns: *conns, Bytes: *unread,
		})
		fatal(err)
		closer = c
		fmt.Printf("trafficgen: port=%d mode=unread conns=%d unread_bytes=%d\n", c.Servers[0].Port(), *conns, *unread)
	case "backlog":
		b, err := trafficgen.FullAcceptQueue(ctx, listen, *backlog, *pending)
		fatal(err)
		closer = b
		fmt.Printf("trafficgen: port=%d mode=backlog queued=%d limit=%d pending=%d\n",
			b.Server.Port(), len(b.Queued.Conns), *backlog, b.Pending())
	case "fanout":
		restore, err := trafficgen.RaiseNoFile(uint64(2**conns + *ports + 1024))
		if err != nil {
			fmt.Fprintln(os.Stderr, "sockbuf-trafficgen: warning:", err)
		}
		if restore != nil {
			defer restore()
		}
		c, err := trafficgen.Fanout(ctx, trafficgen.FanoutConfig{
			Host: *addr, Ports: *ports, BasePort: *port, Conns: *conns,
			NoAccept: *side == "listen", ListenOnly: *side == "listen", DialOnly: *side == "dial",
		})
		fatal(err)
		closer = c
		first := *port
		if len(c.Servers) > 0 {
			first = c.Servers[0].Port()
		}
		fmt.Printf("trafficgen: port=%d mode=fanout side=%s ports=%d conns=%d\n", first, *side, *ports, *conns)
	}

	if *hold > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(*hold):
		}
	}
	after, err := trafficgen.ReadNetstat()
	fatalClose(err, closer)
	delta := after.Sub(before)
	for _, f := range append(trafficgen.PruneCounters, "TCPOFOQueue", "TCPRcvQDrop", "TCPZeroWindowDrop", "TCPBacklogDrop", "ListenOverflows", "ListenDrops") {
		if v, ok := delta.Get("TcpExt", f); ok {
			fmt.Printf("trafficgen: TcpExt.%s=%d\n", f, v)
		}
	}
	fatal(closer.Close())
}

func fatalClose(err error, c interface{ Close() error }) {
	if err != nil {
		c.Close()
		fatal(err)
	}
}

func fatal(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "sockbuf-trafficgen:", err)
		os.Exit(1)
	}
}

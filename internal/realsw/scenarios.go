package realsw

import (
	"context"
	"testing"
	"time"
)

// Scenario is one way real software uses the receive path, run for a bounded time in an Env's namespace.
type Scenario struct {
	Name string
	// Doc says what runs and what the kernel does with it (docs/harm.md has the measured figures).
	Doc string
	// Run starts the servers it needs and drives its clients for about d (never more than d + 40s).
	Run func(ctx context.Context, e *Env, d time.Duration) error
	// Prepare, when set, runs on the test's goroutine before the exporter starts: it makes what Run needs
	// from the host (a memory cgroup) and skips the test (fails it in CI) when the host cannot.
	Prepare func(t testing.TB, e *Env)
}

// The client settings the scenarios share: a reader that reads in bursts, sleeping 1ms after every 8 KiB,
// against a sender whose segments are small, falls behind in the receive buffer's truesize accounting long
// before it falls behind in bytes.
const (
	burstPause = time.Millisecond
	burstEvery = 8 << 10
	// 64 KiB, the SO_RCVBUF a tuning guide or a copied snippet sets; the kernel doubles it to rb 131072.
	pinnedRcvbuf = 64 << 10
)

// PinnedSmallWrites: a Python requests client pinned to SO_RCVBUF 64 KiB reads in bursts from a Node.js
// server that streams its JSON in ~230-byte writes. Each tiny segment costs far more truesize than its
// payload, the pinned buffer cannot grow, and the kernel collapses the queue (TCPRcvCollapsed) and then
// drops segments (RcvPruned, TCPRcvQDrop).
var PinnedSmallWrites = Scenario{
	Name: "pinned-small-writes",
	Doc:  "requests pinned to SO_RCVBUF=64KiB via HTTPAdapter socket_options, reading in bursts, vs Node.js writing 230-byte chunks",
	Run: func(ctx context.Context, e *Env, d time.Duration) error {
		url := e.NodeSmallWrites()
		_, err := e.Requests(ctx, Client{URL: url, Parallel: 3, Requests: 100000, Duration: d,
			RcvbufBytes: pinnedRcvbuf, Pause: burstPause, PauseEvery: burstEvery})
		return err
	},
}

// UnpinnedSmallWrites is PinnedSmallWrites after the correct fix, the SO_RCVBUF option removed: PruneCalled
// still rises (tcp_prune_queue counts on entry, then tcp_clamp_window just grows sk_rcvbuf) but nothing is
// collapsed or dropped.
var UnpinnedSmallWrites = Scenario{
	Name: "unpinned-small-writes",
	Doc:  "the same requests client without SO_RCVBUF (the fix), same server",
	Run: func(ctx context.Context, e *Env, d time.Duration) error {
		url := e.NodeSmallWrites()
		_, err := e.Requests(ctx, Client{URL: url, Parallel: 3, Requests: 100000, Duration: d,
			Pause: burstPause, PauseEvery: burstEvery})
		return err
	},
}

// SlowReaderNginx: nginx sends a 460 KB file in full-sized segments to requests clients (one pinned, two
// not) that read 64 KiB every 10ms. The window closes (TCPWantZeroWindowAdv, TCPToZeroWindowAdv), nginx
// stalls, nothing is pruned; nginx's window probes and retransmissions into the closed window are discarded
// and counted in the readers' sk_drops.
var SlowReaderNginx = Scenario{
	Name: "slow-reader-nginx",
	Doc:  "nginx serving 460 KB JSON to 3 requests clients (1 pinned, 2 not) that sleep 10ms after every 64 KiB",
	Run: func(ctx context.Context, e *Env, d time.Duration) error {
		url := e.Nginx()
		return requestsTogether(ctx, e,
			Client{URL: url, Parallel: 1, Requests: 100000, Duration: d,
				RcvbufBytes: pinnedRcvbuf, Pause: 10 * time.Millisecond, PauseEvery: 64 << 10},
			Client{URL: url, Parallel: 2, Requests: 100000, Duration: d,
				Pause: 10 * time.Millisecond, PauseEvery: 64 << 10})
	},
}

// PausedReaderUploads: 40 curl uploads of 460 KB to a Node.js server that calls req.pause() and never reads.
// Every socket fills to its buffer and stays there, advertising a zero window; rcvbuf stays at tcp_rmem's
// default 131072 whatever tcp_rmem's max (autotuning grows a buffer only as fast as the application reads),
// and nothing is pruned.
var PausedReaderUploads = Scenario{
	Name: "paused-reader-uploads",
	Doc:  "40 curl uploads of 460 KB held open against a Node.js server that req.pause()s every body",
	Run: func(ctx context.Context, e *Env, d time.Duration) error {
		url := e.NodePausingReader()
		return e.CurlUploads(ctx, url, 40, d)
	},
}

// Healthy: heavy traffic with readers that keep up: four unpinned requests clients reading nginx's file as
// fast as they can, and one reading the Node.js small-writes server.
var Healthy = Scenario{
	Name: "healthy",
	Doc:  "4 unpinned requests clients downloading from nginx, 1 from the Node.js small-writes server, reading as fast as they can",
	Run: func(ctx context.Context, e *Env, d time.Duration) error {
		ngx := e.Nginx()
		node := e.NodeSmallWrites()
		return requestsTogether(ctx, e,
			Client{URL: node, Parallel: 1, Requests: 100000, Duration: d},
			Client{URL: ngx, Parallel: 4, Requests: 100000, Duration: d})
	},
}

// requestsTogether runs the requests clients at the same time and returns the first error.
func requestsTogether(ctx context.Context, e *Env, clients ...Client) error {
	errc := make(chan error, len(clients))
	for _, c := range clients {
		go func() {
			_, err := e.Requests(ctx, c)
			errc <- err
		}()
	}
	var first error
	for range clients {
		if err := <-errc; first == nil {
			first = err
		}
	}
	return first
}

// All lists the scenarios in the order docs/harm.md presents them.
func All() []Scenario {
	return []Scenario{PinnedSmallWrites, UnpinnedSmallWrites, SlowReaderNginx, PausedReaderUploads, Healthy}
}

package trafficgen

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Options, measured on a 2-core VM: with them PruneCalled and TCPRcvCollapsed rise within a
// second; RcvPruned comes on some sets of connections only, once the queues are compact and still over their
// buffers, after about 430,000 writes (1-4 seconds); on others every window closes first and it never
// does. PruneData (shrink.go) makes it rise every time.
const (
	DefaultConns      = 50
	DefaultRcvBuf     = 8192
	DefaultDuration   = 5 * time.Second
	DefaultMaxWrites  = 20_000_000
	DefaultCheckEvery = 20 * time.Millisecond
)

// Options configures the pruning load. Zero values take the defaults above.
type Options struct {
	// Addr is the listener's address; "127.0.0.1:0" when empty.
	Addr string
	// Conns is the number of client connections written round-robin.
	Conns int
	// RcvBuf is the listener's SO_RCVBUF, locked before listen(). Negative leaves receive-buffer
	// autotuning on, in which case the kernel grows the buffer and RcvPruned stays at 0.
	RcvBuf int
	// Chunk is the size of each write; 1 byte makes the receive queue as expensive as possible.
	Chunk int
	// Duration bounds the run in time, MaxWrites in count; the first reached ends it.
	Duration  time.Duration
	MaxWrites int
	// Until, when set, is checked every CheckEvery (and once at the start is not: the load always writes);
	// the run ends as soon as it returns true, e.g. once the kernel's counters have moved.
	Until      func() bool
	CheckEvery time.Duration
	// Renew closes and reopens all connections this often. Each connection prunes only until its receive
	// queue is full of collapsed data and its window is closed (about two seconds with the defaults), so
	// renewing keeps the kernel pruning for the whole Duration, as a Prometheus rate() over several scrapes
	// needs. Zero: never renew. Renewed connections do not get as far as RcvPruned, so leave Renew off
	// when that counter must move. Renewing opens sockets, so Run must then be called on the namespace's
	// thread.
	Renew time.Duration
}

func (o Options) withDefaults() Options {
	if o.Addr == "" {
		o.Addr = DefaultAddr
	}
	if o.Conns <= 0 {
		o.Conns = DefaultConns
	}
	if o.RcvBuf == 0 {
		o.RcvBuf = DefaultRcvBuf
	}
	if o.Chunk <= 0 {
		o.Chunk = 1
	}
	if o.Duration <= 0 {
		o.Duration = DefaultDuration
	}
	if o.MaxWrites <= 0 {
		o.MaxWrites = DefaultMaxWrites
	}
	if o.CheckEvery <= 0 {
		o.CheckEvery = DefaultCheckEvery
	}
	return o
}

// StopReason says which bound ended a run.
type StopReason string

// The bounds that end a run.
const (
	StoppedUntil     StopReason = "condition met"
	StoppedDuration  StopReason = "duration reached"
	StoppedMaxWrites StopReason = "write count reached"
	StoppedContext   StopReason = "context done"
)

// Result reports what a run did.
type Result struct {
	Writes  int           // write calls that sent at least one byte
	Bytes   int64         // bytes sent
	Renews  int           // times all connections were replaced (Options.Renew)
	Elapsed time.Duration // wall time of the run
	Stopped StopReason
}

func (r Result) String() string {
	return fmt.Sprintf("%d writes, %d bytes, %d renews in %s (%s)", r.Writes, r.Bytes, r.Renews,
		r.Elapsed.Round(time.Millisecond), r.Stopped)
}

// Load is the pruning setup: a listener with a small locked receive buffer that never reads, and clients
// connected to it. Open it with NewLoad, drive it with Run (as often as needed), release it with Close.
type Load struct {
	opts    Options
	server  *Server
	clients *Clients
}

// NewLoad opens the listener and the connections in the calling thread's network namespace.
func NewLoad(ctx context.Context, opts Options) (*Load, error) {
	opts = opts.withDefaults()
	rcvbuf := opts.RcvBuf
	if rcvbuf < 0 {
		rcvbuf = 0
	}
	srv, err := Listen(ListenConfig{Addr: opts.Addr, RcvBuf: rcvbuf})
	if err != nil {
		return nil, err
	}
	l := &Load{opts: opts, server: srv}
	if err := l.connect(ctx); err != nil {
		srv.Close()
		return nil, err
	}
	return l, nil
}

func (l *Load) connect(ctx context.Context) error {
	before := len(l.server.Conns())
	clients, err := Dial(ctx, l.server.Addr(), l.opts.Conns, DialConfig{})
	if err != nil {
		return err
	}
	// Wait for the accepts so that Close (and SocketMemInfo on the server side) sees every connection.
	if err := l.server.WaitAccepted(before+l.opts.Conns, 5*time.Second); err != nil {
		clients.Close()
		return err
	}
	l.clients = clients
	return nil
}

// Port is the listener's port, e.g. for AddDropRule.
func (l *Load) Port() int { return l.server.Port() }

// Server is the never-reading listener with its accepted connections.
func (l *Load) Server() *Server { return l.server }

// Clients are the writing side.
func (l *Load) Clients() *Clients { return l.clients }

// ServerDrops sums the kernel's per-socket drop counter (skmeminfo SK_MEMINFO_DROPS) over the accepted
// connections still open.
func (l *Load) ServerDrops() (uint64, error) {
	var total uint64
	for _, c := range l.server.Conns() {
		mi, err := SocketMemInfo(c)
		if err != nil {
			return total, err
		}
		total += uint64(mi.Drops)
	}
	return total, nil
}

// Run writes Chunk-byte pieces round-robin over the connections until one of the bounds in the Load's
// options is reached. Without Renew it may be called from any goroutine.
func (l *Load) Run(ctx context.Context) (Result, error) {
	return l.RunUntil(ctx, l.opts.Until)
}

// RunUntil is Run with until in place of Options.Until, for a condition that needs the Load itself.
func (l *Load) RunUntil(ctx context.Context, until func() bool) (Result, error) {
	o := l.opts
	o.Until = until
	start := time.Now()
	deadline := start.Add(o.Duration)
	nextCheck := start.Add(o.CheckEvery)
	chunk := make([]byte, o.Chunk)
	for i := range chunk {
		chunk[i] = 'x'
	}
	var res Result
	nextRenew := start.Add(o.Renew)
	finish := func(why StopReason) (Result, error) {
		res.Elapsed = time.Since(start)
		res.Stopped = why
		return res, nil
	}
	for {
		progress := false
		for _, c := range l.clients.Conns {
			n, err := tryWrite(c, chunk)
			if err != nil {
				res.Elapsed = time.Since(start)
				return res, fmt.Errorf("writing to %s: %w", c.RemoteAddr(), err)
			}
			if n > 0 {
				progress = true
				res.Writes++
				res.Bytes += int64(n)
				if res.Writes >= o.MaxWrites {
					return finish(StoppedMaxWrites)
				}
			}
		}
		now := time.Now()
		if ctx.Err() != nil {
			return finish(StoppedContext)
		}
		if !now.Before(deadline) {
			return finish(StoppedDuration)
		}
		if !now.Before(nextCheck) {
			nextCheck = now.Add(o.CheckEvery)
			if o.Until != nil && o.Until() {
				return finish(StoppedUntil)
			}
		}
		if o.Renew > 0 && !now.Before(nextRenew) {
			// Fresh connections start with open windows and prune again. The server side goes first: see
			// Close.
			l.server.dropConns()
			if err := l.clients.Close(); err != nil {
				return res, fmt.Errorf("closing stalled connections: %w", err)
			}
			if err := l.connect(ctx); err != nil {
				res.Elapsed = time.Since(start)
				return res, fmt.Errorf("renewing connections: %w", err)
			}
			res.Renews++
			nextRenew = time.Now().Add(o.Renew)
			continue
		}
		if progress {
			continue
		}
		// Nothing could be written: wait a little instead of spinning on EAGAIN.
		time.Sleep(time.Millisecond)
	}
}

// RunUntilDrops runs until the server-side sockets have dropped at least min packets in all (skmeminfo
// drops, the per-socket counter behind sockbuf_socket_drops_total) and returns that count. The connections
// stay open: close them with Close to see what becomes of a closed socket's drops.
func (l *Load) RunUntilDrops(ctx context.Context, min uint64) (Result, uint64, error) {
	var drops uint64
	var derr error
	res, err := l.RunUntil(ctx, func() bool {
		drops, derr = l.ServerDrops()
		return derr != nil || drops >= min
	})
	if err == nil {
		err = derr
	}
	if err == nil && drops < min {
		err = fmt.Errorf("server sockets dropped %d packets, want %d: %s", drops, min, res)
	}
	return res, drops, err
}

// Close closes every connection and the listener. The server side goes first: closing a socket with unread
// data resets the connection, so the clients' queued data is thrown away instead of being sent on by
// orphaned sockets, and the kernel's prune counters stop moving at once.
func (l *Load) Close() error {
	return errors.Join(l.server.Close(), l.clients.Close())
}

// Prune opens a Load, runs it once and closes it: PruneCalled and TCPRcvCollapsed rise in the calling
// thread's network namespace, RcvPruned too with the default locked buffer.
func Prune(ctx context.Context, opts Options) (Result, error) {
	l, err := NewLoad(ctx, opts)
	if err != nil {
		return Result{}, err
	}
	res, err := l.Run(ctx)
	return res, errors.Join(err, l.Close())
}

// Background runs Prune on a goroutine of its own, inside do (testenv.NetNS.Do, or a plain call for the
// current namespace: func(f func() error) error { return f() }), until stop is called or one of the bounds of
// opts is reached. stop ends the load, waits for its sockets to be closed and returns what it did. Use it
// with Renew to keep the kernel pruning while Prometheus scrapes; opts.Until, if set, still ends it early.
func Background(do func(func() error) error, opts Options) (stop func() (Result, error)) {
	var stopped atomic.Bool
	until := opts.Until
	opts.Until = func() bool { return stopped.Load() || (until != nil && until()) }
	if opts.CheckEvery <= 0 {
		opts.CheckEvery = 100 * time.Millisecond
	}
	type outcome struct {
		res Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		var o outcome
		o.err = do(func() error {
			var err error
			o.res, err = Prune(context.Background(), opts)
			return err
		})
		done <- o
	}()
	var once sync.Once
	var o outcome
	return func() (Result, error) {
		once.Do(func() {
			stopped.Store(true)
			o = <-done
		})
		return o.res, o.err
	}
}

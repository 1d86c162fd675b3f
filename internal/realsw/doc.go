// Package realsw runs real software — Debian's nginx, Node.js http servers, Python requests clients, curl —
// inside a network namespace a test creates, in the scenarios that decide what sockbuf_exporter's alerts,
// runbooks and dashboards say: a pinned SO_RCVBUF against small writes (data lost, CPU spent collapsing),
// the same client after the fix (buffer growth only), slow and paused readers (flow control, no pruning),
// and healthy heavy traffic. docs/harm.md records what each one does to the kernel's counters.
//
// An Env starts servers on fixed ports of its own namespace and runs clients bounded in number and time;
// every process is killed when the test ends. Nstat reads the namespace's counters, Sockets its sockets.
//
//	ns := testenv.NewNetNS(t)
//	e := realsw.New(t, ns) // skips (fails in CI) without node, nginx, curl, python3-requests
//	before := e.Nstat()
//	err := realsw.PinnedSmallWrites.Run(ctx, e, 10*time.Second)
//	delta := e.Nstat().Sub(before) // delta["TcpExtTCPRcvCollapsed"] ...
package realsw

// Package trafficgen makes the Linux kernel drop and squeeze TCP receive data on purpose, on loopback, so that
// end-to-end tests (and people, through cmd/sockbuf-trafficgen) can watch sockbuf_exporter's counters move.
//
// The main recipe is [Prune]: a listener whose SO_RCVBUF is locked small before listen() (accepted sockets
// inherit the lock, so the kernel cannot autotune the buffer up), about fifty clients with TCP_NODELAY writing
// one-byte chunks round-robin, and a server that never reads. Each one-byte segment costs the receiver a whole
// skb of truesize, so the receive queue overruns the buffer long before the window closes: the kernel calls
// tcp_prune_queue (TcpExt PruneCalled) and collapses the queue (TCPRcvCollapsed). Only on some sets of
// connections does it go on to throw data away (RcvPruned): often every window closes first. Two recipes
// make the destructive counters rise every time. [PruneData] lets autotuned connections queue 32 KiB, then
// shrinks SO_RCVBUF below it; the window the receiver already advertised stays open, and what arrives in it
// cannot fit even after collapsing (RcvPruned, TCPRcvQDrop). [PruneOfo] keeps a hole in each stream with
// an nft rule ([AddHoleRule]) while 32 KiB queue out of order behind it, shrinks the buffers, then lets the
// hole's retransmission through: the kernel prunes the out-of-order data behind it (OfoPruned).
// [AddDropRule] drops a share of the data packets at random, for loss that looks like a real network's.
//
// The building blocks other tests need are exported as well: [Listen] (a listener with a chosen backlog and
// receive buffer that accepts and holds connections without reading, or never accepts), [Dial], [Unread]
// (connections with a known number of bytes sitting in the server's receive queue), [FullAcceptQueue],
// [Fanout] (many connections spread over many listening ports), [RaiseNoFile], [SocketMemInfo] (a socket's
// skmeminfo, drops included) and [ReadNetstat] (the TcpExt and Tcp counters of the current namespace).
//
// # Network namespaces
//
// A socket belongs to the network namespace of the thread that created it, for its whole life. Every
// function here opens its sockets on the calling goroutine before it starts any goroutine of its own, so
// calling it inside testenv.NetNS.Do (a locked OS thread that joined the namespace) or in a process started
// with `ip netns exec` puts all its sockets in that namespace. Goroutines started later only accept, write
// or close, which works from any thread. For the same reason [ReadNetstat] reads /proc/thread-self/net, the
// calling thread's namespace, not /proc/self/net (the main thread's), and [AddDropRule] runs nft from the
// calling thread.
//
// # Bounds
//
// Every loop stops by itself: on a count, on a duration, on its context, or on a caller's condition,
// whichever comes first. Whatever a function opens it closes on return, except the values it returns,
// whose Close releases everything.
package trafficgen

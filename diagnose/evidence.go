package diagnose

import (
	"math"
	"time"
)

// Value is one reading that may be missing. Known false means the kernel, the network namespace or the
// collector did not provide it (a TcpExt field this kernel lacks, tcp_info not requested, no bpf), which the
// rules treat differently from a reading of 0: they lower their confidence instead of concluding "none".
type Value struct {
	V     uint64
	Known bool
}

// Val is a known reading.
func Val(v uint64) Value { return Value{V: v, Known: true} }

// Delta is the increase of a 64-bit kernel counter between two readings. A counter that went down was reset
// (its namespace recreated, the exporter pointed elsewhere): the increase over the window cannot be told,
// so the delta is unknown rather than a guess.
func Delta(first, last Value) Value {
	if !first.Known || !last.Known || last.V < first.V {
		return Value{}
	}
	return Val(last.V - first.V)
}

// Delta32 is the increase of a counter the kernel keeps in 32 bits and that wraps, such as the columns of
// /proc/net/softnet_stat: a smaller last reading is taken as one wrap. Readings above 32 bits are not such a
// counter and give an unknown delta.
func Delta32(first, last Value) Value {
	if !first.Known || !last.Known || first.V > math.MaxUint32 || last.V > math.MaxUint32 {
		return Value{}
	}
	return Val(uint64(uint32(last.V) - uint32(first.V)))
}

// Evidence is everything the rules look at, gathered over one window: counters as their increase between the
// first and the last sample, gauges as one reading per sample. It holds no file or socket: the collection
// (the /proc parsers, sock_diag dumps, the bpf tracer) fills it, and Diagnose only reads it.
type Evidence struct {
	// Window is the time between the first and the last sample.
	Window time.Duration
	// Samples is the number of socket dumps taken over the window (two or more for a diagnosis).
	Samples int
	// Sources says which kinds of evidence were available at all.
	Sources Sources

	Netstat   Netstat
	Memory    Memory
	Sysctl    Sysctl
	Softnet   Softnet
	Groups    []Group
	Listeners []Listener
	// BPF is nil when the bpf collector did not run (no privileges, no BTF, not enabled).
	BPF     *BPF
	Cgroups []CgroupMemory
}

// Sources records which evidence could be collected, so that a rule can say what it could not tell.
type Sources struct {
	Netstat  bool // /proc/net/netstat and /proc/net/snmp of the namespace
	Sockstat bool // /proc/net/sockstat
	Sysctl   bool // /proc/sys/net
	Softnet  bool // /proc/net/softnet_stat (host-wide whatever the namespace)
	Sockets  bool // sock_diag dumps with skmeminfo
	TCPInfo  bool // tcp_info of the full sockets (zero-window counts per group)
	// RcvbufLock: the SO_RCVBUF lock bit (sk_userlocks & SOCK_RCVBUF_LOCK) per socket, which sock_diag
	// cannot give; the bpf socket iterator can.
	RcvbufLock bool
	BPFDrops   bool // skb:kfree_skb per reason and group
	BPFGrowth  bool // tcp:tcp_rcvbuf_grow per group
	BPFLimits  bool // sock:sock_exceed_buf_limit per cgroup
	Cgroups    bool // memory cgroup files (v2 memory.*, v1 memory.kmem.tcp.*) of the groups' cgroups
	// HostNetns is true when the evidence comes from the host's network namespace. Softnet is host-wide in
	// any case; tcp_mem thresholds are only readable there.
	HostNetns bool
}

// Netstat holds the increase over the window of the namespace's TcpExt and Tcp counters, named after the
// kernel fields. A field this kernel does not have stays unknown.
type Netstat struct {
	PruneCalled       Value // TcpExt PruneCalled
	RcvPruned         Value // TcpExt RcvPruned
	OfoPruned         Value // TcpExt OfoPruned
	RcvCollapsed      Value // TcpExt TCPRcvCollapsed
	RcvQDrop          Value // TcpExt TCPRcvQDrop
	OFODrop           Value // TcpExt TCPOFODrop
	ZeroWindowDrop    Value // TcpExt TCPZeroWindowDrop
	BacklogDrop       Value // TcpExt TCPBacklogDrop
	WantZeroWindowAdv Value // TcpExt TCPWantZeroWindowAdv
	ToZeroWindowAdv   Value // TcpExt TCPToZeroWindowAdv
	FromZeroWindowAdv Value // TcpExt TCPFromZeroWindowAdv
	WinProbe          Value // TcpExt TCPWinProbe (probes this host sent, as a sender)
	ListenOverflows   Value // TcpExt ListenOverflows
	ListenDrops       Value // TcpExt ListenDrops
	AbortOnMemory     Value // TcpExt TCPAbortOnMemory
	MemoryPressures   Value // TcpExt TCPMemoryPressures
	// MemoryPressuresChronoMs is TcpExt TCPMemoryPressuresChrono, in milliseconds as the kernel counts it.
	MemoryPressuresChronoMs Value
	InSegs                  Value // Tcp InSegs
}

// netstatFields maps kernel field names to Netstat fields, for NetstatDelta.
var netstatFields = []struct {
	name string
	get  func(*Netstat) *Value
}{
	{"PruneCalled", func(n *Netstat) *Value { return &n.PruneCalled }},
	{"RcvPruned", func(n *Netstat) *Value { return &n.RcvPruned }},
	{"OfoPruned", func(n *Netstat) *Value { return &n.OfoPruned }},
	{"TCPRcvCollapsed", func(n *Netstat) *Value { return &n.RcvCollapsed }},
	{"TCPRcvQDrop", func(n *Netstat) *Value { return &n.RcvQDrop }},
	{"TCPOFODrop", func(n *Netstat) *Value { return &n.OFODrop }},
	{"TCPZeroWindowDrop", func(n *Netstat) *Value { return &n.ZeroWindowDrop }},
	{"TCPBacklogDrop", func(n *Netstat) *Value { return &n.BacklogDrop }},
	{"TCPWantZeroWindowAdv", func(n *Netstat) *Value { return &n.WantZeroWindowAdv }},
	{"TCPToZeroWindowAdv", func(n *Netstat) *Value { return &n.ToZeroWindowAdv }},
	{"TCPFromZeroWindowAdv", func(n *Netstat) *Value { return &n.FromZeroWindowAdv }},
	{"TCPWinProbe", func(n *Netstat) *Value { return &n.WinProbe }},
	{"ListenOverflows", func(n *Netstat) *Value { return &n.ListenOverflows }},
	{"ListenDrops", func(n *Netstat) *Value { return &n.ListenDrops }},
	{"TCPAbortOnMemory", func(n *Netstat) *Value { return &n.AbortOnMemory }},
	{"TCPMemoryPressures", func(n *Netstat) *Value { return &n.MemoryPressures }},
	{"TCPMemoryPressuresChrono", func(n *Netstat) *Value { return &n.MemoryPressuresChronoMs }},
	{"InSegs", func(n *Netstat) *Value { return &n.InSegs }},
}

// NetstatDelta builds Netstat from two readings of the namespace's counters keyed by their kernel names
// ("PruneCalled", "TCPRcvCollapsed", ... and Tcp's "InSegs"), as a /proc/net/netstat and /proc/net/snmp
// parser returns them: a field missing from either reading, or that went down, stays unknown.
func NetstatDelta(first, last map[string]uint64) Netstat {
	var n Netstat
	for _, f := range netstatFields {
		a, okA := first[f.name]
		b, okB := last[f.name]
		*f.get(&n) = Delta(Value{a, okA}, Value{b, okB})
	}
	return n
}

// Memory is TCP's memory against net.ipv4.tcp_mem, in pages, host-wide.
type Memory struct {
	// TCPPagesMax is the highest /proc/net/sockstat "TCP: mem" over the samples.
	TCPPagesMax Value
	// TCPMem is net.ipv4.tcp_mem: min, pressure, max (pages).
	TCPMem [3]Value
	// PageSize in bytes, to print pages as bytes; 0 prints pages.
	PageSize uint64
}

// Sysctl holds the receive-buffer settings of the namespace (some are host-wide and read only there).
type Sysctl struct {
	RmemMax          Value    // net.core.rmem_max, bytes
	RmemDefault      Value    // net.core.rmem_default, bytes
	TCPRmem          [3]Value // net.ipv4.tcp_rmem: min, default, max, bytes
	ModerateRcvbuf   Value    // net.ipv4.tcp_moderate_rcvbuf
	NetdevMaxBacklog Value    // net.core.netdev_max_backlog
	Somaxconn        Value    // net.core.somaxconn
}

// Softnet is the increase over the window of /proc/net/softnet_stat summed over CPUs. It is host-wide:
// the same numbers are read from any network namespace.
type Softnet struct {
	Dropped       Value // column 2: input queue (netdev_max_backlog) full
	TimesSqueezed Value // column 3: softirq out of budget with work left
}

// GroupKey names a socket group the way the sockets collector labels it.
type GroupKey struct {
	Role   string // "server" or "client"
	Port   string // the server's local port or the client's remote port; "other" for folded groups
	Cgroup string
	// Process names the process holding most of the group's sockets, when known. The sockets collector's
	// --collector.sockets.process splits groups by it; the evidence of diagnose does not (a socket whose
	// owner a scan has not found yet would make a second group), it names the group.
	Process string
}

// Group is one socket group's readings, one per socket dump, in time order.
type Group struct {
	Key     GroupKey
	Samples []GroupSample
	// SocketDrops is the increase of sk_drops over the group's sockets (skmeminfo drops). It also counts
	// the window probes a receiver with a closed window discards, so it is never taken as overflow alone.
	SocketDrops Value
	// MemoryCgroup is the memory cgroup the group's sockets are charged to (that of the process holding
	// them; a Cgroups entry's Cgroup), when known. Without it a group belongs to the CgroupMemory named by
	// its Key.Cgroup (a unified hierarchy, where the socket's cgroup is its memory cgroup).
	MemoryCgroup string
}

// GroupSample sums one dump's non-listening sockets of a group.
type GroupSample struct {
	Sockets   uint64
	Full      uint64 // rmem_alloc >= the full ratio (e.g. 0.9) of rcvbuf
	RecvQ     uint64 // sum of Recv-Q (idiag_rqueue: rcv_nxt - copied_seq, bytes not yet read)
	RmemAlloc uint64 // sum of skmeminfo rmem_alloc (truesize charged to the receive and out-of-order queues)
	Rcvbuf    uint64 // sum of skmeminfo rcvbuf
	RcvbufMin uint64 // smallest rcvbuf of one socket
	RcvbufMax uint64 // largest rcvbuf of one socket
	// ZeroWindow counts sockets advertising a zero window (tcp_info tcpi_rcv_wnd == 0), when tcp_info was
	// read for the group's full sockets.
	ZeroWindow Value
	// Locked counts sockets whose SO_RCVBUF was set by the application, when the lock bit can be read.
	Locked Value
	// AtTCPRmemMax counts sockets whose rcvbuf is at least net.ipv4.tcp_rmem[2] (known with the sysctl).
	AtTCPRmemMax Value
	// AtRmemMaxCap counts sockets whose rcvbuf is exactly 2 × net.core.rmem_max: what SO_RCVBUF gives for
	// any request of rmem_max or more (known with the sysctl).
	AtRmemMaxCap Value
}

// Listener is one listening port's fullest accept queue, one reading per dump.
type Listener struct {
	Port    string
	Samples []ListenSample
}

// ListenSample is one reading of a listener's accept queue (ss -ltn Recv-Q and Send-Q).
type ListenSample struct {
	Length uint64 // connections waiting for accept()
	Limit  uint64 // listen() backlog capped by net.core.somaxconn
}

// BPF is the bpf collector's counts over the window.
type BPF struct {
	Drops []ReceiveDrops
	// Unattributed counts drops without a TCP socket (softnet, netfilter, no socket) by reason.
	Unattributed map[string]uint64
	Growth       []RcvbufGrowth
	LimitHits    []MemoryLimitHits
}

// ReceiveDrops is sockbuf_tcp_receive_drops_total's increase for one label set: packets of TCP sockets dropped
// on the receive path. The bpf collector labels by role, port and cgroup (not by process).
type ReceiveDrops struct {
	Role, Port, Cgroup string
	// Reason is the kernel's skb_drop_reason name, lower case, without SKB_DROP_REASON_ (e.g. "proto_mem").
	Reason       string
	RcvbufLocked bool
	Count        uint64
}

// RcvbufGrowth is sockbuf_tcp_rcvbuf_grow_total's increase for one group: times autotuning grew a buffer.
type RcvbufGrowth struct {
	Role, Port, Cgroup string
	Count              uint64
}

// MemoryLimitHits is sockbuf_socket_memory_limit_hits_total's increase: sockets that wanted memory beyond
// tcp_mem or their cgroup's limit (sock:sock_exceed_buf_limit).
type MemoryLimitHits struct {
	Kind   string // "recv" or "send"
	Cgroup string
	Count  uint64
}

// CgroupMemory is one memory cgroup's state over the window, for the cgroups the groups belong to. On cgroup
// v2 socket buffers count against memory.max; on v1 against memory.kmem.tcp.limit_in_bytes, once set.
type CgroupMemory struct {
	// Cgroup names it: the groups' MemoryCgroup, or (v2) the name the groups' Cgroup label carries.
	Cgroup string
	// V1 says the fields are cgroup v1's TCP memory (memory.kmem.tcp.*); the v2 fields are then unknown.
	V1 bool
	// TCPLimit is memory.kmem.tcp.limit_in_bytes (v1, known once TCP accounting is on).
	TCPLimit Value
	// TCPUsageMax is the highest memory.kmem.tcp.usage_in_bytes over the samples.
	TCPUsageMax Value
	// TCPMaxUsage is memory.kmem.tcp.max_usage_in_bytes at the end of the window, and TCPMaxUsageRise its
	// increase over the window: a high-water mark that rose to the limit in the window is a hit that
	// samples may have missed.
	TCPMaxUsage     Value
	TCPMaxUsageRise Value
	// TCPFailcnt is the increase of memory.kmem.tcp.failcnt (recent kernels do not count receive refusals
	// in it).
	TCPFailcnt Value

	Max        Value // memory.max in bytes; unknown when "max" (no limit)
	CurrentMax Value // highest memory.current over the samples
	SockMax    Value // highest memory.stat "sock" (socket buffers charged to the cgroup) over the samples
	EventsMax  Value // increase of memory.events "max": allocations that hit memory.max
	EventsHigh Value // increase of memory.events "high"
	EventsOOM  Value // increase of memory.events "oom"
}

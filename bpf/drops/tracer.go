//go:build linux

package drops

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Options configures Open.
type Options struct {
	// NetNS, when not 0, restricts counting to the network namespace with this inode number (see OwnNetNS):
	// sockets of other namespaces, and drops without a socket on other namespaces' devices, are not
	// counted. 0 counts every namespace.
	NetNS uint32
	// MaxGroups bounds the map of attributed drops (distinct reason, role, port, cgroup, rcvbuf_locked
	// keys since Open); DefaultMaxGroups when 0. Drops of keys beyond it are counted in Lost.Drops.
	MaxGroups int
}

// DefaultMaxGroups is the default of Options.MaxGroups.
const DefaultMaxGroups = 16384

// Tracer holds the loaded programs, their links and maps. It pins nothing: Close (or the process's exit)
// removes everything from the kernel.
type Tracer struct {
	coll    *ebpf.Collection
	links   []link.Link
	progs   []*ebpf.Program
	missing []string
	rxSk    bool
	names   []string // by reason code below len; others are named by reasonName
	ncpu    int

	drops, unattributed, grows, limits, lost *ebpf.Map
	listening, knownNetNS                    *ebpf.Map

	listen map[uint32]*portSet // what SetListening last put in the kernel, by namespace

	// Batch buffers, reused by every Read.
	dropKeys  []dropsDropKey
	u32Keys   []uint32
	growKeys  []dropsGrowKey
	limitKeys []dropsLimitKey
	values    []uint64
}

// batch is the number of map entries each batch lookup asks for.
const batch = 1024

// Open loads the programs and attaches them to the tracepoints skb:kfree_skb (required),
// tcp:tcp_rcvbuf_grow and sock:sock_exceed_buf_limit (optional: Missing names those this kernel lacks).
// The error names what is missing: privileges (errors.Is(err, os.ErrPermission): CAP_BPF and CAP_PERFMON,
// or CAP_SYS_ADMIN), the kernel's BTF (os.ErrNotExist), or the kfree_skb tracepoint.
func Open(opts Options) (*Tracer, error) {
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("reading the kernel's BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF): %w", err)
	}
	names, err := reasonNames(kernel)
	if err != nil {
		return nil, err
	}
	kfree, err := tracepointParams(kernel, "kfree_skb")
	if err != nil {
		return nil, err
	}
	spec, err := loadDrops()
	if err != nil {
		return nil, err
	}
	t := &Tracer{names: names, rxSk: kfree >= 4, listen: map[uint32]*portSet{}}
	if err := spec.Variables["netns_filter"].Set(opts.NetNS); err != nil {
		return nil, fmt.Errorf("setting the namespace filter: %w", err)
	}
	if err := spec.Variables["has_rx_sk"].Set(t.rxSk); err != nil {
		return nil, fmt.Errorf("setting has_rx_sk: %w", err)
	}
	max := opts.MaxGroups
	if max <= 0 {
		max = DefaultMaxGroups
	}
	spec.Maps["drops"].MaxEntries = uint32(max)
	optional := map[string]string{"on_tcp_rcvbuf_grow": "tcp_rcvbuf_grow", "on_sock_exceed_buf_limit": "sock_exceed_buf_limit"}
	for prog, tp := range optional {
		if _, err := tracepointParams(kernel, tp); err != nil {
			delete(spec.Programs, prog)
			t.missing = append(t.missing, tp)
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{KernelTypes: kernel}})
	if err != nil {
		return nil, fmt.Errorf("loading BPF programs: %w", privilegeError(err))
	}
	t.coll = coll
	m := coll.Maps
	t.drops, t.unattributed, t.grows, t.limits, t.lost = m["drops"], m["unattributed"], m["grows"], m["limits"], m["lost"]
	t.listening, t.knownNetNS = m["listening"], m["known_netns"]
	for _, name := range []string{"on_kfree_skb", "on_tcp_rcvbuf_grow", "on_sock_exceed_buf_limit"} {
		prog := coll.Programs[name]
		if prog == nil {
			continue
		}
		l, err := link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("attaching %s: %w", name, privilegeError(err))
		}
		t.links = append(t.links, l)
		t.progs = append(t.progs, prog)
	}
	if t.ncpu, err = ebpf.PossibleCPU(); err != nil {
		t.Close()
		return nil, err
	}
	t.dropKeys = make([]dropsDropKey, batch)
	t.u32Keys = make([]uint32, batch)
	t.growKeys = make([]dropsGrowKey, batch)
	t.limitKeys = make([]dropsLimitKey, batch)
	t.values = make([]uint64, batch*t.ncpu)
	return t, nil
}

// privilegeError makes a refusal to load or attach say which capabilities are missing.
func privilegeError(err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w (needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN, in the initial user namespace): %w",
			os.ErrPermission, err)
	}
	return err
}

// tracepointParams returns the number of arguments of a BTF-typed tracepoint (the btf_trace_<name>
// typedef the kernel declares for every tracepoint), or an error wrapping os.ErrNotExist when this kernel
// has no such tracepoint.
func tracepointParams(kernel *btf.Spec, name string) (int, error) {
	var td *btf.Typedef
	if err := kernel.TypeByName("btf_trace_"+name, &td); err != nil {
		return 0, fmt.Errorf("tracepoint %s not in the kernel's BTF: %w", name, errors.Join(os.ErrNotExist, err))
	}
	ptr, ok := td.Type.(*btf.Pointer)
	if !ok {
		return 0, fmt.Errorf("btf_trace_%s is not a function pointer", name)
	}
	proto, ok := ptr.Target.(*btf.FuncProto)
	if !ok {
		return 0, fmt.Errorf("btf_trace_%s is not a function pointer", name)
	}
	// The first parameter is the tracepoint's private data, not an argument.
	return len(proto.Params) - 1, nil
}

// Missing names the optional tracepoints this kernel lacks, whose counts Read leaves empty:
// "tcp_rcvbuf_grow" (Linux 6.17+) and "sock_exceed_buf_limit".
func (t *Tracer) Missing() []string { return t.missing }

// Attributed reports whether drops are attributed to sockets: the kfree_skb tracepoint passes the
// receiving socket since Linux 6.11. Without it every drop is counted in Snapshot.Unattributed.
func (t *Tracer) Attributed() bool { return t.rxSk }

// Close detaches and unloads everything. It may be called more than once.
func (t *Tracer) Close() error {
	var err error
	for _, l := range t.links {
		err = errors.Join(err, l.Close())
	}
	t.links, t.progs = nil, nil
	if t.coll != nil {
		t.coll.Close()
		t.coll = nil
	}
	return err
}

// OwnNetNS returns the inode number of the calling thread's network namespace, for Options.NetNS.
func OwnNetNS() (uint32, error) {
	return NetNSInode("/proc/thread-self/ns/net")
}

// NetNSInode returns the inode number of the network namespace at path (/proc/<pid>/ns/net,
// /run/netns/<name>), as SetListening and Options.NetNS take it.
func NetNSInode(path string) (uint32, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("stat %s: %w", path, err)
	}
	return uint32(st.Ino), nil
}

// reasonNames reads enum skb_drop_reason (include/net/dropreason-core.h) from the running kernel's BTF:
// names by value, without the SKB_DROP_REASON_ prefix, in lower case.
func reasonNames(kernel *btf.Spec) ([]string, error) {
	var e *btf.Enum
	if err := kernel.TypeByName("skb_drop_reason", &e); err != nil {
		return nil, fmt.Errorf("enum skb_drop_reason not in the kernel's BTF: %w", err)
	}
	var names []string
	for _, v := range e.Values {
		name, ok := strings.CutPrefix(v.Name, "SKB_DROP_REASON_")
		if !ok {
			name = strings.TrimPrefix(v.Name, "SKB_") // SKB_NOT_DROPPED_YET, SKB_CONSUMED
		}
		if name == "MAX" || name == "SUBSYS_MASK" || v.Value > 1<<16 {
			continue
		}
		for int(v.Value) >= len(names) {
			names = append(names, "")
		}
		names[v.Value] = strings.ToLower(name)
	}
	return names, nil
}

// ReasonName returns the kernel's name of a drop reason code.
func (t *Tracer) ReasonName(code uint32) string {
	if int(code) < len(t.names) && t.names[code] != "" {
		return t.names[code]
	}
	// Subsystem reasons (code >> 16 is the subsystem, include/net/dropreason.h) and codes newer than the BTF.
	return fmt.Sprintf("unknown_%#x", code)
}

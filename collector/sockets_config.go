package collector

import (
	"fmt"

	"github.com/sockbuf/sockbuf_exporter/attrib"
)

// SocketsConfig configures the per-socket collector (sockets.go).
type SocketsConfig struct {
	// MaxGroups caps the number of (role, port, attribution) groups; the rest fold into port="other".
	MaxGroups int
	// FullRatio is the rmem_alloc/rcvbuf share at or above which a socket counts as full.
	FullRatio float64
	// States is a comma-separated list of TCP states to dump; empty means every state that holds memory.
	States string
	// TCPInfo asks the kernel for struct tcp_info with every socket.
	TCPInfo bool
	// CgroupAttribution labels groups with the owning cgroup, from the cgroup id in each inet_diag reply.
	CgroupAttribution bool
	// ProcessAttribution labels groups with the owning process name, from a scan of /proc/*/fd.
	ProcessAttribution bool
	// CgroupLabel is how a cgroup becomes the cgroup label, here and in the netns collector's netns label;
	// the zero value is attrib.CgroupStable.
	CgroupLabel attrib.CgroupPolicy
	// CgroupRoot is where the cgroup v2 hierarchy is mounted; empty means find it in /proc/self/mountinfo.
	CgroupRoot string
	// Engine reads the sockets: EngineNetlink (inet_diag dumps), EngineBPF (the iter/tcp BPF iterator, which
	// sums per group in the kernel) or EngineAuto (empty too): bpf when it loads and process attribution is
	// off, else netlink (sockets_engine.go).
	Engine string
}

// Values of SocketsConfig.Engine.
const (
	EngineAuto    = "auto"
	EngineBPF     = "bpf"
	EngineNetlink = "netlink"
)

// Defaults of the sockets collector's configuration, which the command line's flags start from.
const (
	DefaultMaxGroups = 200
	DefaultFullRatio = 0.9
)

// DefaultSocketsConfig is the configuration with every default: DefaultMaxGroups, DefaultFullRatio, every
// state that holds memory, no tcp_info, cgroup attribution on, process attribution off.
func DefaultSocketsConfig() SocketsConfig {
	return SocketsConfig{MaxGroups: DefaultMaxGroups, FullRatio: DefaultFullRatio, CgroupAttribution: true}
}

// Validate checks the configuration. A zero MaxGroups or FullRatio is an error, not a default: the operator
// who typed 0 did not ask for 200.
func (c SocketsConfig) Validate() error {
	if c.MaxGroups < 2 {
		return fmt.Errorf("--collector.sockets.max-groups must be at least 2 (one \"other\" group per role), got %d", c.MaxGroups)
	}
	if err := validFullRatio(c.FullRatio); err != nil {
		return err
	}
	if _, err := parseStates(c.States); err != nil {
		return fmt.Errorf("--collector.sockets.states: %w", err)
	}
	switch c.Engine {
	case "", EngineAuto, EngineNetlink:
	case EngineBPF:
		if c.ProcessAttribution {
			return fmt.Errorf("--collector.sockets.engine=bpf cannot label groups with processes (the iterator gives no socket inode): drop --collector.sockets.process, or use engine auto or netlink")
		}
	default:
		return fmt.Errorf("--collector.sockets.engine must be auto, bpf or netlink, got %q", c.Engine)
	}
	return nil
}

// validFullRatio checks --collector.sockets.full-ratio, which the netns collector shares.
func validFullRatio(r float64) error {
	if !(r > 0 && r <= 2) {
		return fmt.Errorf("--collector.sockets.full-ratio must be in (0, 2], got %g", r)
	}
	return nil
}

package procnet

import (
	"errors"
	"fmt"
)

// Sysctl names one receive-path setting under /proc/sys.
type Sysctl uint8

// The settings read. In a network namespace other than the host's some do not exist (tcp_mem, udp_mem,
// tcp_max_orphans and, on current kernels, netdev_max_backlog); they read as absent.
const (
	RmemMax Sysctl = iota
	RmemDefault
	WmemMax
	WmemDefault
	TCPRmem
	TCPWmem
	NetdevMaxBacklog
	Somaxconn
	TCPWindowScaling
	TCPModerateRcvbuf
	TCPAdvWinScale
	TCPMem
	UDPMem
	TCPMaxOrphans
	// NumSysctls is the number of settings.
	NumSysctls
)

// MaxSysctlValues is the most numbers one of the files holds (tcp_rmem: min, default, max).
const MaxSysctlValues = 3

var sysctlInfo = [NumSysctls]struct {
	path   string // under <proc>/sys
	n      int    // numbers in the file
	signed bool   // may be negative
}{
	RmemMax:           {"net/core/rmem_max", 1, false},
	RmemDefault:       {"net/core/rmem_default", 1, false},
	WmemMax:           {"net/core/wmem_max", 1, false},
	WmemDefault:       {"net/core/wmem_default", 1, false},
	TCPRmem:           {"net/ipv4/tcp_rmem", 3, false},
	TCPWmem:           {"net/ipv4/tcp_wmem", 3, false},
	NetdevMaxBacklog:  {"net/core/netdev_max_backlog", 1, false},
	Somaxconn:         {"net/core/somaxconn", 1, false},
	TCPWindowScaling:  {"net/ipv4/tcp_window_scaling", 1, false},
	TCPModerateRcvbuf: {"net/ipv4/tcp_moderate_rcvbuf", 1, false},
	TCPAdvWinScale:    {"net/ipv4/tcp_adv_win_scale", 1, true},
	TCPMem:            {"net/ipv4/tcp_mem", 3, false},
	UDPMem:            {"net/ipv4/udp_mem", 3, false},
	TCPMaxOrphans:     {"net/ipv4/tcp_max_orphans", 1, false},
}

// Path is the setting's file under <proc>/sys, e.g. "net/ipv4/tcp_rmem".
func (s Sysctl) Path() string { return sysctlInfo[s].path }

// Len is how many numbers the setting has.
func (s Sysctl) Len() int { return sysctlInfo[s].n }

// SysctlValue is one setting as read: Values[:Len()] when OK.
type SysctlValue struct {
	Values [MaxSysctlValues]int64
	OK     bool
}

// Sysctls holds a reading of every setting.
type Sysctls [NumSysctls]SysctlValue

// ParseSysctl parses the content of the setting's file: one line of exactly s.Len() integers separated by
// tabs or spaces; negative numbers are an error unless the setting may be negative.
func ParseSysctl(s Sysctl, data []byte) (SysctlValue, error) {
	var v SysctlValue
	info := sysctlInfo[s]
	line, rest, err := NextLine(data)
	if err != nil {
		return v, err
	}
	if len(rest) != 0 {
		return v, errors.New("more than one line")
	}
	n := 0
	for f, more := NextField(line); len(f) > 0; f, more = NextField(more) {
		if n == info.n {
			return v, fmt.Errorf("more than %d values", info.n)
		}
		x, err := parseInt(f)
		if err != nil {
			return v, err
		}
		if x < 0 && !info.signed {
			return v, fmt.Errorf("%w: negative value %d", ErrNumber, x)
		}
		v.Values[n] = x
		n++
	}
	if n != info.n {
		return v, fmt.Errorf("%d values, want %d", n, info.n)
	}
	v.OK = true
	return v, nil
}

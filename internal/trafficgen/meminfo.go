package trafficgen

import (
	"fmt"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// MemInfo is a socket's memory accounting as the kernel reports it with getsockopt(SO_MEMINFO), the same
// numbers `ss -m` shows as skmem and inet_diag sends as INET_DIAG_SKMEMINFO (include/uapi/linux/sock_diag.h,
// SK_MEMINFO_*).
type MemInfo struct {
	RmemAlloc, RcvBuf, WmemAlloc, SndBuf, FwdAlloc, WmemQueued, Optmem, Backlog, Drops uint32
}

// skMeminfoVars is SK_MEMINFO_VARS in include/uapi/linux/sock_diag.h.
const skMeminfoVars = 9

// SocketMemInfo reads a socket's skmeminfo.
func SocketMemInfo(c syscall.Conn) (MemInfo, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return MemInfo{}, err
	}
	var v [skMeminfoVars]uint32
	var serr error
	err = rc.Control(func(fd uintptr) {
		size := uint32(len(v) * 4)
		// x/sys/unix has no getsockopt for a u32 array; the kernel copies at most size bytes into v.
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
			uintptr(unsafe.Pointer(&v[0])), uintptr(unsafe.Pointer(&size)), 0)
		if errno != 0 {
			serr = errno
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return MemInfo{}, fmt.Errorf("getsockopt(SO_MEMINFO): %w", err)
	}
	return MemInfo{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8]}, nil
}

// RecvQueue is the number of bytes waiting unread in a connected socket's receive queue (SIOCINQ), what ss
// shows as Recv-Q.
func RecvQueue(c *net.TCPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var ierr error
	if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCINQ) }); err != nil {
		return 0, err
	}
	if ierr != nil {
		return 0, fmt.Errorf("ioctl(SIOCINQ): %w", ierr)
	}
	return n, nil
}

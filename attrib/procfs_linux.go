package attrib

import (
	"bytes"
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The system calls of the process scanner, on NUL-terminated names in reused buffers, so that reading
// /proc allocates nothing per entry.

// direntNameOff is the offset of d_name in struct linux_dirent64 (include/linux/dirent.h: u64 ino, s64 off,
// u16 reclen, u8 type, NUL-terminated name).
const direntNameOff = 19

// nextDirent splits the first struct linux_dirent64 off b and returns its name without the NUL.
func nextDirent(b []byte) (name, rest []byte, ok bool) {
	if len(b) < direntNameOff {
		return nil, nil, false
	}
	reclen := int(binary.NativeEndian.Uint16(b[16:18]))
	if reclen < direntNameOff || reclen > len(b) {
		return nil, nil, false
	}
	name = b[direntNameOff:reclen]
	if i := bytes.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	return name, b[reclen:], true
}

// parsePid returns the pid a /proc entry name stands for.
func parsePid(name []byte) (int32, bool) {
	if !isDigits(name) || len(name) > 9 {
		return 0, false
	}
	var v int32
	for _, c := range name {
		v = v*10 + int32(c-'0')
	}
	return v, v > 0
}

// openat opens a NUL-terminated path relative to dirfd; unix.Openat would copy a string path each time.
func openat(dirfd int, path []byte, flags int) (int, error) {
	fd, _, e := unix.Syscall6(unix.SYS_OPENAT, uintptr(dirfd), uintptr(unsafe.Pointer(&path[0])), uintptr(flags), 0, 0, 0)
	if e != 0 {
		return -1, e
	}
	return int(fd), nil
}

// statxSize stats a NUL-terminated path relative to dirfd for its size only (statx has the same number on
// every architecture, unlike fstatat/newfstatat).
func statxSize(dirfd int, path []byte, st *unix.Statx_t) error {
	_, _, e := unix.Syscall6(unix.SYS_STATX, uintptr(dirfd), uintptr(unsafe.Pointer(&path[0])), 0,
		unix.STATX_SIZE, uintptr(unsafe.Pointer(st)), 0)
	if e != 0 {
		return e
	}
	return nil
}

// readlinkat reads the target of the link named by the NUL-terminated name at *name, relative to dirfd.
func readlinkat(dirfd int, name *byte, buf []byte) (int, error) {
	n, _, e := unix.Syscall6(unix.SYS_READLINKAT, uintptr(dirfd), uintptr(unsafe.Pointer(name)),
		uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// readLinks appends the socket inodes of the descriptors in fdDir to p.pending.
func (p *ProcessScanner) readLinks(fdDir int) {
	for {
		n, err := unix.Getdents(fdDir, p.fdBuf)
		if err != nil || n == 0 {
			return
		}
		for b := p.fdBuf[:n]; len(b) > 0; {
			name, rest, ok := nextDirent(b)
			if !ok {
				break
			}
			// readlinkat needs the name NUL-terminated, which it is in the buffer, right after name.
			start := len(p.fdBuf[:n]) - len(b) + direntNameOff
			b = rest
			if !isDigits(name) { // "." and ".."
				continue
			}
			p.linksRead++
			m, err := readlinkat(fdDir, &p.fdBuf[start], p.link)
			if err != nil || m >= len(p.link) {
				continue
			}
			if ino, ok := parseSocketLink(p.link[:m]); ok {
				p.pending = append(p.pending, ino)
			}
		}
	}
}

// readComm returns the interned name of a process, or 0 if it exited.
func (p *ProcessScanner) readComm(procFD int, pid []byte) int32 {
	p.path = pidPath(p.path, pid, "comm")
	fd, err := openat(procFD, p.path, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return 0
	}
	defer unix.Close(fd)
	n, err := unix.Read(fd, p.comm)
	if err != nil || n <= 0 {
		return 0
	}
	return p.names.intern(bytes.TrimRight(p.comm[:n], "\n"))
}

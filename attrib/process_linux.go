package attrib

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ProcessScanner finds the owner of every socket inode by reading /proc/<pid>/fd. It reads directories with
// getdents64 into reused buffers and calls readlinkat with the NUL-terminated names straight from those
// buffers, so a scan allocates only when it meets a new process name, however many descriptors it reads.
type ProcessScanner struct {
	procPath string
	names    processNames
	owners   map[uint32]int32 // socket inode → index in names

	procBuf []byte // getdents64 of /proc
	fdBuf   []byte // getdents64 of /proc/<pid>/fd
	link    []byte
	path    []byte
	comm    []byte
	pending []uint32 // socket inodes of the current process
}

// NewProcessScanner returns a scanner of the processes under procPath (/proc).
func NewProcessScanner(procPath string) *ProcessScanner {
	return &ProcessScanner{
		procPath: procPath,
		names:    newProcessNames(),
		owners:   map[uint32]int32{},
		procBuf:  make([]byte, 32<<10),
		fdBuf:    make([]byte, 32<<10),
		link:     make([]byte, 64),
		comm:     make([]byte, 64),
	}
}

// Scan rebuilds the inode → process map. Processes that exit during the scan, and those the exporter may
// not inspect (without root or CAP_SYS_PTRACE only its own), are skipped.
func (p *ProcessScanner) Scan() error {
	p.names.reset()
	clear(p.owners)
	procFD, err := unix.Open(p.procPath, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", p.procPath, err)
	}
	defer unix.Close(procFD)
	for {
		n, err := unix.Getdents(procFD, p.procBuf)
		if err != nil {
			return fmt.Errorf("listing %s: %w", p.procPath, err)
		}
		if n == 0 {
			return nil
		}
		// The entries point into procBuf, which the next Getdents overwrites: each is used at once.
		for b := p.procBuf[:n]; len(b) > 0; {
			name, rest, ok := nextDirent(b)
			if !ok {
				break
			}
			b = rest
			if isDigits(name) {
				p.scanProcess(procFD, name)
			}
		}
	}
}

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

func (p *ProcessScanner) scanProcess(procFD int, pid []byte) {
	p.path = pidPath(p.path, pid, "fd")
	fdDir, err := openat(procFD, p.path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
	if err != nil {
		return // exited, a kernel thread without files, or not ours to see
	}
	defer unix.Close(fdDir)
	p.pending = p.pending[:0]
	for {
		n, err := unix.Getdents(fdDir, p.fdBuf)
		if err != nil || n == 0 {
			break
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
			m, err := readlinkat(fdDir, &p.fdBuf[start], p.link)
			if err != nil || m >= len(p.link) {
				continue
			}
			if ino, ok := parseSocketLink(p.link[:m]); ok {
				p.pending = append(p.pending, ino)
			}
		}
	}
	if len(p.pending) == 0 {
		return
	}
	idx := p.readComm(procFD, pid)
	for _, ino := range p.pending {
		if _, taken := p.owners[ino]; !taken {
			p.owners[ino] = idx
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

// Owner returns the index of the process name holding a socket inode, 0 if none was found.
func (p *ProcessScanner) Owner(inode uint32) int32 { return p.owners[inode] }

// Name returns a process name by index.
func (p *ProcessScanner) Name(i int32) string { return p.names.name(i) }

// openat opens a NUL-terminated path relative to dirfd; unix.Openat would copy a string path each time.
func openat(dirfd int, path []byte, flags int) (int, error) {
	fd, _, e := unix.Syscall6(unix.SYS_OPENAT, uintptr(dirfd), uintptr(unsafe.Pointer(&path[0])), uintptr(flags), 0, 0, 0)
	if e != 0 {
		return -1, e
	}
	return int(fd), nil
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

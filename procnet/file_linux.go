package procnet

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"golang.org/x/sys/unix"
)

// MaxFileSize bounds a read, exactly: a file of MaxFileSize bytes is read, one byte more is an error.
// softnet_stat, the largest file read, is about 120 bytes a CPU, under 1 MiB with 8192 CPUs (the kernel's
// largest NR_CPUS); anything larger is not a file we know, and the bound keeps a crafted procfs tree (a link
// to /dev/urandom) from costing more memory than that per read.
const MaxFileSize = 4 << 20

// maxPooledBuf is the largest buffer put back into the pool: one grown by an oversized file is left to the
// garbage collector, so that bad input read once does not keep megabytes per P alive.
const maxPooledBuf = 1 << 20

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 8<<10); return &b }}

// GetBuf and PutBuf lend the pooled read buffers to callers that read with File.Read or ReadOnce.
func GetBuf() *[]byte { return bufPool.Get().(*[]byte) }
func PutBuf(b *[]byte) {
	if cap(*b) > maxPooledBuf {
		return
	}
	bufPool.Put(b)
}

// ErrTooLarge is matched by the error of a read beyond MaxFileSize.
var ErrTooLarge = errors.New("file too large")

// File is a kernel file kept open between reads and re-read with pread from offset 0. Opening a /proc/net
// file costs more than reading it (a path walk through /proc/self and the network namespace), and the kernel
// regenerates the content on every read from offset 0 (seq_file and sysctl handlers), so a kept descriptor
// sees current values. Raw syscalls, because os.File would add an fstat and allocations per read. A missing
// file is looked for again on every read, so it reads as an error matching os.ErrNotExist each time.
type File struct {
	Path string
	mu   sync.Mutex
	fd   int // -1 while not open
}

// NewFile returns a File for path; nothing is opened until the first read.
func NewFile(path string) *File { return &File{Path: path, fd: -1} }

// Close closes the descriptor, if open; a later Read opens it again.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fd < 0 {
		return nil
	}
	err := unix.Close(f.fd)
	f.fd = -1
	return err
}

func (f *File) descriptor() (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fd >= 0 {
		return f.fd, nil
	}
	for {
		fd, err := unix.Open(f.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, fmt.Errorf("opening %s: %w", f.Path, err)
		}
		f.fd = fd
		return fd, nil
	}
}

// Read reads the whole file into *buf, growing it as needed, and returns the content, which stays valid until
// the next read into buf. Concurrent reads of one File are safe: pread does not move a shared offset.
func (f *File) Read(buf *[]byte) ([]byte, error) {
	fd, err := f.descriptor()
	if err != nil {
		return nil, err
	}
	b := (*buf)[:0]
	defer func() { *buf = b[:0] }() // keep a grown buffer for the next read
	// At most MaxFileSize+1 bytes are read: the one beyond the limit tells a file of exactly MaxFileSize
	// bytes from a larger one.
	const readLimit = MaxFileSize + 1
	for {
		if len(b) == cap(b) {
			if len(b) >= readLimit {
				return nil, fmt.Errorf("reading %s: %w: more than %d bytes", f.Path, ErrTooLarge, MaxFileSize)
			}
			b = slices.Grow(b, min(max(cap(b), 4096), readLimit-len(b)))
		}
		n, err := unix.Pread(fd, b[len(b):min(cap(b), readLimit)], int64(len(b)))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", f.Path, err)
		}
		if n == 0 {
			return b, nil
		}
		b = b[:len(b)+n]
		if len(b) >= readLimit {
			return nil, fmt.Errorf("reading %s: %w: more than %d bytes", f.Path, ErrTooLarge, MaxFileSize)
		}
	}
}

// ReadOnce reads a kernel file like File.Read and closes it at once: an open /proc/<pid>/net file holds a
// reference to its network namespace, which a kept descriptor would keep alive.
func ReadOnce(path string, buf *[]byte) ([]byte, error) {
	f := NewFile(path)
	defer f.Close()
	return f.Read(buf)
}

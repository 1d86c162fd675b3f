package netns

import (
	"fmt"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/sockbuf/sockbuf_exporter/sockdiag"
)

// Client is a sock_diag client inside a network namespace, holding the namespace's fd (and so the namespace)
// open for its life.
type Client struct {
	*sockdiag.Client
	fd int
}

// Close closes the client and the namespace's fd.
func (c *Client) Close() error {
	err := c.Client.Close()
	unix.Close(c.fd)
	return err
}

// Dial opens a sock_diag client in the network namespace ino of process pid. setns into another namespace
// needs CAP_SYS_ADMIN; without it Dial fails with EPERM. A pid that is now in another namespace (the process
// exited and its pid was reused) fails with ENOENT.
func Dial(procPath string, pid int, ino uint64) (*Client, error) {
	path := filepath.Join(procPath, strconv.Itoa(pid), "ns", "net")
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	if st.Ino != ino {
		unix.Close(fd)
		return nil, fmt.Errorf("%s is namespace %d now, not %d: %w", path, st.Ino, ino, unix.ENOENT)
	}
	cl, err := sockdiag.Dial(&sockdiag.Config{NetNS: fd})
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("entering network namespace %d (needs CAP_SYS_ADMIN): %w", ino, err)
	}
	return &Client{Client: cl, fd: fd}, nil
}

package trafficgen

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// RaiseNoFile raises RLIMIT_NOFILE of the whole process to at least n and returns a function that puts the
// old limits back. Many connections need it: each loopback connection costs two descriptors when both ends
// live in the same process. Raising the hard limit needs CAP_SYS_RESOURCE, which containers often drop
// (root in one with a hard limit of 20000 cannot hold 20,000 loopback connections in one process); then the
// soft limit is raised to the hard one and the error says so, and the caller can spread the connections over
// processes (FanoutConfig.ListenOnly / DialOnly, or sockbuf-trafficgen children).
func RaiseNoFile(n uint64) (restore func() error, err error) {
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		return nil, fmt.Errorf("getrlimit(RLIMIT_NOFILE): %w", err)
	}
	restore = func() error {
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
			return fmt.Errorf("restoring RLIMIT_NOFILE: %w", err)
		}
		return nil
	}
	if old.Cur >= n {
		return restore, nil
	}
	want := unix.Rlimit{Cur: n, Max: max(old.Max, n)}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &want); err != nil {
		best := unix.Rlimit{Cur: old.Max, Max: old.Max}
		if berr := unix.Setrlimit(unix.RLIMIT_NOFILE, &best); berr != nil {
			return nil, fmt.Errorf("raising RLIMIT_NOFILE to %d (hard limit %d): %w", n, old.Max, err)
		}
		return restore, fmt.Errorf("raising RLIMIT_NOFILE to %d: %w; soft limit raised to the hard limit %d instead (CAP_SYS_RESOURCE missing?)", n, err, old.Max)
	}
	return restore, nil
}

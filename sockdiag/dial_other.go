//go:build !linux

package sockdiag

import (
	"fmt"
	"runtime"
)

// Dial fails outside Linux: sock_diag is a Linux interface. The codec works everywhere.
func Dial(cfg *Config) (*Client, error) {
	return nil, fmt.Errorf("sockdiag: netlink sock_diag is not available on %s", runtime.GOOS)
}

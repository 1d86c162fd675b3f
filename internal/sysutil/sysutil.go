// Package sysutil holds the few system helpers that both the tests' helpers (internal/testenv) and the traffic
// generator (linked into cmd/sockbuf-trafficgen) need: finding an administration binary and changing a sysctl
// for a while. It must not import testing, since it ends up in a shipped binary.
package sysutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// fallbackDirs are searched after PATH: ip and nft live in the sbin directories, which a non-login root shell,
// sudo or a CI runner may leave off PATH, and /usr/bin covers an empty PATH.
var fallbackDirs = []string{"/usr/sbin", "/sbin", "/usr/bin"}

// LookPath returns the path of the executable name, searched on PATH, then in /usr/sbin, /sbin and /usr/bin.
// The error wraps exec.ErrNotFound when it is nowhere.
func LookPath(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err == nil || strings.Contains(name, "/") {
		return p, err
	}
	for _, dir := range fallbackDirs {
		if p, err := exec.LookPath(filepath.Join(dir, name)); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not on PATH nor in %s: %w", name, strings.Join(fallbackDirs, ", "), exec.ErrNotFound)
}

// SetSysctl writes value to the sysctl at path below /proc/sys (e.g. "net/ipv4/tcp_retrans_collapse") and
// returns a function that puts the old value back. The net/ ones belong to the calling thread's network
// namespace. Errors wrap the file system's, so errors.Is(err, fs.ErrNotExist) tells a kernel without it.
func SetSysctl(path, value string) (restore func() error, err error) {
	full := filepath.Join("/proc/sys", path)
	old, err := os.ReadFile(full)
	if err != nil {
		return nil, fmt.Errorf("reading sysctl %s: %w", path, err)
	}
	if err := os.WriteFile(full, []byte(value), 0o644); err != nil {
		return nil, fmt.Errorf("setting sysctl %s=%s: %w", path, value, err)
	}
	oldValue := strings.TrimSpace(string(old))
	return func() error {
		if err := os.WriteFile(full, []byte(oldValue), 0o644); err != nil {
			return fmt.Errorf("restoring sysctl %s to %s: %w", path, oldValue, err)
		}
		return nil
	}, nil
}

//go:build !linux

// This is the one place that says so: sockbuf_exporter reads /proc and netlink sock_diag, which only Linux
// has, so on any other system the command builds into this message and nothing else. Library packages that
// need Linux name those files _linux.go and have no stubs; the pure ones (sockdiag's codec, sockagg,
// procnet's parsers, diagnose) build anywhere.
package main

import (
	"fmt"
	"os"
	"runtime"
)

func main() {
	fmt.Fprintf(os.Stderr, "sockbuf_exporter runs on Linux only (this is %s)\n", runtime.GOOS)
	os.Exit(1)
}

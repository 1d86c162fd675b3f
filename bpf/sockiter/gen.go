package sockiter

// The C source compiles with the clang and libbpf headers (Debian libbpf-dev) of the machine that runs
// `go generate`; the objects and bindings it produces are committed, so building needs neither. After
// changing sockiter.bpf.c or ../include/vmlinux.h, run `go generate ./bpf/sockiter` and commit the
// result; TestGeneratedUpToDate fails until then.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type group_key -type group_val -type listen_val -type walk_totals -type listening_bits sockiter sockiter.bpf.c -- -I/usr/include
//go:generate go run ../internal/srchash/write -o sources.sha256 sockiter.bpf.c ../include/vmlinux.h

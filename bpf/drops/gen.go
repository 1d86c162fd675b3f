package drops

// The programs are compiled with Debian's clang into drops_bpfel.o and bound by drops_bpfel.go; both are
// committed so that `go build` needs no clang. sources.sha256 records what they were built from:
// TestGeneratedUpToDate fails when a source changed since. `make generate` runs these lines.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type drop_key -type grow_key -type limit_key -type listen_key drops drops.bpf.c -- -I../include
//go:generate go run ../internal/srchash/write -o sources.sha256 gen.go drops.bpf.c ../include/vmlinux.h

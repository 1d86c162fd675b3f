// Package bpf holds what the project's eBPF programs share: include/vmlinux.h, generated once from this
// kernel's BTF (`bpftool btf dump file /sys/kernel/btf/vmlinux format c`) so that the programs build with CO-RE
// and no kernel headers. Each program lives in a package of its own below this folder, with its C source, its
// bpf2go-generated bindings and objects (committed) and a Go API that knows nothing of Prometheus.
package bpf

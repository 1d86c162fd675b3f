// Package drops counts the kernel's receive-path drops by its own drop reason, per socket group, with eBPF.
package drops

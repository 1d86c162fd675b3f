#!/bin/sh
# Hand-run benchmark of the sockiter engine (issue 13; not run in CI). As root:
#
#   bpf/sockiter/bench.sh [CONNS [ROUNDS]]   (default 100000 connections = 200,000 sockets, 7 rounds)
#
# e.g. `bpf/sockiter/bench.sh 500000 5` for 1,000,000 sockets (about 4 GiB of kernel memory, 51 holder
# processes at RLIMIT_NOFILE 20000, a few minutes to open). Like sockdiag/bench.sh it creates a network
# namespace with an established-hash table of its own (net.ipv4.tcp_child_ehash_entries=${EHASH:-1024}
# while it is created, put back at once, under the lock the Go tests take), has sockdiag's sockbench
# (-mode hold) open CONNS idle loopback connections in it, and runs sockiterbench there: interleaved
# rounds of the raw netlink dump (skmeminfo; skmeminfo+tcp_info; LISTEN only), the netlink fold the sockets
# collector does, and the bpf engine's walk; medians, ratios (target: bpf walk <= 0.5x the raw dump), the
# walk's phases, the BPF program's own run time, allocations per walk, and the RSS of processes that only
# walk or fold (after each of 5 scrapes, and peak). Bounded: everything ends with the script, the namespace
# is deleted on exit.
set -eu

conns=${1:-100000}
rounds=${2:-7}
ehash=${EHASH:-1024}
cd "$(dirname "$0")/../.."

. internal/benchref/netns.sh
tmp=$(mktemp -d)
ns=sockiter-bench-$$

go build -o "$tmp/sockbench" ./sockdiag/internal/sockbench
go build -o "$tmp/sockiterbench" ./bpf/sockiter/internal/sockiterbench
isolated_netns "$ns" "$ehash"
echo "kernel $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), $conns connections in netns $ns (ehash $ehash)"
timeout 1800 ip netns exec "$ns" "$tmp/sockiterbench" -holder "$tmp/sockbench" -conns "$conns" -rounds "$rounds"

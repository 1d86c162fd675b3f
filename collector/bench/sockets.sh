#!/bin/sh
# Hand-run scale measurement of the sockets collector (issue 4; not run in CI). As root:
#
#   collector/bench/sockets.sh [CONNS]      (default 100000 connections = 200,000 sockets)
#
# Runs BenchmarkSocketsScale (collector/sockets_bench_test.go): a network namespace with its own TCP hash table
# (net.ipv4.tcp_child_ehash_entries=1024 while it is created, then put back), CONNS idle loopback
# connections held by sockbuf-trafficgen processes, three exporter binaries in the namespace (cgroup
# attribution on, off, and process attribution on), and, interleaved over 20 rounds, a bare sockdiag dump
# of the same sockets, one /metrics scrape of each exporter and `ss -tnmi`. Prints the medians, the ratios
# the issue sets targets for (scrape <= 1.3x dump, >= 3x faster than ss -tnmi, cgroup attribution <= +10%),
# the cost of process attribution and the exporter's RSS after 20 scrapes (target < 48 MiB, not growing).
set -eu
cd "$(dirname "$0")/../.."
if [ "$(id -u)" -ne 0 ]; then
	echo "sockets.sh: needs root (network namespaces, sysctl, cgroup2 mount)" >&2
	exit 1
fi
SOCKBUF_SCALE_CONNS=${1:-100000} exec go test ./collector -run '^$' -bench '^BenchmarkSocketsScale$' -benchtime 1x -count 1 -timeout 20m

#!/bin/sh
# Hand-run load test of concurrent scrapes (issue 9; not run in CI). As root:
#
#   collector/bench/burst.sh [CONNS] [SCRAPES] [EXPORTER FLAGS...]
#                            (default 100000 connections = 200,000 sockets, 50 scrapes, default flags;
#                             e.g. --collector.sockets.engine=netlink)
#
# Runs BenchmarkScrapeBurst (collector/burst_bench_test.go): the exporter binary with its default flags in a
# namespace holding CONNS idle connections; per round one scrape alone, then SCRAPES concurrent scrapes with a
# 10 s timeout. Prints the medians, burst / one scrape (target <= 2x) and the scrapes that failed (target 0:
# every one answers 200 with every collector's success 1).
set -eu
cd "$(dirname "$0")/../.."
if [ "$(id -u)" -ne 0 ]; then
	echo "burst.sh: needs root (network namespaces)" >&2
	exit 1
fi
conns=${1:-100000}
scrapes=${2:-50}
shift 2 2>/dev/null || shift $#
SOCKBUF_BURST_ARGS="$*" SOCKBUF_BURST_CONNS=$conns SOCKBUF_BURST_SCRAPES=$scrapes exec go test ./collector -run '^$' -bench '^BenchmarkScrapeBurst$' -benchtime 1x -count 1 -timeout 20m

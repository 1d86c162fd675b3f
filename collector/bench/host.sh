#!/bin/sh
# host.sh compares one scrape of sockbuf_exporter's host collectors (netstat, sockstat, softnet, sysctl) with
# one scrape of Debian's prometheus-node-exporter running only its netstat, sockstat and softnet collectors.
# Run by hand from anywhere in the repository:
#
#   collector/bench/host.sh [scrapes]        (default 300 scrapes of each, alternating)
#
# Both exporters listen on free loopback ports; curl times each scrape (time_total: request to last byte of
# the response): over kept-alive connections as Prometheus scrapes, uncompressed and with gzip, then with a
# new connection per scrape. It prints the median and p90 of each, the ratio ours/theirs (target: at most
# 1.0), the response sizes, and the allocations per scrape from BenchmarkHostScrape.
set -eu

N=${1:-300}
NODE_EXPORTER=${NODE_EXPORTER:-/usr/bin/prometheus-node-exporter}
HOST_COLLECTORS="netstat sockstat softnet sysctl"

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d)
OURS_PID=""
THEIRS_PID=""
cleanup() {
	# Only the two processes this script started.
	[ -n "$OURS_PID" ] && kill "$OURS_PID" 2>/dev/null || true
	[ -n "$THEIRS_PID" ] && kill "$THEIRS_PID" 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

command -v curl >/dev/null || { echo "curl is needed" >&2; exit 1; }
[ -x "$NODE_EXPORTER" ] || { echo "$NODE_EXPORTER not found (apt-get install prometheus-node-exporter)" >&2; exit 1; }

echo "building sockbuf_exporter..."
(cd "$ROOT" && go build -o "$WORK/sockbuf_exporter" ./cmd/sockbuf_exporter)

# Every collector flag the binary knows (--[no-]collector.<name>, not the per-collector settings); all but the
# host collectors are switched off, whatever other collectors exist by now.
FLAGS=""
for c in $("$WORK/sockbuf_exporter" --help 2>&1 | sed -n 's/.*--\[no-\]collector\.\([a-z_0-9]*\)[[:space:]].*/\1/p' | sort -u); do
	case " $HOST_COLLECTORS " in
	*" $c "*) FLAGS="$FLAGS --collector.$c" ;;
	*) FLAGS="$FLAGS --no-collector.$c" ;;
	esac
done

# free_port prints a loopback TCP port nobody listens on.
free_port() {
	while :; do
		p=$(awk 'BEGIN { srand(); print 20000 + int(rand() * 40000) }')
		if ! ss -Htln "sport = :$p" | grep -q .; then
			echo "$p"
			return
		fi
		sleep 1
	done
}

OURS_PORT=$(free_port)
# shellcheck disable=SC2086 # FLAGS is a list of flags.
"$WORK/sockbuf_exporter" --web.listen-address="127.0.0.1:$OURS_PORT" --log.level=warn $FLAGS >"$WORK/ours.log" 2>&1 &
OURS_PID=$!
THEIRS_PORT=$(free_port)
while [ "$THEIRS_PORT" = "$OURS_PORT" ]; do THEIRS_PORT=$(free_port); done
"$NODE_EXPORTER" --web.listen-address="127.0.0.1:$THEIRS_PORT" --log.level=warn \
	--collector.disable-defaults --collector.netstat --collector.sockstat --collector.softnet >"$WORK/theirs.log" 2>&1 &
THEIRS_PID=$!

OURS="http://127.0.0.1:$OURS_PORT/metrics"
THEIRS="http://127.0.0.1:$THEIRS_PORT/metrics"
for url in "$OURS" "$THEIRS"; do
	i=0
	until curl -sf -o /dev/null "$url"; do
		i=$((i + 1))
		if [ $i -gt 100 ]; then
			echo "$url did not come up:" >&2
			cat "$WORK/ours.log" "$WORK/theirs.log" >&2
			exit 1
		fi
		sleep 0.1
	done
done

# Sanity: each side must report its collectors as successful.
if curl -s "$OURS" | grep '^sockbuf_scrape_collector_success' | grep -v ' 1$'; then
	echo "a host collector failed in our exporter" >&2
	exit 1
fi
if curl -s "$THEIRS" | grep '^node_scrape_collector_success' | grep -v ' 1$'; then
	echo "a collector failed in node_exporter" >&2
	exit 1
fi
echo "ours:   $OURS (flags:$FLAGS)"
echo "theirs: $THEIRS ($("$NODE_EXPORTER" --version 2>&1 | head -1))"

# stats FILE prints "median p90" in milliseconds.
stats() {
	sort -n "$1" | awk '{ v[NR] = $1 } END { printf "%.3f %.3f", v[int((NR + 1) / 2)] * 1000, v[int(NR * 0.9)] * 1000 }'
}

# run LABEL MODE [curl args]: N scrapes of each exporter, alternating which goes first. MODE "fresh" runs one
# curl per scrape (a new TCP connection each time); "keepalive" runs one curl for all of them, which keeps a
# connection to each exporter open, as Prometheus does.
run() {
	label=$1
	mode=$2
	shift 2
	ours_size=$(curl -s -o /dev/null -w '%{size_download}' "$@" "$OURS")
	theirs_size=$(curl -s -o /dev/null -w '%{size_download}' "$@" "$THEIRS")
	: >"$WORK/urls"
	i=0
	while [ $i -lt $((N + 10)) ]; do # the first 10 of each are warm-up
		if [ $((i % 2)) -eq 0 ]; then
			printf 'url = "%s"\noutput = "/dev/null"\nurl = "%s"\noutput = "/dev/null"\n' "$OURS" "$THEIRS" >>"$WORK/urls"
		else
			printf 'url = "%s"\noutput = "/dev/null"\nurl = "%s"\noutput = "/dev/null"\n' "$THEIRS" "$OURS" >>"$WORK/urls"
		fi
		i=$((i + 1))
	done
	if [ "$mode" = keepalive ]; then
		curl -s -w '%{url_effective} %{time_total}\n' "$@" -K "$WORK/urls" >"$WORK/times"
	else
		: >"$WORK/times"
		sed -n 's/^url = "\(.*\)"$/\1/p' "$WORK/urls" | while read -r url; do
			curl -s -o /dev/null -w '%{url_effective} %{time_total}\n' "$@" "$url" >>"$WORK/times"
		done
	fi
	grep -F "$OURS " "$WORK/times" | tail -n "$N" | cut -d' ' -f2 >"$WORK/ours.t"
	grep -F "$THEIRS " "$WORK/times" | tail -n "$N" | cut -d' ' -f2 >"$WORK/theirs.t"
	set -- $(stats "$WORK/ours.t") $(stats "$WORK/theirs.t")
	printf '%-22s ours median %s ms (p90 %s, %s bytes)   node_exporter median %s ms (p90 %s, %s bytes)   ratio ours/theirs %s\n' \
		"$label" "$1" "$2" "$ours_size" "$3" "$4" "$theirs_size" "$(awk -v a="$1" -v b="$3" 'BEGIN { printf "%.2f", a / b }')"
}

echo "$N scrapes of each, alternating:"
run "keep-alive" keepalive
run "keep-alive, gzip" keepalive -H "Accept-Encoding: gzip"
run "new connection" fresh

echo "allocations per scrape (BenchmarkHostScrape, real /proc, no HTTP):"
(cd "$ROOT" && go test ./collector -run '^$' -bench '^BenchmarkHostScrape$' -benchtime 2000x | grep Benchmark)

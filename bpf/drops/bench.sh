#!/usr/bin/env bash
# Cost of the drop tracer, run by hand as root: bash bpf/drops/bench.sh [COUNT]
# A drop storm (segments injected through a raw socket, each dropped by tcp_validate_incoming on an
# established loopback socket in a fresh namespace) and a drop-free ping-pong, each without (off) and with
# (on) the tracer attached for every namespace. Prints, per benchmark, the median and the minimum CPU time
# per packet of each variant, their ratio and difference, and the kernel's own account of the program's run
# time per drop (BPF_ENABLE_STATS). On a shared machine the A/B medians are noisy; the minimum and the
# in-kernel run time are the steadier figures. Bounded: COUNT (default 5) runs of 200,000 packets each.
set -euo pipefail
cd "$(dirname "$0")"
count=${1:-5}
out=$(go test -count=1 -run '^$' -bench 'DropStorm|NoDrops' -benchtime 200000x -count "$count" . | tee /dev/stderr)
awk '
function sort(a, n,   i, j, t) { for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t } }
function median(a, n) { sort(a, n); return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2 }
/^Benchmark/ {
	split($1, p, "/"); bench = p[1]; sub(/^Benchmark/, "", bench); v = p[2]; sub(/-[0-9]+$/, "", v)
	for (i = 3; i < NF; i++) {
		if ($(i+1) == "cpu-ns/drop" || $(i+1) == "cpu-ns/op") { k = bench SUBSEP v; n[k]++; cpu[k, n[k]] = $i }
		if ($(i+1) == "drops/s") { k = bench SUBSEP v; rate[k] += $i; nr[k]++ }
		if ($(i+1) == "bpf-ns/drop") { nb[bench]++; bpf[bench, nb[bench]] = $i }
		if ($(i+1) == "bpf-runs/op") { runs[bench] += $i; nruns[bench]++ }
	}
	benches[bench] = 1
}
END {
	for (b in benches) {
		for (vi = 1; vi <= 2; vi++) {
			v = vi == 1 ? "off" : "on"; k = b SUBSEP v
			delete x; for (i = 1; i <= n[k]; i++) x[i] = cpu[k, i]
			med[v] = median(x, n[k]); mn[v] = x[1]
		}
		printf "%s: CPU per packet median off %.0f ns, on %.0f ns (ratio %.2f, +%.0f ns); minimum off %.0f ns, on %.0f ns (ratio %.2f, +%.0f ns)\n",
			b, med["off"], med["on"], med["on"]/med["off"], med["on"]-med["off"], mn["off"], mn["on"], mn["on"]/mn["off"], mn["on"]-mn["off"]
		if (nr[b SUBSEP "off"]) printf "%s: drop rate off %.0f/s, on %.0f/s (mean)\n", b, rate[b SUBSEP "off"]/nr[b SUBSEP "off"], rate[b SUBSEP "on"]/nr[b SUBSEP "on"]
		if (nb[b]) { delete x; for (i = 1; i <= nb[b]; i++) x[i] = bpf[b, i]; printf "%s: BPF program run time per drop (kernel statistics), median %.0f ns (target < 200 ns)\n", b, median(x, nb[b]) }
		if (nruns[b]) printf "%s: BPF program runs per packet (whole host) %.4f: the tracepoint does not fire without drops\n", b, runs[b]/nruns[b]
	}
}' <<<"$out"

# Sourced by the hand-run bench.sh scripts (sockdiag, bpf/sockiter) from the repository's root; $tmp, a
# scratch directory they may set afterwards, is removed on exit. It ends the script unless run as root, and defines
# isolated_netns NAME EHASH: it creates the network namespace NAME with an established-hash table of EHASH
# entries of its own, so that the host's sockets do not slow its dumps (net.ipv4.tcp_child_ehash_entries is
# set while the namespace is created and put back at once, under the lock the Go tests take in
# testenv.NewIsolatedNetNS, so that a test running meanwhile cannot save our value as the one to restore),
# and brings its lo up. The namespace, and the sysctl if interrupted between setting and restoring it, are
# cleaned up on exit.

if [ "$(id -u)" -ne 0 ]; then
	echo "bench.sh: needs root (network namespaces, sysctl, BPF)" >&2
	exit 1
fi

bench_ns=
bench_old=
bench_sysctl=/proc/sys/net/ipv4/tcp_child_ehash_entries
bench_cleanup() {
	[ -z "$bench_ns" ] || ip netns delete "$bench_ns" 2>/dev/null || true
	[ -z "$bench_old" ] || echo "$bench_old" >"$bench_sysctl"
	[ -z "${tmp:-}" ] || rm -rf "$tmp"
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

isolated_netns() {
	exec 9>/run/lock/sockbuf-test-sysctl.lock
	flock 9
	bench_old=$(cat "$bench_sysctl")
	echo "$2" >"$bench_sysctl"
	bench_ns=$1
	ip netns add "$1"
	echo "$bench_old" >"$bench_sysctl"
	bench_old=
	flock -u 9
	ip -n "$1" link set lo up
}

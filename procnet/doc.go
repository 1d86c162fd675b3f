// Package procnet reads the kernel's network state from procfs into typed values: the TcpExt and Tcp
// counters (/proc/net/netstat, /proc/net/snmp), /proc/net/sockstat, the buffer sysctls under /proc/sys/net and
// /proc/net/softnet_stat. Reading and parsing are split (Parse* take bytes, FS reads files), and a field the
// running kernel does not have is reported as absent, never as 0. It knows nothing of Prometheus: the
// collectors and `diagnose` both use it.
//
// The parsers are ours rather than github.com/prometheus/procfs's (v0.23.0, which has Netstat, Snmp,
// NetSockstat and NetSoftnetStat): those store counters as float64 (a counter above 2^53 loses precision and
// "-1", "NaN" or "1e3" pass), keep a fixed field list (an unknown field is dropped, a truncated file goes
// unnoticed), and open the file and allocate per field on every read, while a scrape here preads kept
// descriptors into a pooled buffer. These parsers check what those do not: a header/value count mismatch, a
// last line without its newline (a truncated read), a number that is negative, non-numeric or beyond uint64.
//
// Input is bounded so that a crafted procfs tree costs little: a read stops at MaxFileSize (ErrTooLarge), a
// buffer grown beyond 1 MiB is not pooled, and softnet_stat may have no more rows than the host has possible
// CPUs.
package procnet

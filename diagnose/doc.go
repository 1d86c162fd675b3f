// Package diagnose names the cause of receive-buffer trouble from evidence: a pure function from an Evidence
// snapshot (counter increases, sysctls and socket-group samples over a window) to findings ordered by harm,
// each with the evidence that shows it, the change to make and the PromQL that shows it helped.
//
// It does no I/O and imports no Prometheus: the exporter's /proc parsers, sock_diag dumps and bpf tracer fill
// Evidence, and the CLI and the /diagnose endpoint render the Report as JSON or text. Every rule is grounded
// in what the kernel does (net/ipv4/tcp_input.c above all), cited where the rule is written, and lowers its
// confidence, saying why, when the evidence that would settle it was not available.
package diagnose

// Package attack holds the hardening tests: what an attacker (or a broken kernel, a misconfigured container)
// can put where the exporter reads, and what a client can do to its HTTP server. Crafted procfs trees are
// generated in the tests from one recorded fixture and run through the collectors and through the real
// binary; the HTTP abuse (idle connections, slowloris, scrape floods, a low descriptor limit, bad timeout
// headers) is done to the real binary. Each case has its expected outcome: a clear error or an absent
// metric, never a crash, a hang or a wrong number.
package attack

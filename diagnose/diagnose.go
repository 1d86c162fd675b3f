package diagnose

import "slices"

// rules are the independent rules, in no particular order: Diagnose sorts their findings.
var rules = []func(*analysis) []Finding{
	rulePinned,
	ruleCapped,
	ruleTCPRmemMaxLow,
	ruleSlowReader,
	ruleTCPMemPressure,
	ruleCgroupMemoryPressure,
	ruleAcceptQueueOverflow,
	ruleBacklogDrops,
	ruleSoftnetBacklog,
	ruleGrowthOnly,
}

// Diagnose runs every rule over ev and returns the findings, most harmful first. An empty list means no
// receive-buffer problem was seen. The same evidence always gives the same report.
func Diagnose(ev *Evidence) Report {
	if ev == nil {
		ev = &Evidence{}
	}
	a := newAnalysis(ev)
	var found []Finding
	for _, r := range rules {
		found = append(found, r(a)...)
	}
	found = append(found, ruleUnattributedOverflow(a, found)...)
	slices.SortStableFunc(found, compareFindings)
	if found == nil {
		found = []Finding{}
	}
	return Report{WindowSeconds: windowSeconds(ev.Window, 0), Findings: found, Missing: missing(ev)}
}

// missing names the evidence that was not available, for the text rendering.
func missing(ev *Evidence) []string {
	s := ev.Sources
	var out []string
	for _, m := range []struct {
		ok   bool
		what string
	}{
		{s.Netstat, "TCP counters (/proc/net/netstat, snmp)"},
		{s.Sockstat, "TCP memory (/proc/net/sockstat)"},
		{s.Sysctl, "sysctls (/proc/sys/net)"},
		{s.Softnet, "softnet_stat"},
		{s.Sockets, "socket dumps (sock_diag)"},
		{s.TCPInfo, "tcp_info (zero windows per group)"},
		{s.RcvbufLock, "the SO_RCVBUF lock bit per socket"},
		{s.BPFDrops, "bpf drop reasons per group"},
		{s.BPFGrowth, "bpf buffer growth per group"},
		{s.BPFLimits, "bpf memory limit hits per cgroup"},
		{s.Cgroups, "cgroup memory files"},
	} {
		if !m.ok {
			out = append(out, m.what)
		}
	}
	return out
}

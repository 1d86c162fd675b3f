package diagnose

import (
	"bytes"
	"cmp"
	"encoding/json"
	"math"
	"slices"
	"time"
)

// Cause IDs. They are part of the JSON contract: never rename one.
const (
	CauseRcvbufPinned          = "rcvbuf_pinned"
	CauseRcvbufCappedByRmemMax = "rcvbuf_capped_by_rmem_max"
	CauseTCPRmemMaxLow         = "tcp_rmem_max_low"
	CauseSlowReader            = "slow_reader"
	CauseTCPMemPressure        = "tcp_mem_pressure"
	CauseCgroupMemoryPressure  = "cgroup_memory_pressure"
	CauseAcceptQueueOverflow   = "accept_queue_overflow"
	CauseBacklogDrops          = "backlog_drops"
	CauseSoftnetBacklog        = "softnet_backlog"
	CauseGrowthOnly            = "growth_only"
	// CauseUnattributedOverflow: the namespace's counters show receive data collapsed or lost, but no socket
	// group could be named (none seen full, no bpf evidence).
	CauseUnattributedOverflow = "unattributed_overflow"
)

// Confidence of a finding; the evidence strings say why.
type Confidence string

const (
	High   Confidence = "high"
	Medium Confidence = "medium"
	Low    Confidence = "low"
)

func (c Confidence) rank() int {
	switch c {
	case High:
		return 0
	case Medium:
		return 1
	}
	return 2
}

// Harm orders findings: data lost first, then CPU and latency spent compacting queues, then stalled readers
// and throttled buffers, then what is only informational.
type Harm int

const (
	HarmDataLost Harm = iota
	HarmCPU
	HarmStall
	HarmInfo
)

// Scope is the socket group, listener or host a finding is about; empty fields are not narrowed (a
// host-wide finding has all of them empty).
type Scope struct {
	Role    string `json:"role"`
	Port    string `json:"port"`
	Cgroup  string `json:"cgroup"`
	Process string `json:"process"`
}

// Finding is one named cause with what shows it, what to change and the query that shows it helped.
type Finding struct {
	Cause      string     `json:"cause"`
	Confidence Confidence `json:"confidence"`
	Scope      Scope      `json:"scope"`
	Evidence   []string   `json:"evidence"`
	Fix        []string   `json:"fix"`
	// Verify is PromQL on the exporter's metrics whose value falls after the fix.
	Verify string `json:"verify"`

	// Harm and Weight order findings and are not part of the JSON contract. Weight is the size of the harm
	// (packets lost, segments collapsed, sockets stalled) within one harm class.
	Harm   Harm    `json:"-"`
	Weight float64 `json:"-"`
}

// Report is the outcome of one diagnosis: the JSON contract of `sockbuf_exporter diagnose --format=json`
// and of /diagnose?format=json.
type Report struct {
	WindowSeconds float64   `json:"window_seconds"`
	Findings      []Finding `json:"findings"`
	// Missing names the evidence that could not be collected; shown in the text only.
	Missing []string `json:"-"`
}

// MarshalJSON keeps the contract whatever the Report holds: findings is a list, never null, and every
// finding's evidence and fix are lists.
func (r Report) MarshalJSON() ([]byte, error) {
	type report Report
	out := report(r)
	out.WindowSeconds = windowSeconds(time.Duration(0), r.WindowSeconds)
	out.Findings = make([]Finding, len(r.Findings))
	for i, f := range r.Findings {
		if f.Evidence == nil {
			f.Evidence = []string{}
		}
		if f.Fix == nil {
			f.Fix = []string{}
		}
		out.Findings[i] = f
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // a caller's encoder decides about escaping
	if err := enc.Encode(out); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// windowSeconds is d (or s when d is 0) in seconds to the millisecond, never negative or NaN.
func windowSeconds(d time.Duration, s float64) float64 {
	if d != 0 {
		s = d.Seconds()
	}
	if math.IsNaN(s) || math.IsInf(s, 0) || s < 0 {
		return 0
	}
	return math.Round(s*1000) / 1000
}

// compareFindings orders by harm, then surer first, then bigger first, then by cause and scope, so that the
// order never depends on the order of the evidence.
func compareFindings(a, b Finding) int {
	return cmp.Or(
		cmp.Compare(a.Harm, b.Harm),
		cmp.Compare(a.Confidence.rank(), b.Confidence.rank()),
		-cmp.Compare(a.Weight, b.Weight),
		cmp.Compare(a.Cause, b.Cause),
		cmp.Compare(a.Scope.Role, b.Scope.Role),
		cmp.Compare(a.Scope.Port, b.Scope.Port),
		cmp.Compare(a.Scope.Cgroup, b.Scope.Cgroup),
		cmp.Compare(a.Scope.Process, b.Scope.Process),
		cmp.Compare(a.Verify, b.Verify),
		slices.Compare(a.Evidence, b.Evidence),
	)
}

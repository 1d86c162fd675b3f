package diagnose

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// addSat adds without wrapping: a sum of huge counters stays huge.
func addSat(a, b uint64) uint64 {
	if a > math.MaxUint64-b {
		return math.MaxUint64
	}
	return a + b
}

func maxValue(a, b Value) Value {
	if !b.Known {
		return a
	}
	if !a.Known || b.V > a.V {
		return b
	}
	return a
}

// bytesStr prints a byte count with its binary size when that helps: "131072 bytes (128 KiB)".
func bytesStr(v uint64) string {
	s := strconv.FormatUint(v, 10) + " bytes"
	units := []string{"KiB", "MiB", "GiB", "TiB"}
	f := float64(v)
	u := -1
	for f >= 1024 && u < len(units)-1 {
		f /= 1024
		u++
	}
	if u < 0 {
		return s
	}
	return fmt.Sprintf("%s (%s %s)", s, strconv.FormatFloat(math.Round(f*10)/10, 'f', -1, 64), units[u])
}

// rateStr is "N (x/s)" over the window, or "N" when the window is unknown.
func (a *analysis) rateStr(n uint64) string {
	if a.win <= 0 {
		return strconv.FormatUint(n, 10)
	}
	return fmt.Sprintf("%d (%s/s)", n, fmtFloat(float64(n)/a.win))
}

func fmtFloat(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "?"
	}
	switch {
	case f >= 100:
		return strconv.FormatFloat(math.Round(f), 'f', -1, 64)
	case f >= 1:
		return strconv.FormatFloat(math.Round(f*10)/10, 'f', -1, 64)
	}
	return strconv.FormatFloat(f, 'g', 2, 64)
}

// perSegs is ", x per 1000 segments received" when InSegs is known and not 0.
func (a *analysis) perSegs(n uint64) string {
	in := a.ev.Netstat.InSegs
	if !in.Known || in.V == 0 {
		return ""
	}
	return fmt.Sprintf(", %s per 1000 segments received", fmtFloat(float64(n)*1000/float64(in.V)))
}

// matchers renders PromQL label matchers for the given label pairs, skipping empty values.
func matchers(pairs ...string) string {
	var b strings.Builder
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(pairs[i])
		b.WriteByte('=')
		b.WriteString(strconv.Quote(pairs[i+1]))
	}
	if b.Len() == 0 {
		return ""
	}
	return "{" + b.String() + "}"
}

// groupMatchers selects a group's series of the sockets collector's metrics.
func groupMatchers(k GroupKey) string {
	return matchers("role", k.Role, "port", k.Port, "cgroup", k.Cgroup, "process", k.Process)
}

// describe names a group for a person.
func describe(k GroupKey) string {
	var s string
	switch k.Role {
	case "server":
		s = "server sockets on local port " + k.Port
	case "client":
		s = "client sockets to remote port " + k.Port
	default:
		s = "sockets of port " + k.Port
	}
	if k.Process != "" {
		s += " of process " + k.Process
	}
	if k.Cgroup != "" {
		s += " in cgroup " + k.Cgroup
	}
	return s
}

func scopeOf(k GroupKey) Scope {
	return Scope(k)
}

// trimBraces turns {a="b"} into ,a="b" for appending to a matcher list.
func trimBraces(m string) string {
	if m == "" {
		return ""
	}
	return "," + m[1:len(m)-1]
}

func appName(k GroupKey) string {
	if k.Process != "" {
		return "the application (" + k.Process + ")"
	}
	return "the application"
}

func rmem2Str(a *analysis) string {
	if r := a.ev.Sysctl.TCPRmem[2]; r.Known {
		return " (" + bytesStr(r.V) + ")"
	}
	return ""
}

func valueStr(v Value) string {
	if !v.Known {
		return "n/a"
	}
	return fmt.Sprint(v.V)
}

func mulSat(a, b uint64) uint64 {
	if a != 0 && b > ^uint64(0)/a {
		return ^uint64(0)
	}
	return a * b
}

func minConf(a, b Confidence) Confidence {
	if a.rank() > b.rank() {
		return a
	}
	return b
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

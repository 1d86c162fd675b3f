package dashboards

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// A source query: where it came from and its PromQL.
type promQuery struct {
	where string // "sockbuf-host.json: Receive-queue pruning (A)"
	expr  string
	// kind says how the end-to-end test runs it: "range" and "instant" panel targets, "annotation",
	// "variable" (label_values), or "rule".
	kind string
}

// dashboardQueries extracts every query of a dashboard JSON file: panel targets, annotations and variables.
func dashboardQueries(file string) ([]promQuery, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr    string `json:"expr"`
				RefID   string `json:"refId"`
				Instant bool   `json:"instant"`
			} `json:"targets"`
		} `json:"panels"`
		Annotations struct {
			List []struct {
				Name string `json:"name"`
				Expr string `json:"expr"`
			} `json:"list"`
		} `json:"annotations"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	var out []promQuery
	for _, p := range d.Panels {
		for _, t := range p.Targets {
			kind := "range"
			if t.Instant {
				kind = "instant"
			}
			out = append(out, promQuery{where: fmt.Sprintf("%s: %s (%s)", file, p.Title, t.RefID), expr: t.Expr, kind: kind})
		}
	}
	for _, a := range d.Annotations.List {
		if a.Expr != "" {
			out = append(out, promQuery{where: file + ": annotation " + a.Name, expr: a.Expr, kind: "annotation"})
		}
	}
	for _, v := range d.Templating.List {
		s, ok := v.Query.(string)
		if v.Type != "query" || !ok {
			continue
		}
		// label_values(selector, label) is Grafana's, not PromQL: the selector inside is what Prometheus runs.
		m := labelValues.FindStringSubmatch(s)
		if m == nil {
			return nil, fmt.Errorf("%s: variable %s: query %q is not label_values(selector, label)", file, v.Name, s)
		}
		out = append(out, promQuery{where: file + ": variable " + v.Name, expr: m[1], kind: "variable"})
	}
	return out, nil
}

var labelValues = regexp.MustCompile(`^label_values\((.+),\s*\w+\)$`)

// ruleQueries extracts the expressions of a rule file, and the names it records.
func ruleQueries(file string) (qs []promQuery, records []string, err error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, err
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Record, Alert, Expr string
			}
		}
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", file, err)
	}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			qs = append(qs, promQuery{where: file + ": " + r.Record + r.Alert, expr: r.Expr, kind: "rule"})
			if r.Record != "" {
				records = append(records, r.Record)
			}
		}
	}
	return qs, records, nil
}

// Grafana's variables, and what stands in for them when a query is run outside Grafana.
var (
	varRef       = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)`)
	intervalVars = map[string]string{
		"__rate_interval": "1m", "__interval": "1m", "__range": "1h", "__range_s": "3600", "__interval_ms": "60000",
	}
)

// fillVariables substitutes Grafana variables: intervals by durations, every other variable (job, instance,
// ...) by the regex vals gives or ".*".
func fillVariables(expr string, vals map[string]string) string {
	return varRef.ReplaceAllStringFunc(expr, func(ref string) string {
		m := varRef.FindStringSubmatch(ref)
		name := m[1] + m[2]
		if d, ok := intervalVars[name]; ok {
			return d
		}
		if v, ok := vals[name]; ok {
			return v
		}
		return ".*"
	})
}

// PromQL words that are not metric names where they appear as bare identifiers.
var promqlKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "by": true, "without": true, "on": true,
	"ignoring": true, "group_left": true, "group_right": true, "offset": true, "inf": true, "nan": true,
	"atan2": true,
}

// labelListKeywords are followed by a parenthesised list of label names, not expressions.
var labelListKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// metricNames returns the metric names an expression selects. It is a small lexer, not a parser: it skips
// strings, label matchers in {}, durations in [], label lists after by/without/on/ignoring/group_*,
// numbers, and identifiers called as functions or aggregations. promtool checks the syntax separately.
func metricNames(expr string) ([]string, error) {
	seen := map[string]bool{}
	braces, brackets := 0, 0
	skipList := false // the next (...) is a label list
	listDepth := -1   // paren depth at which a label list ends, or -1
	depth := 0
	i := 0
	next := func() (rune, bool) { // the next non-space character
		for j := i; j < len(expr); j++ {
			if !strings.ContainsRune(" \t\n\r", rune(expr[j])) {
				return rune(expr[j]), true
			}
		}
		return 0, false
	}
	for i < len(expr) {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for j < len(expr) && expr[j] != c {
				if expr[j] == '\\' && c != '`' {
					j++
				}
				j++
			}
			if j >= len(expr) {
				return nil, fmt.Errorf("unterminated string at %d", i)
			}
			i = j + 1
		case c == '#': // comment to end of line
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case c == '{':
			braces++
			i++
		case c == '}':
			braces--
			i++
		case c == '[':
			brackets++
			i++
		case c == ']':
			brackets--
			i++
		case c == '(':
			depth++
			if skipList {
				listDepth, skipList = depth, false
			}
			i++
		case c == ')':
			if depth == listDepth {
				listDepth = -1
			}
			depth--
			i++
		case c >= '0' && c <= '9' || c == '.':
			for i < len(expr) && (isIdent(expr[i]) || expr[i] == '.' || ((expr[i] == '+' || expr[i] == '-') && (expr[i-1] == 'e' || expr[i-1] == 'E'))) {
				i++
			}
		case isIdentStart(c):
			j := i
			for j < len(expr) && isIdent(expr[j]) {
				j++
			}
			word := expr[i:j]
			i = j
			if braces > 0 || brackets > 0 || listDepth >= 0 {
				continue
			}
			lw := strings.ToLower(word)
			if labelListKeywords[lw] {
				skipList = true
				continue
			}
			if promqlKeywords[lw] {
				continue
			}
			n, ok := next()
			if ok && n == '(' {
				continue // a function or an aggregation: sum(...)
			}
			if ok && isIdentStart(byte(n)) {
				// "sum by (...)" or "sum without (...)": the aggregation is followed by its grouping.
				rest := strings.TrimLeft(expr[i:], " \t\n\r")
				if strings.HasPrefix(rest, "by") || strings.HasPrefix(rest, "without") {
					continue
				}
			}
			seen[word] = true
		default:
			i++
		}
	}
	if braces != 0 || brackets != 0 || depth != 0 {
		return nil, fmt.Errorf("unbalanced brackets")
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isIdent(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

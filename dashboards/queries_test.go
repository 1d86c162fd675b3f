package dashboards

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sockbuf/sockbuf_exporter/collector"
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

var (
	dashboardFiles = []string{"sockbuf-host.json", "sockbuf-sockets.json"}
	ruleFiles      = []string{"../deploy/rules/alerts.yml", "../deploy/rules/recording.yml"}
)

// allDashboardQueries returns every query of both dashboards.
func allDashboardQueries(t *testing.T) []promQuery {
	t.Helper()
	var qs []promQuery
	for _, f := range dashboardFiles {
		d, err := dashboardQueries(f)
		if err != nil {
			t.Fatal(err)
		}
		qs = append(qs, d...)
	}
	return qs
}

// allQueries returns every query of both dashboards and both rule files, and the recorded metric names.
func allQueries(t *testing.T) ([]promQuery, []string) {
	t.Helper()
	qs := allDashboardQueries(t)
	var records []string
	for _, f := range ruleFiles {
		r, rec, err := ruleQueries(f)
		if err != nil {
			t.Fatal(err)
		}
		qs = append(qs, r...)
		records = append(records, rec...)
	}
	if len(qs) < 50 {
		t.Fatalf("found only %d queries; the extraction is broken", len(qs))
	}
	return qs, records
}

// exportedNames is every series name a query may select: what the exporter exports (histograms add their
// _bucket, _sum and _count series), the recording rules' names, and the series Prometheus makes itself
// (up for every target, ALERTS for the dashboards' alert annotations).
func exportedNames(records []string) map[string]bool {
	ok := map[string]bool{"up": true, "ALERTS": true}
	for _, m := range collector.Metrics() {
		n := m.FullName()
		ok[n] = true
		if m.Type == collector.Histogram {
			ok[n+"_bucket"], ok[n+"_sum"], ok[n+"_count"] = true, true, true
		}
	}
	for _, r := range records {
		ok[r] = true
	}
	return ok
}

// TestQueriesNameExportedMetrics checks that every dashboard and rule query selects only metrics the
// exporter exports (or the recording rules record).
func TestQueriesNameExportedMetrics(t *testing.T) {
	qs, records := allQueries(t)
	ok := exportedNames(records)
	missing := map[string][]string{}
	for _, q := range qs {
		names, err := metricNames(fillVariables(q.expr, nil))
		if err != nil {
			t.Errorf("%s: %q: %v", q.where, q.expr, err)
			continue
		}
		if len(names) == 0 {
			t.Errorf("%s: %q selects no metric", q.where, q.expr)
		}
		for _, n := range names {
			if !ok[n] {
				missing[n] = append(missing[n], q.where)
			}
		}
	}
	names := make([]string, 0, len(missing))
	for n := range missing {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		t.Errorf("%s is not exported by any collector (collector.Metrics()) nor recorded; used by:\n\t%s",
			n, strings.Join(missing[n], "\n\t"))
	}
}

// TestQueriesParse runs every query, variables filled in, through `promtool check rules` as recording
// rules: the PromQL parser without importing Prometheus.
func TestQueriesParse(t *testing.T) {
	qs, _ := allQueries(t)
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	type group struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	}
	var rules []rule
	for i, q := range qs {
		rules = append(rules, rule{Record: fmt.Sprintf("query_%d", i), Expr: fillVariables(q.expr, nil)})
	}
	b, err := yaml.Marshal(map[string][]group{"groups": {{Name: "queries", Rules: rules}}})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "queries.yml")
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	bin := testenv.RequireBinary(t, "promtool", "prometheus")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "check", "rules", file).CombinedOutput()
	if err != nil {
		// promtool names the failing rule by index; map it back to the dashboard panel or rule.
		msg := string(out)
		for i := len(qs) - 1; i >= 0; i-- {
			msg = strings.ReplaceAll(msg, fmt.Sprintf("query_%d", i), qs[i].where)
		}
		t.Fatalf("promtool check rules: %v\n%s", err, msg)
	}
	t.Logf("promtool check rules on %d queries:\n%s", len(qs), out)
}

// TestMetricNamesLexer pins the lexer the metric-name check relies on.
func TestMetricNamesLexer(t *testing.T) {
	for expr, want := range map[string]string{
		`rate(a_total{job=~"x",le="0.5"}[5m])`:                                    "a_total",
		`sum by (le) (b_bucket{x="y"})`:                                           "b_bucket",
		`sum without (cpu) (rate(c[1m])) > 0.1`:                                   "c",
		`d / ignoring (level) e{level="max"} > 0.9`:                               "d e",
		`topk(20, f) and on (port) group_left (role) g offset 5m`:                 "f g",
		`instance:h:rate5m / (instance:i:rate5m > 0)`:                             "instance:h:rate5m instance:i:rate5m",
		`histogram_quantile(0.9, sum(rate(j_bucket[5m])) by (le)) * 1e3 + Inf`:    "j_bucket",
		`label_replace(k, "dst", "$1", "src", "(.*)") or vector(0) unless on() l`: "k l",
	} {
		got, err := metricNames(expr)
		if err != nil {
			t.Errorf("%s: %v", expr, err)
			continue
		}
		if strings.Join(got, " ") != want {
			t.Errorf("metricNames(%s) = %v, want %s", expr, got, want)
		}
	}
}

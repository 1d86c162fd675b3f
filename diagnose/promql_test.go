package diagnose

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

// plannedMetrics are the bpf collector's metrics (issue 12), not yet in docs/metrics.md; a verify query may
// use them only when the bpf evidence was there.
var plannedMetrics = []string{
	"sockbuf_tcp_receive_drops_total",
	"sockbuf_rcvbuf_locked_sockets",
	"sockbuf_tcp_rcvbuf_grow_total",
	"sockbuf_socket_memory_limit_hits_total",
	"sockbuf_receive_drops_unattributed_total",
}

var metricName = regexp.MustCompile(`sockbuf_[a-z0-9_]+`)

// allQueries is every distinct PromQL a finding can carry: its verify query, and the queries quoted in fixes.
func allQueries() (verify []string, inFix []string) {
	seen := map[string]bool{}
	add := func(r Report) {
		for _, f := range r.Findings {
			if !seen[f.Verify] {
				seen[f.Verify] = true
				verify = append(verify, f.Verify)
			}
			for _, x := range f.Fix {
				if strings.Contains(x, "sockbuf_") {
					inFix = append(inFix, x)
				}
			}
		}
	}
	for _, ev := range goldenEvidence() {
		add(Diagnose(ev))
	}
	g := gen{prng{rand.New(rand.NewPCG(12, 14))}}
	for range 3000 {
		add(Diagnose(g.evidence()))
	}
	slices.Sort(verify)
	return verify, inFix
}

// TestQueriesNameExportedMetrics: every metric a finding names is in docs/metrics.md (generated from the
// collectors) or is one of the bpf collector's planned metrics.
func TestQueriesNameExportedMetrics(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, m := range metricName.FindAllString(string(doc), -1) {
		known[m] = true
	}
	for _, m := range plannedMetrics {
		known[m] = true
	}
	verify, inFix := allQueries()
	if len(verify) < 10 {
		t.Fatalf("only %d distinct verify queries: the generator no longer reaches the rules", len(verify))
	}
	for _, q := range append(verify, inFix...) {
		for _, m := range metricName.FindAllString(q, -1) {
			if !known[m] {
				t.Errorf("%q names %s, which the exporter does not export", q, m)
			}
		}
	}
}

// TestVerifyQueriesParse runs promtool over every verify query, as recording rules.
func TestVerifyQueriesParse(t *testing.T) {
	promtool := testenv.RequireBinary(t, "promtool", "prometheus")
	verify, _ := allQueries()
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	for i, q := range verify {
		rules = append(rules, rule{Record: fmt.Sprintf("diagnose:verify%d", i), Expr: q})
	}
	doc := map[string]any{"groups": []map[string]any{{"name": "diagnose_verify", "rules": rules}}}
	y, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "verify.yml")
	if err := os.WriteFile(path, y, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	t.Logf("promtool: %d verify queries parse", len(verify))
}

package e2e

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestParseMetrics(t *testing.T) {
	text := `# TYPE a_total counter
a_total{z="1",b="2"} 3
# TYPE g gauge
g 1.5
# TYPE h histogram
h_bucket{le="0.5"} 1
h_bucket{le="+Inf"} 2
h_sum 1.25
h_count 2
`
	m, err := ParseMetrics([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	want := Metrics{
		`a_total{b="2",z="1"}`: 3,
		"g":                    1.5,
		`h_bucket{le="0.5"}`:   1,
		`h_bucket{le="+Inf"}`:  2,
		"h_sum":                1.25,
		"h_count":              2,
	}
	if diff := cmp.Diff(want, m); diff != "" {
		t.Errorf("ParseMetrics (-want +got):\n%s", diff)
	}
	if !m.Has("a_total") || m.Has("a") || m.Sum("h_bucket") != 3 {
		t.Errorf("Has/Sum wrong on %v", m)
	}
	if got := m.Select("a_total", map[string]string{"b": "2"}); len(got) != 1 {
		t.Errorf("Select b=2: %v", got)
	}
	if got := m.Select("a_total", map[string]string{"b": "1"}); len(got) != 0 {
		t.Errorf("Select b=1: %v", got)
	}
}

// TestHarness runs the whole chain once: exporter, Prometheus scraping it with a rule that always fires,
// Alertmanager delivering that alert to the webhook.
func TestHarness(t *testing.T) {
	Require(t)
	ns := testenv.NewNetNS(t)
	exp := StartExporter(t, ns)
	if m := exp.Scrape(t); !m.Has("sockbuf_build_info") {
		t.Errorf("scrape lacks sockbuf_build_info; has %v", m.Names())
	}

	rules := filepath.Join(t.TempDir(), "rules.yml")
	if err := os.WriteFile(rules, []byte(`groups:
  - name: harness
    rules:
      - alert: HarnessAlwaysFiring
        expr: up{job="sockbuf"} == 1
        labels: {severity: info}
        annotations: {summary: "{{ $labels.instance }} is up"}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	hook := StartWebhook(t, ns)
	am := StartAlertmanager(t, ns, AlertmanagerConfig{WebhookURL: hook.URL()})
	prom := StartPrometheus(t, ns, PrometheusConfig{
		Targets:       []string{exp.Addr},
		RuleFiles:     []string{rules},
		Alertmanagers: []string{am.Addr},
	})
	prom.WaitTargetsUp(t, 15*time.Second)
	got := prom.WaitQuery(t, `sockbuf_build_info`, 15*time.Second)
	if got[0].Metric["instance"] != exp.Addr {
		t.Errorf("sockbuf_build_info instance %q, want %q", got[0].Metric["instance"], exp.Addr)
	}
	a := hook.WaitAlert(t, "HarnessAlwaysFiring", 30*time.Second)
	if want := exp.Addr + " is up"; a.Annotations["summary"] != want {
		t.Errorf("summary %q, want %q", a.Annotations["summary"], want)
	}
}

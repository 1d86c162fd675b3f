package rules

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/btf"
	"gopkg.in/yaml.v3"

	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

// TestGenerated fails when the committed rule files differ from what DefaultConfig renders.
func TestGenerated(t *testing.T) {
	files, err := Files(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		testenv.Golden(t, name, want, false, "go generate ./deploy/rules")
	}
}

func promtool(t *testing.T, args ...string) string {
	t.Helper()
	bin := testenv.RequireBinary(t, "promtool", "prometheus")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %v: %v\n%s", args, err, out)
	}
	t.Logf("promtool %v:\n%s", args, out)
	return string(out)
}

// TestPromtoolCheckRules runs `promtool check rules` on both rule files.
func TestPromtoolCheckRules(t *testing.T) {
	promtool(t, "check", "rules", "alerts.yml", "recording.yml")
}

// TestPromtoolTestRules runs the unit tests in tests/.
func TestPromtoolTestRules(t *testing.T) {
	files, err := filepath.Glob("tests/*.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no promtool test files in tests/: %v", err)
	}
	promtool(t, append([]string{"test", "rules"}, files...)...)
}

// The parts of a promtool test file this package checks.
type unitTestFile struct {
	RuleFiles  []string `yaml:"rule_files"`
	TestGroups []struct {
		AlertRuleTests []struct {
			EvalTime  string `yaml:"eval_time"`
			AlertName string `yaml:"alertname"`
			ExpAlerts []struct {
				ExpLabels      map[string]string `yaml:"exp_labels"`
				ExpAnnotations map[string]string `yaml:"exp_annotations"`
			} `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// TestEveryAlertIsUnitTested makes sure each alert has a firing case with its labels and rendered annotations
// checked, and a case where it must not fire (yet). promtool itself would accept a test file that never
// mentions an alert.
func TestEveryAlertIsUnitTested(t *testing.T) {
	files, _ := filepath.Glob("tests/*.yml")
	firing := map[string]bool{}
	quiet := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var u unitTestFile
		if err := yaml.Unmarshal(b, &u); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, g := range u.TestGroups {
			for _, a := range g.AlertRuleTests {
				if len(a.ExpAlerts) == 0 {
					quiet[a.AlertName] = true
					continue
				}
				for _, e := range a.ExpAlerts {
					if e.ExpLabels["severity"] != "" && e.ExpAnnotations["description"] != "" &&
						e.ExpAnnotations["summary"] != "" && e.ExpAnnotations["runbook_url"] != "" {
						firing[a.AlertName] = true
					}
				}
			}
		}
	}
	for _, name := range AlertNames(DefaultConfig()) {
		if !firing[name] {
			t.Errorf("%s: no promtool case where it fires with severity, summary, description and runbook_url checked", name)
		}
		if !quiet[name] {
			t.Errorf("%s: no promtool case where it must not fire yet", name)
		}
	}
}

// TestRunbookSections checks every runbook_url anchor has its own section in docs/runbooks.md.
func TestRunbookSections(t *testing.T) {
	b, err := os.ReadFile("../../docs/runbooks.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range AlertNames(DefaultConfig()) {
		heading := regexp.MustCompile(`(?m)^## ` + regexp.QuoteMeta(name) + `\s*$`)
		if !heading.Match(b) {
			t.Errorf("docs/runbooks.md has no section %q (anchor #%s)", "## "+name, Anchor(name))
		}
	}
}

// TestAlertConventions enforces the house style on every alert.
func TestAlertConventions(t *testing.T) {
	c := DefaultConfig()
	// Alertmanager and Grafana render runbook_url as a link: a relative path would not open anywhere.
	if u, err := url.Parse(c.RunbookBase); err != nil || !u.IsAbs() || u.Host == "" || u.Fragment != "" {
		t.Errorf("RunbookBase %q must be an absolute URL without a fragment (err %v)", c.RunbookBase, err)
	}
	name := regexp.MustCompile(`^Sockbuf[A-Z][A-Za-z0-9]+$`)
	for _, g := range Alerting(c).Groups {
		for _, r := range g.Rules {
			if !name.MatchString(r.Alert) {
				t.Errorf("%s: alert names are CamelCase with the Sockbuf prefix", r.Alert)
			}
			switch r.Labels["severity"] {
			case "critical", "warning", "info":
			default:
				t.Errorf("%s: severity %q", r.Alert, r.Labels["severity"])
			}
			d := r.Annotations["description"]
			if !bytes.Contains([]byte(d), []byte("$labels.instance")) || !bytes.Contains([]byte(d), []byte("$value")) {
				t.Errorf("%s: description must name the instance and the value: %q", r.Alert, d)
			}
			if r.Annotations["summary"] == "" || r.Annotations["runbook_url"] != c.RunbookBase+"#"+Anchor(r.Alert) {
				t.Errorf("%s: summary or runbook_url missing: %v", r.Alert, r.Annotations)
			}
		}
	}
	for _, g := range Recording(c).Groups {
		for _, r := range g.Rules {
			if !regexp.MustCompile(`^[a-z_]+:[a-z0-9_]+:[a-z0-9_]+$`).MatchString(r.Record) {
				t.Errorf("recording rule %s is not named level:metric:operation", r.Record)
			}
		}
	}
}

// TestQuickConfig checks the test-only config: every duration divided by 60, and rules promtool accepts.
func TestQuickConfig(t *testing.T) {
	for in, want := range map[string]string{"5m": "5s", "15m": "15s", "1h": "1m", "2m": "2s", "0m": "0s", "30s": "1s"} {
		if got := sixtieth(in); got != want {
			t.Errorf("sixtieth(%q) = %q, want %q", in, got, want)
		}
	}
	files, err := Files(QuickConfig())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	promtool(t, "check", "rules", filepath.Join(dir, "alerts.yml"), filepath.Join(dir, "recording.yml"))
}

// TestDropReasonsExistInKernel checks every drop reason the rules count as loss (LossReasons), and every
// reason docs/harm.md classifies, against the running kernel's enum skb_drop_reason: a misspelt reason would
// silently select nothing.
func TestDropReasonsExistInKernel(t *testing.T) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		testenv.Missing(t, "reading the kernel's BTF: %v", err)
	}
	var enum *btf.Enum
	if err := spec.TypeByName("skb_drop_reason", &enum); err != nil {
		testenv.Missing(t, "the kernel's BTF has no enum skb_drop_reason: %v", err)
	}
	known := map[string]bool{}
	for _, v := range enum.Values {
		if r, ok := strings.CutPrefix(v.Name, "SKB_DROP_REASON_"); ok {
			known[strings.ToLower(r)] = true
		}
	}
	want := append([]string{}, DefaultConfig().LossReasons...)
	b, err := os.ReadFile("../../docs/harm.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(b), "## Drop reasons of the bpf collector")
	section, _, _ = strings.Cut(section, "\n## ")
	row := regexp.MustCompile(`(?m)^\| ([^|]+)\|`)
	name := regexp.MustCompile("`([a-z0-9_]+)`")
	rows := 0
	for _, m := range row.FindAllStringSubmatch(section, -1) {
		for _, n := range name.FindAllStringSubmatch(m[1], -1) {
			want = append(want, n[1])
			rows++
		}
	}
	if rows < 10 {
		t.Fatalf("found %d reasons in docs/harm.md's drop-reason table; the parsing is broken", rows)
	}
	for _, r := range want {
		if !known[r] {
			t.Errorf("drop reason %q is not in this kernel's enum skb_drop_reason (%d values)", r, len(enum.Values))
		}
	}
}

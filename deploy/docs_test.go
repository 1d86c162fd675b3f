package deploy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

// docExample is a fenced block of docs/deployment.md marked for checking with `<!-- check: KIND -->` on the line
// before it.
type docExample struct {
	kind string
	line int
	body string
}

var checkMarkRE = regexp.MustCompile("(?m)^<!-- check: ([a-z-]+) -->\n```[a-z]*\n((?s:.*?))\n```")

func docExamples(t *testing.T) []docExample {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "docs", "deployment.md"))
	if err != nil {
		t.Fatal(err)
	}
	var out []docExample
	for _, m := range checkMarkRE.FindAllStringSubmatchIndex(string(data), -1) {
		out = append(out, docExample{
			kind: string(data[m[2]:m[3]]),
			line: strings.Count(string(data[:m[0]]), "\n") + 1,
			body: string(data[m[4]:m[5]]) + "\n",
		})
	}
	if marks := strings.Count(string(data), "<!-- check:"); marks != len(out) {
		t.Fatalf("docs/deployment.md has %d check marks but only %d are followed by a fenced block", marks, len(out))
	}
	return out
}

// docsKustomizationBase is how the examples refer to deploy/kubernetes from a cluster repository next to a
// checkout of this one.
const docsKustomizationBase = "../../sockbuf_exporter/deploy/kubernetes"

// TestDocsExamples checks the configuration examples users copy from docs/deployment.md: Prometheus configs and
// rules with promtool, kustomizations by building them, and everything else for being valid YAML.
func TestDocsExamples(t *testing.T) {
	examples := docExamples(t)
	if len(examples) == 0 {
		t.Fatal("no checked examples in docs/deployment.md")
	}
	recorded := recordedSeries(t)
	for _, ex := range examples {
		name := fmt.Sprintf("line%d-%s", ex.line, ex.kind)
		t.Run(name, func(t *testing.T) {
			var generic any
			if err := yaml.UnmarshalStrict([]byte(ex.body), &generic); err != nil {
				t.Fatalf("docs/deployment.md:%d: not valid YAML: %v", ex.line, err)
			}
			switch ex.kind {
			case "yaml":
			case "prometheus-config":
				promtool(t, ex, "check", "config")
			case "promtool-rules":
				promtool(t, ex, "check", "rules")
				for _, m := range regexp.MustCompile(`\b(?:instance|group):sockbuf_[a-z0-9_:]+`).FindAllString(ex.body, -1) {
					if !recorded[m] {
						t.Errorf("docs/deployment.md:%d uses %s, which deploy/rules/recording.yml does not record", ex.line, m)
					}
				}
			case "kustomization":
				checkDocsKustomization(t, ex)
			default:
				t.Fatalf("docs/deployment.md:%d: unknown check %q", ex.line, ex.kind)
			}
		})
	}
}

func promtool(t *testing.T, ex docExample, args ...string) {
	t.Helper()
	bin := testenv.RequireBinary(t, "promtool", "prometheus")
	file := filepath.Join(t.TempDir(), "example.yml")
	if err := os.WriteFile(file, []byte(ex.body), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, append(args, file)...).CombinedOutput()
	if err != nil {
		t.Errorf("docs/deployment.md:%d: promtool %s: %v\n%s", ex.line, strings.Join(args, " "), err, out)
	}
}

// checkDocsKustomization builds an overlay from the docs against the real deploy/kubernetes and decodes its
// output strictly, so that a patch path or field that does not exist fails here and not on a user's cluster.
func checkDocsKustomization(t *testing.T, ex docExample) {
	t.Helper()
	if !strings.Contains(ex.body, docsKustomizationBase) {
		t.Fatalf("docs/deployment.md:%d: the example should refer to %s", ex.line, docsKustomizationBase)
	}
	// The layout the docs assume: <root>/my-cluster/<overlay> next to <root>/sockbuf_exporter, the checkout.
	repo, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if err := os.Symlink(repo, filepath.Join(root, "sockbuf_exporter")); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "my-cluster", "overlay")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(ex.body), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("docs/deployment.md:%d: kustomize build: %v", ex.line, err)
	}
	for _, r := range res.Resources() {
		data, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decodeStrict(data); err != nil {
			t.Errorf("docs/deployment.md:%d: %s/%s: %v", ex.line, r.GetKind(), r.GetName(), err)
		}
	}
}

// recordedSeries lists the series deploy/rules/recording.yml records.
func recordedSeries(t *testing.T) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "rules", "recording.yml"))
	if err != nil {
		testenv.Missing(t, "deploy/rules/recording.yml: %v", err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Record string `json:"record"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(data, &rules); err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				out[r.Record] = true
			}
		}
	}
	return out
}

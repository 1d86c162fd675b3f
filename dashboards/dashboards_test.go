package dashboards

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/sockbuf/sockbuf_exporter/deploy/rules"
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

// TestGenerated fails when the committed JSON differs from what the Go code builds.
func TestGenerated(t *testing.T) {
	files, err := Files()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		testenv.Golden(t, name, want, false, "go generate ./dashboards")
	}
}

// TestConventions enforces the house style on both dashboards: a fixed uid, the datasource, job and instance
// variables, and on every panel a unit, the datasource variable and a description that says what red means;
// every rate over $__rate_interval.
func TestConventions(t *testing.T) {
	wantUID := map[string]string{"sockbuf-host.json": "sockbuf-host", "sockbuf-sockets.json": "sockbuf-sockets"}
	for file, uid := range wantUID {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			UID    string `json:"uid"`
			Panels []struct {
				ID          int    `json:"id"`
				Type        string `json:"type"`
				Title       string `json:"title"`
				Description string `json:"description"`
				Datasource  struct {
					UID string `json:"uid"`
				} `json:"datasource"`
				FieldConfig struct {
					Defaults struct {
						Unit string `json:"unit"`
					} `json:"defaults"`
				} `json:"fieldConfig"`
			} `json:"panels"`
			Templating struct {
				List []struct {
					Name string `json:"name"`
				} `json:"list"`
			} `json:"templating"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatal(err)
		}
		if d.UID != uid {
			t.Errorf("%s: uid %q, want %q", file, d.UID, uid)
		}
		var vars []string
		for _, v := range d.Templating.List {
			vars = append(vars, v.Name)
		}
		if strings.Join(vars, ",") != "datasource,job,instance" {
			t.Errorf("%s: variables %v, want datasource, job, instance", file, vars)
		}
		ids := map[int]bool{}
		for _, p := range d.Panels {
			if ids[p.ID] || p.ID == 0 {
				t.Errorf("%s: %q: panel id %d missing or reused", file, p.Title, p.ID)
			}
			ids[p.ID] = true
			if p.Type == "row" {
				continue
			}
			if p.FieldConfig.Defaults.Unit == "" {
				t.Errorf("%s: %q has no unit", file, p.Title)
			}
			if p.Datasource.UID != "${datasource}" {
				t.Errorf("%s: %q does not use the datasource variable", file, p.Title)
			}
			if !strings.HasPrefix(p.Description, "Red") && !strings.HasPrefix(p.Description, "Never red") {
				t.Errorf("%s: %q: description must start by saying what red means: %q", file, p.Title, p.Description)
			}
		}
		qs, err := dashboardQueries(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range qs {
			for _, m := range rangeSelector.FindAllStringSubmatch(q.expr, -1) {
				if m[1] != "$__rate_interval" {
					t.Errorf("%s: range [%s] instead of [$__rate_interval] in %q", q.where, m[1], q.expr)
				}
			}
			if q.kind != "variable" && (!strings.Contains(q.expr, `job=~"$job"`) || !strings.Contains(q.expr, `instance=~"$instance"`)) {
				t.Errorf("%s: %q ignores the job or instance variable", q.where, q.expr)
			}
			// Recording rules are evaluated with the rules' own job selector and a fixed window: a panel
			// reading them is empty for other job names and ignores $__rate_interval. Panels compute from
			// the exporter's series instead.
			names, err := metricNames(fillVariables(q.expr, nil))
			if err != nil {
				t.Errorf("%s: %q: %v", q.where, q.expr, err)
			}
			for _, n := range names {
				if strings.Contains(n, ":") {
					t.Errorf("%s: reads recording rule %s; compute it from the exporter's metrics", q.where, n)
				}
			}
		}
	}
}

var rangeSelector = regexp.MustCompile(`\[([^\]]+)\]`)

// TestHistogramPanels checks the panels of the exporter's histograms. Those are snapshots of the sockets
// alive at each scrape (their HELP says so), so a panel must show the buckets as they are: no rate() or
// increase(), format "heatmap" so Grafana turns the cumulative le buckets into per-bucket counts, and on a
// heatmap no re-bucketing (calculate false) with rows laid out by their le upper bound.
func TestHistogramPanels(t *testing.T) {
	seen := 0
	for _, file := range dashboardFiles {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []struct {
				Type    string `json:"type"`
				Title   string `json:"title"`
				Targets []struct {
					Expr   string `json:"expr"`
					Format string `json:"format"`
				} `json:"targets"`
				Options struct {
					Calculate *bool `json:"calculate"`
					RowsFrame struct {
						Layout string `json:"layout"`
					} `json:"rowsFrame"`
				} `json:"options"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatal(err)
		}
		for _, p := range d.Panels {
			where := file + ": " + p.Title
			if p.Type == "heatmap" {
				if p.Options.Calculate == nil || *p.Options.Calculate {
					t.Errorf("%s: heatmap must not re-bucket the exporter's buckets (calculate false)", where)
				}
				if p.Options.RowsFrame.Layout != "le" {
					t.Errorf("%s: heatmap rows layout %q, want le (Prometheus bucket bounds)", where, p.Options.RowsFrame.Layout)
				}
			}
			for _, x := range p.Targets {
				if !strings.Contains(x.Expr, "_bucket") {
					if p.Type == "heatmap" {
						t.Errorf("%s: heatmap query %q reads no histogram buckets", where, x.Expr)
					}
					continue
				}
				seen++
				if counterFunc.MatchString(x.Expr) {
					t.Errorf("%s: %q applies a counter function to a snapshot histogram", where, x.Expr)
				}
				if x.Format != "heatmap" {
					t.Errorf("%s: %q has format %q, want heatmap", where, x.Expr, x.Format)
				}
				if !strings.Contains(x.Expr, "by (le)") {
					t.Errorf("%s: %q must keep le (sum by (le))", where, x.Expr)
				}
			}
		}
	}
	if seen < 2 {
		t.Errorf("found %d histogram queries, want the fill-ratio and rcvbuf-size panels", seen)
	}
}

var counterFunc = regexp.MustCompile(`\b(rate|irate|increase|delta|idelta)\(`)

// TestRunbookLinks checks every panel link into the runbooks names an alert the rules have, at the rules'
// RunbookBase.
func TestRunbookLinks(t *testing.T) {
	c := rules.DefaultConfig()
	anchors := map[string]bool{}
	for _, a := range rules.AlertNames(c) {
		anchors[c.RunbookBase+"#"+rules.Anchor(a)] = true
	}
	files, err := Files()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for name, b := range files {
		var d struct {
			Panels []struct {
				Title string `json:"title"`
				Links []struct {
					URL string `json:"url"`
				} `json:"links"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, p := range d.Panels {
			for _, l := range p.Links {
				n++
				if !anchors[l.URL] {
					t.Errorf("%s, panel %q: link %s is no alert's runbook", name, p.Title, l.URL)
				}
			}
		}
	}
	if n == 0 {
		t.Error("no panel links to a runbook")
	}
}

// TestRunbookPanelNames checks that every panel the runbooks and the harm model send a reader to
// ("*sockbuf / Host → Data lost*") exists: its name is a panel title or the start of one.
func TestRunbookPanelNames(t *testing.T) {
	files, err := Files()
	if err != nil {
		t.Fatal(err)
	}
	titles := map[string][]string{}
	for name, b := range files {
		var d struct {
			Title  string `json:"title"`
			Panels []struct {
				Title string `json:"title"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, p := range d.Panels {
			titles[d.Title] = append(titles[d.Title], p.Title)
		}
	}
	ref := regexp.MustCompile(`\*(sockbuf / \w+) → ([^*]+)\*`)
	for _, doc := range []string{"../docs/runbooks.md", "../docs/harm.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ref.FindAllStringSubmatch(string(b), -1) {
			for _, name := range strings.Split(m[2], "*, *") {
				found := false
				for _, title := range titles[m[1]] {
					found = found || strings.HasPrefix(title, strings.Join(strings.Fields(name), " "))
				}
				if !found {
					t.Errorf("%s sends readers to %s → %q, which has no such panel", doc, m[1], name)
				}
			}
		}
	}
}

package dashboards

import (
	"encoding/json"
	"flag"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the dashboard JSON files from the Go code")

// TestGenerated fails when the committed JSON differs from what the Go code builds.
func TestGenerated(t *testing.T) {
	files, err := Files()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		if *update {
			if err := os.WriteFile(name, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(name)
		if err != nil {
			t.Fatalf("%v (run: go generate ./dashboards)", err)
		}
		if diff := cmp.Diff(string(want), string(got)); diff != "" {
			t.Errorf("%s is stale; run: go generate ./dashboards (-want +got):\n%s", name, diff)
		}
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

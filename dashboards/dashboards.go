// Package dashboards builds sockbuf_exporter's Grafana dashboards as code with the Grafana Foundation SDK.
// The rendered JSON (sockbuf-host.json, sockbuf-sockets.json) is committed next to this file for import
// into Grafana; `go generate ./dashboards` rewrites it (go run ./gen), and TestGenerated fails when it is
// stale. Thresholds shared with the alerts come from rules.DefaultConfig.
package dashboards

//lint:file-ignore SA1019 Grafana imports and provisions the classic (v1) dashboard JSON on every supported version; dashboardv2 needs Grafana 12 with a feature flag.

//go:generate go run ./gen

import (
	"encoding/json"
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// Files returns every dashboard's JSON by file name.
func Files() (map[string][]byte, error) {
	out := map[string][]byte{}
	for name, build := range map[string]func() *dashboard.DashboardBuilder{
		"sockbuf-host.json":    Host,
		"sockbuf-sockets.json": Sockets,
	} {
		d, err := build().Build()
		if err != nil {
			return nil, fmt.Errorf("building %s: %w", name, err)
		}
		numberPanels(&d)
		b, err := json.MarshalIndent(d, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("encoding %s: %w", name, err)
		}
		out[name] = append(b, '\n')
	}
	return out, nil
}

// numberPanels gives every panel and row a stable id, unique within the dashboard: Grafana keys panel links
// (viewPanel=N) and the panel editor on it, and the SDK leaves it unset.
func numberPanels(d *dashboard.Dashboard) {
	var id uint32
	for i := range d.Panels {
		id++
		switch p := d.Panels[i]; {
		case p.Panel != nil:
			p.Panel.Id = cog.ToPtr(id)
		case p.RowPanel != nil:
			p.RowPanel.Id = id
		}
	}
}

// sel is the label selector every query carries, so that the job and instance variables apply everywhere.
const sel = `job=~"$job",instance=~"$instance"`

// ds points panels, queries and variables at the datasource the user picked.
var ds = common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${datasource}")}

// base returns a dashboard with the variables and alert annotations both dashboards share.
func base(uid, title, description string) *dashboard.DashboardBuilder {
	return dashboard.NewDashboardBuilder(title).
		Uid(uid).
		Description(description).
		Tags([]string{"sockbuf", "tcp", "linux"}).
		Editable().
		Refresh("1m").
		Time("now-3h", "now").
		Timezone(common.TimeZoneBrowser).
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").
			Label("Data source").
			Type("prometheus")).
		WithVariable(dashboard.NewQueryVariableBuilder("job").
			Label("Job").
			Datasource(ds).
			// The exporter always exports its per-collector success, so the variable finds every target.
			Query(dashboard.StringOrMap{String: cog.ToPtr("label_values(sockbuf_scrape_collector_success, job)")}).
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
			Sort(dashboard.VariableSortAlphabeticalAsc).
			Multi(true).
			IncludeAll(true).
			AllValue(".+")).
		WithVariable(dashboard.NewQueryVariableBuilder("instance").
			Label("Instance").
			Datasource(ds).
			Query(dashboard.StringOrMap{String: cog.ToPtr(`label_values(sockbuf_scrape_collector_success{job=~"$job"}, instance)`)}).
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
			Sort(dashboard.VariableSortAlphabeticalAsc).
			Multi(true).
			IncludeAll(true).
			AllValue(".+")).
		// Firing sockbuf alerts, from the ALERTS series Prometheus keeps for every active alert, so a spike
		// on a panel lines up with the alert it raised.
		Annotation(dashboard.NewAnnotationQueryBuilder().
			Name("sockbuf alerts").
			Datasource(ds).
			Enable(true).
			IconColor("red").
			Expr(`ALERTS{alertname=~"Sockbuf.*",alertstate="firing",` + sel + `}`).
			Step("60s").
			TitleFormat("{{alertname}}").
			TextFormat("{{severity}} on {{instance}}").
			TagKeys("severity"))
}

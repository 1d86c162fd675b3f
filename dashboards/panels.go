package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/bargauge"
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/heatmap"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"

	"github.com/sockbuf/sockbuf_exporter/deploy/rules"
)

// query is one PromQL target of a panel.
type query struct {
	expr, legend string
	// column, set with in(), gives a table column its own unit and colours when a table mixes quantities.
	column *column
}

type column struct {
	unit string
	th   *dashboard.ThresholdsConfigBuilder
}

func q(expr, legend string) query { return query{expr: expr, legend: legend} }

// in gives the query's table column its own unit and thresholds.
func (p query) in(unit string, th *dashboard.ThresholdsConfigBuilder) query {
	p.column = &column{unit: unit, th: th}
	return p
}

func (p query) range_() cog.Builder[variants.Dataquery] {
	return prometheus.NewDataqueryBuilder().Datasource(ds).Expr(p.expr).LegendFormat(p.legend).Range()
}

// instant is for tables, stats and bar gauges, which show the latest value only.
func (p query) instant(format prometheus.PromQueryFormat) cog.Builder[variants.Dataquery] {
	return prometheus.NewDataqueryBuilder().Datasource(ds).Expr(p.expr).LegendFormat(p.legend).Instant().Format(format)
}

func targets(qs []query, f func(query) cog.Builder[variants.Dataquery]) []cog.Builder[variants.Dataquery] {
	out := make([]cog.Builder[variants.Dataquery], 0, len(qs))
	refID := 'A'
	for _, x := range qs {
		b := f(x).(*prometheus.DataqueryBuilder).RefId(string(refID))
		out = append(out, b)
		refID++
	}
	return out
}

// redAbove colours values at or above red red, below green. Every panel gets one so "red" in its
// description means the same thing on the graph.
func redAbove(red float64) *dashboard.ThresholdsConfigBuilder {
	return dashboard.NewThresholdsConfigBuilder().
		Mode(dashboard.ThresholdsModeAbsolute).
		Steps([]dashboard.Threshold{{Color: "green"}, {Value: cog.ToPtr(red), Color: "red"}})
}

// redBelow colours values below green red: a switch that is off, a limit that is too small.
func redBelow(green float64) *dashboard.ThresholdsConfigBuilder {
	return dashboard.NewThresholdsConfigBuilder().
		Mode(dashboard.ThresholdsModeAbsolute).
		Steps([]dashboard.Threshold{{Color: "red"}, {Value: cog.ToPtr(green), Color: "green"}})
}

// neverRed is for reference panels (settings in force) that have no bad value of their own.
func neverRed() *dashboard.ThresholdsConfigBuilder {
	return dashboard.NewThresholdsConfigBuilder().
		Mode(dashboard.ThresholdsModeAbsolute).
		Steps([]dashboard.Threshold{{Color: "text"}})
}

// panelBuilder is what every SDK panel builder has in common; each method returns the builder itself.
type panelBuilder[T any] interface {
	Title(string) T
	Description(string) T
	Datasource(common.DataSourceRef) T
	Unit(string) T
	Height(uint32) T
	Span(uint32) T
	Thresholds(cog.Builder[dashboard.ThresholdsConfig]) T
}

// runbooks links a panel to the runbook sections of the alerts it shows, at the RunbookBase of the rules'
// config, so that a fork that points its alerts at its own runbooks points its dashboards there too.
func runbooks(alerts ...string) []cog.Builder[dashboard.DashboardLink] {
	base := rules.DefaultConfig().RunbookBase
	var links []cog.Builder[dashboard.DashboardLink]
	for _, a := range alerts {
		links = append(links, dashboard.NewDashboardLinkBuilder("Runbook: "+a).
			Type(dashboard.DashboardLinkTypeLink).
			Url(base+"#"+rules.Anchor(a)).
			TargetBlank(true))
	}
	return links
}

// decorate sets what every panel must have: title, a description saying what red means, the datasource
// variable, a unit, thresholds, and its width out of 24 columns.
func decorate[T panelBuilder[T]](b T, title, description, unit string, th *dashboard.ThresholdsConfigBuilder, w uint32) T {
	b.Title(title)
	b.Description(description)
	b.Datasource(ds)
	b.Unit(unit)
	b.Height(8)
	b.Span(w)
	b.Thresholds(th)
	return b
}

// graph is a time series panel whose threshold is drawn as a line, so red is visible on the graph.
func graph(title, description, unit string, th *dashboard.ThresholdsConfigBuilder, w uint32, qs ...query) *timeseries.PanelBuilder {
	return decorate(timeseries.NewPanelBuilder(), title, description, unit, th, w).
		Min(0).
		ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed)).
		FillOpacity(10).
		Legend(common.NewVizLegendOptionsBuilder().
			DisplayMode(common.LegendDisplayModeTable).
			Placement(common.LegendPlacementBottom).
			ShowLegend(true).
			Calcs([]string{"mean", "max", "lastNotNull"})).
		Tooltip(common.NewVizTooltipOptionsBuilder().Mode(common.TooltipDisplayModeMulti).Sort(common.SortOrderDescending)).
		Targets(targets(qs, query.range_))
}

// ranked is a table of the latest values, one row per series, largest first.
func ranked(title, description, unit string, th *dashboard.ThresholdsConfigBuilder, w uint32, qs ...query) *table.PanelBuilder {
	t := table.NewPanelBuilder()
	for i, x := range qs {
		if x.column == nil {
			continue
		}
		th, err := x.column.th.Build()
		if err != nil {
			t.RecordError("thresholds", err)
		}
		t.OverrideByName("Value #"+string(rune('A'+i)), []dashboard.DynamicConfigValue{
			{Id: "unit", Value: x.column.unit},
			{Id: "thresholds", Value: th},
		})
	}
	return decorate(t, title, description, unit, th, w).
		// Only the value columns are coloured by the thresholds; label columns stay plain.
		OverrideByRegexp("^Value.*", []dashboard.DynamicConfigValue{{
			Id:    "custom.cellOptions",
			Value: map[string]any{"type": "color-background"},
		}}).
		// Instant table queries come back as one frame per query; merge them into one row per series and
		// hide the timestamp, which is the same for every row.
		WithTransformation(dashboard.DataTransformerConfig{Id: "merge", Options: map[string]any{}}).
		WithTransformation(dashboard.DataTransformerConfig{Id: "organize", Options: map[string]any{
			"excludeByName": map[string]any{"Time": true},
		}}).
		SortBy([]cog.Builder[common.TableSortByFieldState]{
			common.NewTableSortByFieldStateBuilder().DisplayName(lastValueColumn(len(qs))).Desc(true),
		}).
		Targets(targets(qs, func(x query) cog.Builder[variants.Dataquery] { return x.instant(prometheus.PromQueryFormatTable) }))
}

// lastValueColumn is the name Grafana gives the value column of the first of n merged instant queries.
func lastValueColumn(n int) string {
	if n == 1 {
		return "Value"
	}
	return "Value #A"
}

// stats shows the latest value of each series as a big number.
func stats(title, description, unit string, th *dashboard.ThresholdsConfigBuilder, w uint32, qs ...query) *stat.PanelBuilder {
	return decorate(stat.NewPanelBuilder(), title, description, unit, th, w).
		ColorMode(common.BigValueColorModeBackground).
		GraphMode(common.BigValueGraphModeNone).
		TextMode(common.BigValueTextModeValueAndName).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}).Values(false)).
		Targets(targets(qs, func(x query) cog.Builder[variants.Dataquery] {
			return x.instant(prometheus.PromQueryFormatTimeSeries)
		}))
}

// buckets shows a histogram's current bucket counts (format heatmap turns cumulative le buckets into
// per-bucket counts) as horizontal bars.
func buckets(title, description, unit string, th *dashboard.ThresholdsConfigBuilder, w uint32, x query) *bargauge.PanelBuilder {
	return decorate(bargauge.NewPanelBuilder(), title, description, unit, th, w).
		Min(0).
		DisplayMode(common.BarGaugeDisplayModeGradient).
		Orientation(common.VizOrientationHorizontal).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}).Values(false)).
		Targets(targets([]query{x}, func(x query) cog.Builder[variants.Dataquery] {
			return x.instant(prometheus.PromQueryFormatHeatmap)
		}))
}

// heat draws a histogram's buckets over time; yUnit is the unit of the bucket bounds, cells count sockets.
// x must select cumulative `_bucket` series summed by le, without rate(): the exporter's socket histograms
// are snapshots of the sockets alive at each scrape, not counters of events.
func heat(title, description, yUnit string, th *dashboard.ThresholdsConfigBuilder, w uint32, x query) *heatmap.PanelBuilder {
	return decorate(heatmap.NewPanelBuilder(), title, description, "short", th, w).
		// The exporter's buckets are already computed; Grafana must not re-bucket them. The query's heatmap
		// format de-accumulates the le buckets, and the rows are laid out by their upper bound (le), so each
		// row's label is the bucket's upper edge, as Prometheus defines it.
		Calculate(false).
		RowsFrame(heatmap.NewRowsHeatmapOptionsBuilder().Layout(common.HeatmapCellLayoutLe).Value("Sockets")).
		YAxis(heatmap.NewYAxisConfigBuilder().Unit(yUnit)).
		Tooltip(heatmap.NewHeatmapTooltipBuilder().Mode(common.TooltipDisplayModeSingle).YHistogram(true).ShowColorScale(true)).
		CellValues(heatmap.NewCellValuesBuilder().Unit("short")).
		Color(heatmap.NewHeatmapColorOptionsBuilder().
			Mode(heatmap.HeatmapColorModeScheme).
			Scheme("Reds").
			Scale(heatmap.HeatmapColorScaleExponential).
			Exponent(0.5).
			Steps(64)).
		ShowLegend().
		Targets(targets([]query{x}, func(x query) cog.Builder[variants.Dataquery] {
			return prometheus.NewDataqueryBuilder().Datasource(ds).Expr(x.expr).LegendFormat(x.legend).
				Range().Format(prometheus.PromQueryFormatHeatmap)
		}))
}

func row(title string) *dashboard.RowBuilder { return dashboard.NewRowBuilder(title) }

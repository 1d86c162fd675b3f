package collector

//go:generate go run ../internal/gen/metricsdoc -o ../docs/metrics.md

import (
	"fmt"
	"strings"
)

// MetricsDoc renders every MetricSpec as one table per collector, in the order of Metrics().
func MetricsDoc() string {
	infos := map[string]Info{}
	for _, c := range Available() {
		infos[c.Name] = c
	}
	var b strings.Builder
	b.WriteString(`# Metrics

<!-- Generated from the metric specs in collector/*.go by
     go generate ./collector
     Do not edit by hand: a test fails when this file and the code disagree. -->

Every metric the exporter can export, by collector. A metric whose kernel field or file does not exist on the
running kernel (or in the network namespace the exporter runs in) is absent, never 0. Enable or disable a
collector with ` + "`--collector.<name>` / `--no-collector.<name>`" + `.

`)
	var section string
	for _, m := range Metrics() {
		if m.Collector != section {
			if section != "" {
				b.WriteString("\n")
			}
			section = m.Collector
			if info, ok := infos[section]; ok {
				state := "disabled"
				if info.DefaultEnabled {
					state = "enabled"
				}
				fmt.Fprintf(&b, "## %s\n\n%s. Default: %s (`--collector.%s`).\n\n", section, capitalize(info.Help), state, section)
			} else {
				fmt.Fprintf(&b, "## %s\n\nExported on every scrape, whatever collectors are enabled.\n\n", section)
			}
			b.WriteString("| Metric | Type | Unit | Labels | Help | Notes | Source |\n|---|---|---|---|---|---|---|\n")
		}
		labels := ""
		if len(m.Labels) > 0 {
			labels = "`" + strings.Join(m.Labels, "`, `") + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s | %s | %s |\n",
			m.FullName(), m.Type, m.Unit, labels, mdCell(m.Help), mdCell(m.Notes), mdCell(m.Source))
	}
	return b.String()
}

// mdCell escapes text for a Markdown table cell.
func mdCell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

package dashboards

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"html"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sockbuf/sockbuf_exporter/internal/e2e"
	"github.com/sockbuf/sockbuf_exporter/internal/realsw"
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

var pictures = flag.String("pictures", "", "draw the key panels during the pinned-client scenario as SVG into this directory (make pictures)")

// pictured are the panels drawn, by dashboard file and title prefix: harm first, PruneCalled beside it.
var pictured = []struct{ file, title, out string }{
	{"sockbuf-host.json", "Data lost", "host-data-lost.svg"},
	{"sockbuf-host.json", "Collapse cost", "host-collapse-cost.svg"},
	{"sockbuf-host.json", "Readers stalled", "host-readers-stalled.svg"},
	{"sockbuf-host.json", "The kernel had to make room", "host-prune-called.svg"},
	{"sockbuf-sockets.json", "Full sockets by group", "sockets-full-by-group.svg"},
}

// TestDashboardPictures runs the pinned-client scenario of internal/realsw under the real exporter and a real
// Prometheus, then evaluates the very queries of the dashboards' key panels over the scenario and draws them,
// so that docs/dashboards.md shows what the panels look like before anyone installs Grafana. It runs only
// with -pictures (make pictures).
func TestDashboardPictures(t *testing.T) {
	if *pictures == "" {
		t.Skip("drawing pictures only with -pictures=DIR (make pictures)")
	}
	e2e.Require(t)
	files, err := Files()
	if err != nil {
		t.Fatal(err)
	}
	ns := testenv.NewNetNS(t)
	env := realsw.New(t, ns)
	exp := e2e.StartExporter(t, ns)
	prom := e2e.StartPrometheus(t, ns, e2e.PrometheusConfig{Targets: []string{exp.Addr}})
	prom.WaitTargetsUp(t, 20*time.Second)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Quiet, then the pinned client for 40s, then quiet again: the panels show the step up and down.
	time.Sleep(10 * time.Second)
	if err := realsw.PinnedSmallWrites.Run(ctx, env, 40*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(15 * time.Second)
	end := time.Now()

	vars := strings.NewReplacer(`$job`, `.+`, `$instance`, `.+`, `$__rate_interval`, `10s`)
	for _, p := range pictured {
		var d struct {
			Panels []struct {
				Title       string `json:"title"`
				Description string `json:"description"`
				FieldConfig struct {
					Defaults struct {
						Unit string `json:"unit"`
					} `json:"defaults"`
				} `json:"fieldConfig"`
				Targets []struct {
					Expr         string `json:"expr"`
					LegendFormat string `json:"legendFormat"`
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(files[p.file], &d); err != nil {
			t.Fatal(err)
		}
		drawn := false
		for _, panel := range d.Panels {
			if !strings.HasPrefix(panel.Title, p.title) || len(panel.Targets) == 0 {
				continue
			}
			var lines []line
			for _, tg := range panel.Targets {
				ls, err := queryRange(prom, vars.Replace(tg.Expr), tg.LegendFormat, start, end)
				if err != nil {
					t.Fatal(err)
				}
				lines = append(lines, ls...)
			}
			svg := drawSVG(panel.Title, panel.FieldConfig.Defaults.Unit, lines, start, end)
			if err := os.WriteFile(filepath.Join(*pictures, p.out), []byte(svg), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %d series", p.out, len(lines))
			drawn = true
			break
		}
		if !drawn {
			t.Errorf("%s has no panel %q", p.file, p.title)
		}
	}
}

type line struct {
	legend string
	t, v   []float64
}

var legendVar = regexp.MustCompile(`\{\{\s*(\w+)\s*\}\}`)

// queryRange evaluates expr every second over [start, end] and names each series by the panel's legend.
func queryRange(p *e2e.Prometheus, expr, legend string, start, end time.Time) ([]line, error) {
	u := p.URL + "/api/v1/query_range?" + url.Values{"query": {expr},
		"start": {strconv.FormatInt(start.Unix(), 10)}, "end": {strconv.FormatInt(end.Unix(), 10)}, "step": {"1"}}.Encode()
	resp, err := p.Client.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Values [][2]any          `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("query_range %q: %w", expr, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query_range %q: %s", expr, r.Error)
	}
	var out []line
	for _, s := range r.Data.Result {
		l := line{legend: legendVar.ReplaceAllStringFunc(legend, func(m string) string {
			return s.Metric[legendVar.FindStringSubmatch(m)[1]]
		})}
		for _, pair := range s.Values {
			ts, _ := pair[0].(float64)
			vs, _ := pair[1].(string)
			v, err := strconv.ParseFloat(vs, 64)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				continue
			}
			l.t, l.v = append(l.t, ts), append(l.v, v)
		}
		out = append(out, l)
	}
	return out, nil
}

var palette = []string{"#e02f44", "#ff9830", "#3274d9", "#56a64b", "#a352cc", "#8ab8ff", "#fade2a"}

// drawSVG draws the lines the way a Grafana time series panel does, in a plain SVG: a title, a y axis with
// its maximum in the panel's unit, one colour per series and a legend.
func drawSVG(title, unit string, lines []line, start, end time.Time) string {
	const w, left, top, plotW, plotH = 720, 70, 30, 630, 180
	maxV := 0.0
	for _, l := range lines {
		for _, v := range l.v {
			maxV = math.Max(maxV, v)
		}
	}
	if maxV == 0 {
		maxV = 1
	}
	t0, t1 := float64(start.Unix()), float64(end.Unix())
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", w, top+plotH+30+20*len(lines))
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#181b1f"/><text x="10" y="20" fill="#ccccdc" font-size="14">%s</text>`+"\n", html.EscapeString(title))
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#444"/>`+"\n", left, top, plotW, plotH)
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#ccccdc" text-anchor="end">%s</text><text x="%d" y="%d" fill="#ccccdc" text-anchor="end">0</text>`+"\n",
		left-5, top+10, html.EscapeString(format(maxV, unit)), left-5, top+plotH)
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#ccccdc">%s</text><text x="%d" y="%d" fill="#ccccdc" text-anchor="end">%s</text>`+"\n",
		left, top+plotH+15, start.UTC().Format("15:04:05"), left+plotW, top+plotH+15, end.UTC().Format("15:04:05 UTC"))
	for i, l := range lines {
		c := palette[i%len(palette)]
		var pts []string
		for j := range l.t {
			x := left + (l.t[j]-t0)/(t1-t0)*plotW
			y := top + plotH - l.v[j]/maxV*plotH
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n", c, strings.Join(pts, " "))
		peak := 0.0
		for _, v := range l.v {
			peak = math.Max(peak, v)
		}
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d" fill="#ccccdc">%s (max %s)</text>`+"\n",
			left, top+plotH+30+20*i, c, left+15, top+plotH+39+20*i, html.EscapeString(l.legend), html.EscapeString(format(peak, unit)))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// format prints a value in a panel's unit, roughly as Grafana does: three significant digits with an SI
// prefix (4.67k, not 4.67e+03), so that the axis label fits left of the plot.
func format(v float64, unit string) string {
	switch unit {
	case "percentunit":
		return short(v*100) + "%"
	case "pps":
		return short(v) + " p/s"
	case "ops":
		return short(v) + " /s"
	default:
		return short(v)
	}
}

func short(v float64) string {
	for _, p := range []struct {
		div    float64
		prefix string
	}{{1e9, "G"}, {1e6, "M"}, {1e3, "k"}} {
		if math.Abs(v) >= p.div {
			return strconv.FormatFloat(v/p.div, 'g', 3, 64) + p.prefix
		}
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

func TestFormat(t *testing.T) {
	for _, c := range []struct {
		v    float64
		unit string
		want string
	}{{4670.2, "ops", "4.67k /s"}, {82.5, "ops", "82.5 /s"}, {0.00972, "percentunit", "0.972%"}, {8.44, "pps", "8.44 p/s"},
		{2.5e6, "", "2.5M"}, {0, "", "0"}, {1e10, "pps", "10G p/s"}} {
		if got := format(c.v, c.unit); got != c.want {
			t.Errorf("format(%v, %q) = %q, want %q", c.v, c.unit, got, c.want)
		}
	}
}

package e2e

import (
	"bytes"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

// Exporter is a sockbuf_exporter process running inside a namespace.
type Exporter struct {
	// Addr is host:port inside the namespace, for Prometheus targets.
	Addr string
	// URL is http://Addr, without a path.
	URL string
	// Client reaches the namespace; use it for requests of your own.
	Client *http.Client
	// PID is the exporter's process id, e.g. for /proc/<pid>/status.
	PID int

	proc *process
}

// StartExporter builds the binary (once), runs it inside ns with args as extra flags, and returns once
// /metrics answers 200. Unless args set --web.listen-address, it listens on a free port on 127.0.0.1. It is
// stopped when the test ends; its log goes to the test log if the test failed.
//
// A nil ns runs it in the test process's own network namespace, the host's, for collectors that look at the
// host from there (netns); it then listens on the host's loopback only.
func StartExporter(t testing.TB, ns *testenv.NetNS, args ...string) *Exporter {
	t.Helper()
	return startExporter(t, ns, func(bin string, args []string) *process {
		return startProcess(t, ns, "sockbuf_exporter", bin, args...)
	}, args)
}

// startExporter picks a listening address unless args give one, starts the binary with start and waits
// for its /metrics.
func startExporter(t testing.TB, ns *testenv.NetNS, start func(bin string, args []string) *process, args []string) *Exporter {
	t.Helper()
	bin := BuildExporter(t)
	addr := ""
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--web.listen-address="); ok {
			addr = v
		}
	}
	if addr == "" {
		addr = fmt.Sprintf("127.0.0.1:%d", FreePort(t, ns))
		args = append([]string{"--web.listen-address=" + addr}, args...)
	}
	e := &Exporter{Addr: addr, URL: "http://" + addr, Client: Client(t, ns)}
	e.proc = start(bin, args)
	e.PID = e.proc.cmd.Process.Pid
	e.proc.waitHTTP(t, e.Client, e.URL+"/metrics")
	return e
}

// Logs returns what the exporter has logged so far.
func (e *Exporter) Logs() string { return e.proc.logs.String() }

// Get fetches a path (e.g. "/") with optional headers and returns the status and body.
func (e *Exporter) Get(t testing.TB, path string, header http.Header) (int, []byte) {
	t.Helper()
	code, body, err := get(e.Client, e.URL+path, header)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return code, body
}

// ScrapeText returns the exposition text of one /metrics scrape; a status other than 200 fails the test.
func (e *Exporter) ScrapeText(t testing.TB) []byte {
	t.Helper()
	code, body := e.Get(t, "/metrics", nil)
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: status %d: %s", code, body)
	}
	return body
}

// Scrape takes one scrape and returns its series.
func (e *Exporter) Scrape(t testing.TB) Metrics {
	t.Helper()
	m, err := ParseMetrics(e.ScrapeText(t))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Metrics maps each series, written `name{label="value",...}` with labels sorted by name (no braces
// without labels), to its value. Histograms and summaries appear as their _bucket/_sum/_count (quantile)
// series, as Prometheus stores them.
type Metrics map[string]float64

// ParseMetrics parses exposition text.
func ParseMetrics(text []byte) (Metrics, error) {
	fams, err := ParseFamilies(text)
	if err != nil {
		return nil, err
	}
	m := Metrics{}
	for name, f := range fams {
		for _, s := range f.GetMetric() {
			labels := map[string]string{}
			for _, lp := range s.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				m[SeriesKey(name, labels)] = s.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				m[SeriesKey(name, labels)] = s.GetGauge().GetValue()
			case dto.MetricType_UNTYPED:
				m[SeriesKey(name, labels)] = s.GetUntyped().GetValue()
			case dto.MetricType_SUMMARY:
				sum := s.GetSummary()
				m[SeriesKey(name+"_sum", labels)] = sum.GetSampleSum()
				m[SeriesKey(name+"_count", labels)] = float64(sum.GetSampleCount())
				for _, q := range sum.GetQuantile() {
					m[SeriesKey(name, with(labels, "quantile", formatFloat(q.GetQuantile())))] = q.GetValue()
				}
			case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				h := s.GetHistogram()
				m[SeriesKey(name+"_sum", labels)] = h.GetSampleSum()
				m[SeriesKey(name+"_count", labels)] = float64(h.GetSampleCount())
				for _, b := range h.GetBucket() {
					m[SeriesKey(name+"_bucket", with(labels, "le", formatFloat(b.GetUpperBound())))] = float64(b.GetCumulativeCount())
				}
				m[SeriesKey(name+"_bucket", with(labels, "le", "+Inf"))] = float64(h.GetSampleCount())
			}
		}
	}
	return m, nil
}

// ParseFamilies parses exposition text into metric families, for tests that need types and help strings.
func ParseFamilies(text []byte) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		return nil, fmt.Errorf("parsing exposition text: %w", err)
	}
	return fams, nil
}

func with(labels map[string]string, k, v string) map[string]string {
	out := make(map[string]string, len(labels)+1)
	for lk, lv := range labels {
		out[lk] = lv
	}
	out[k] = v
	return out
}

func formatFloat(f float64) string {
	if math.IsInf(f, +1) {
		return "+Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// SeriesKey writes a series the way Metrics keys it.
func SeriesKey(name string, labels map[string]string) string {
	if len(labels) == 0 {
		return name
	}
	names := make([]string, 0, len(labels))
	for k := range labels {
		names = append(names, k)
	}
	slices.Sort(names)
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('{')
	for i, k := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", k, labels[k])
	}
	b.WriteByte('}')
	return b.String()
}

// seriesName is the metric name of a key.
func seriesName(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		return key[:i]
	}
	return key
}

// Has reports whether any series of the metric is present.
func (m Metrics) Has(name string) bool {
	for k := range m {
		if seriesName(k) == name {
			return true
		}
	}
	return false
}

// Sum adds up every series of the metric (0 when absent; check Has to tell the two apart).
func (m Metrics) Sum(name string) float64 {
	var s float64
	for k, v := range m {
		if seriesName(k) == name {
			s += v
		}
	}
	return s
}

// Select returns the series of the metric whose labels include every pair in match.
func (m Metrics) Select(name string, match map[string]string) Metrics {
	out := Metrics{}
	for k, v := range m {
		if seriesName(k) != name {
			continue
		}
		ok := true
		for lk, lv := range match {
			pair := fmt.Sprintf("%s=%q", lk, lv)
			if !strings.Contains(k, "{"+pair) && !strings.Contains(k, ","+pair) {
				ok = false
				break
			}
		}
		if ok {
			out[k] = v
		}
	}
	return out
}

// Names returns the metric names present, sorted.
func (m Metrics) Names() []string {
	seen := map[string]bool{}
	for k := range m {
		seen[seriesName(k)] = true
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

// PrometheusConfig configures StartPrometheus.
type PrometheusConfig struct {
	// Config, when set, is the whole prometheus.yml, used verbatim (rule file paths in it must be absolute);
	// the fields below are then ignored except Args.
	Config string
	// Targets are host:port addresses in the namespace (e.g. Exporter.Addr), scraped as job JobName.
	Targets []string
	// JobName is "sockbuf" when empty.
	JobName string
	// ScrapeInterval and EvaluationInterval are 1s when zero; the scrape timeout is the scrape interval.
	ScrapeInterval, EvaluationInterval time.Duration
	// RuleFiles are loaded from where they are (relative paths are made absolute).
	RuleFiles []string
	// Alertmanagers are host:port addresses of Alertmanagers in the namespace (Alertmanager.Addr).
	Alertmanagers []string
	// Args are extra command-line flags.
	Args []string
}

// Prometheus is a Prometheus server running inside a namespace.
type Prometheus struct {
	Addr   string // host:port inside the namespace
	URL    string // http://Addr
	Client *http.Client
	Dir    string // holds prometheus.yml and the TSDB

	proc *process
}

// PrometheusBinary is where Debian's prometheus package installs the server.
const PrometheusBinary = "prometheus"

// StartPrometheus runs Prometheus inside ns with a config of its own in a temporary directory and returns
// once it is ready. It needs Debian's prometheus package (skip locally, fail in CI when it is missing).
func StartPrometheus(t testing.TB, ns *testenv.NetNS, cfg PrometheusConfig) *Prometheus {
	t.Helper()
	bin := testenv.RequireBinary(t, PrometheusBinary, "prometheus")
	dir := tempDir(t, "sockbuf-e2e-prometheus-")
	text := cfg.Config
	if text == "" {
		var err error
		if text, err = cfg.render(); err != nil {
			t.Fatal(err)
		}
	}
	p := &Prometheus{Dir: dir}
	p.Addr, p.Client, p.proc = startConfigured(t, ns, "prometheus", bin, dir, "prometheus.yml", text, "/-/ready",
		func(cfgPath, addr string) []string {
			return append([]string{
				"--config.file=" + cfgPath,
				"--storage.tsdb.path=" + filepath.Join(dir, "data"),
				"--web.listen-address=" + addr,
				// The console pages are not tested; without these flags they only produce warnings.
				"--web.console.libraries=" + dir,
				"--web.console.templates=" + dir,
			}, cfg.Args...)
		})
	p.URL = "http://" + p.Addr
	return p
}

func (cfg PrometheusConfig) render() (string, error) {
	scrape := cfg.ScrapeInterval
	if scrape <= 0 {
		scrape = time.Second
	}
	eval := cfg.EvaluationInterval
	if eval <= 0 {
		eval = time.Second
	}
	job := cfg.JobName
	if job == "" {
		job = "sockbuf"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  scrape_timeout: %s\n  evaluation_interval: %s\n",
		promDuration(scrape), promDuration(scrape), promDuration(eval))
	if len(cfg.RuleFiles) > 0 {
		b.WriteString("rule_files:\n")
		for _, f := range cfg.RuleFiles {
			abs, err := filepath.Abs(f)
			if err != nil {
				return "", err
			}
			fmt.Fprintf(&b, "  - %s\n", strconv.Quote(abs))
		}
	}
	if len(cfg.Alertmanagers) > 0 {
		b.WriteString("alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [")
		b.WriteString(quoteList(cfg.Alertmanagers))
		b.WriteString("]\n")
	}
	if len(cfg.Targets) > 0 {
		fmt.Fprintf(&b, "scrape_configs:\n  - job_name: %s\n    static_configs:\n      - targets: [%s]\n",
			strconv.Quote(job), quoteList(cfg.Targets))
	}
	return b.String(), nil
}

// promDuration writes d in Prometheus' duration syntax (no fractions: "1500ms", "2s").
func promDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return fmt.Sprintf("%dms", d/time.Millisecond)
}

func quoteList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

// Logs returns what Prometheus has logged so far.
func (p *Prometheus) Logs() string { return p.proc.logs.String() }

// Sample is one element of an instant vector.
type Sample struct {
	Metric map[string]string
	Value  float64
}

// api calls a Prometheus HTTP API path and decodes its data field into out.
func (p *Prometheus) api(path string, params url.Values, out any) error {
	u := p.URL + path
	if len(params) > 0 {
		u += "?" + params.Encode()
	}
	code, body, err := get(p.Client, u, nil)
	if err != nil {
		return err
	}
	var env struct {
		Status    string          `json:"status"`
		Data      json.RawMessage `json:"data"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return fmt.Errorf("GET %s: status %d, undecodable answer %q: %w", path, code, body, err)
	}
	if env.Status != "success" {
		return fmt.Errorf("GET %s: %s: %s", path, env.ErrorType, env.Error)
	}
	return json.Unmarshal(env.Data, out)
}

// QueryErr runs an instant query and returns its vector (a scalar comes back as one sample without labels).
func (p *Prometheus) QueryErr(expr string) ([]Sample, error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.api("/api/v1/query", url.Values{"query": {expr}}, &data); err != nil {
		return nil, fmt.Errorf("query %q: %w", expr, err)
	}
	switch data.ResultType {
	case "vector":
		var raw []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(data.Result, &raw); err != nil {
			return nil, fmt.Errorf("query %q: decoding vector: %w", expr, err)
		}
		out := make([]Sample, 0, len(raw))
		for _, r := range raw {
			v, err := sampleValue(r.Value)
			if err != nil {
				return nil, fmt.Errorf("query %q: %w", expr, err)
			}
			out = append(out, Sample{Metric: r.Metric, Value: v})
		}
		return out, nil
	case "scalar":
		var raw [2]any
		if err := json.Unmarshal(data.Result, &raw); err != nil {
			return nil, fmt.Errorf("query %q: decoding scalar: %w", expr, err)
		}
		v, err := sampleValue(raw)
		if err != nil {
			return nil, fmt.Errorf("query %q: %w", expr, err)
		}
		return []Sample{{Metric: map[string]string{}, Value: v}}, nil
	default:
		return nil, fmt.Errorf("query %q: result type %q, want vector or scalar", expr, data.ResultType)
	}
}

func sampleValue(pair [2]any) (float64, error) {
	s, ok := pair[1].(string)
	if !ok {
		return 0, fmt.Errorf("sample value %v is not a string", pair[1])
	}
	return strconv.ParseFloat(s, 64)
}

// Query runs an instant query; an error fails the test.
func (p *Prometheus) Query(t testing.TB, expr string) []Sample {
	t.Helper()
	s, err := p.QueryErr(expr)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// WaitQuery polls an instant query every 500ms until it returns a non-empty result, and returns it; after
// timeout the test fails (with the last result or error).
func (p *Prometheus) WaitQuery(t testing.TB, expr string, timeout time.Duration) []Sample {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s, err := p.QueryErr(expr)
		if err == nil && len(s) > 0 {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("query %q still empty after %s (last error: %v)", expr, timeout, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// Alert is an alert as Prometheus' /api/v1/alerts lists it.
type Alert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"` // pending or firing
	ActiveAt    time.Time         `json:"activeAt"`
	Value       string            `json:"value"`
}

// Alerts lists the pending and firing alerts.
func (p *Prometheus) Alerts(t testing.TB) []Alert {
	t.Helper()
	var data struct {
		Alerts []Alert `json:"alerts"`
	}
	if err := p.api("/api/v1/alerts", nil, &data); err != nil {
		t.Fatal(err)
	}
	return data.Alerts
}

// WaitTargetsUp waits until every scrape target is up (or fails the test after timeout).
func (p *Prometheus) WaitTargetsUp(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var data struct {
			ActiveTargets []struct {
				ScrapeURL string `json:"scrapeUrl"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"activeTargets"`
		}
		err := p.api("/api/v1/targets", nil, &data)
		var down []string
		if err == nil {
			for _, tg := range data.ActiveTargets {
				if tg.Health != "up" {
					down = append(down, fmt.Sprintf("%s: %s %s", tg.ScrapeURL, tg.Health, tg.LastError))
				}
			}
			if len(data.ActiveTargets) > 0 && len(down) == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("targets not up after %s: %v %v", timeout, down, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// Package e2e runs the real sockbuf_exporter binary, a real Prometheus and a real Alertmanager inside a
// network namespace a test creates, so that end-to-end tests read like the sentences: start the
// exporter, make the kernel prune (internal/trafficgen), scrape, ask Prometheus.
//
// Everything runs inside the namespace through `ip netns exec`, on ports picked free there; the test process
// reaches them with an HTTP client whose connections are opened inside the namespace (NetNS.Do), so nothing
// listens on the host (except an exporter started with a nil namespace, which runs in the host's and listens
// on its loopback). Processes are stopped, and temporary directories removed, when the test ends; the
// logs of every process are written to the test log when the test has failed. Every wait is bounded.
//
// A typical test:
//
//	func TestMain(m *testing.M) { os.Exit(e2e.Main(m)) } // removes the built binary at the end
//
//	func TestPruneAlert(t *testing.T) {
//		e2e.Require(t) // root, ip, go; skips locally, fails in CI
//		ns := testenv.NewNetNS(t)
//		exp := e2e.StartExporter(t, ns)              // built once per test binary; args are extra flags
//		before := exp.Scrape(t)                      // e2e.Metrics: series -> value
//		... drive traffic inside ns with trafficgen (ns.Do) ...
//		after := exp.Scrape(t)
//		rise := after.Sum("sockbuf_tcp_prune_called_total") - before.Sum("sockbuf_tcp_prune_called_total")
//
//		// Keep the kernel pruning while Prometheus scrapes (stops at the end, or after 60s):
//		stop := trafficgen.Background(ns.Do, trafficgen.Options{Duration: 60 * time.Second, Renew: time.Second})
//		defer stop()
//
//		hook := e2e.StartWebhook(t, ns)              // records what Alertmanager posts
//		am := e2e.StartAlertmanager(t, ns, e2e.AlertmanagerConfig{WebhookURL: hook.URL()})
//		prom := e2e.StartPrometheus(t, ns, e2e.PrometheusConfig{
//			Targets:       []string{exp.Addr},       // job "sockbuf", scraped every second
//			RuleFiles:     []string{"testdata/alerts-fast.yml"},
//			Alertmanagers: []string{am.Addr},
//		})
//		prom.WaitQuery(t, `rate(sockbuf_tcp_prune_called_total[1m]) > 0`, 30*time.Second)
//		hook.WaitAlert(t, "SockbufTCPReceiveDataDropped", 60*time.Second)
//	}
//
// Series keys in Metrics are written the way Prometheus prints them, labels sorted by name:
// `sockbuf_scrape_collector_success{collector="netstat"}`. Metrics.Sum adds a metric's series up,
// Metrics.Select picks series by label. Exporter.ScrapeText returns the raw exposition text (for
// promtool check metrics), Exporter.Get any path with any headers.
//
// Prometheus: StartPrometheus writes its own config (scrape and evaluation interval 1s unless set) or takes
// PrometheusConfig.Config verbatim; rule files are loaded from where they are. Query runs an instant query
// and returns the vector; WaitQuery polls until it is non-empty; Alerts lists the active alerts.
//
// Alertmanager runs with clustering off (--cluster.listen-address=) and groups and sends within a second;
// the Webhook is a Go HTTP server in the test process whose listener lives in the namespace.
package e2e

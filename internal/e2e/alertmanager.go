package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

// AlertmanagerBinary is where Debian's prometheus-alertmanager package installs Alertmanager.
const AlertmanagerBinary = "prometheus-alertmanager"

// AlertmanagerConfig configures StartAlertmanager.
type AlertmanagerConfig struct {
	// Config, when set, is the whole alertmanager.yml, used verbatim.
	Config string
	// WebhookURL receives every alert (Webhook.URL), grouped by alertname, sent within a second and again
	// when resolved.
	WebhookURL string
	// Args are extra command-line flags.
	Args []string
}

// Alertmanager is an Alertmanager running inside a namespace.
type Alertmanager struct {
	Addr   string // host:port inside the namespace, for PrometheusConfig.Alertmanagers
	URL    string
	Client *http.Client

	proc *process
}

// StartAlertmanager runs Alertmanager inside ns, clustering off, with its storage in a temporary directory,
// and returns once it is ready. It needs Debian's prometheus-alertmanager package.
func StartAlertmanager(t testing.TB, ns *testenv.NetNS, cfg AlertmanagerConfig) *Alertmanager {
	t.Helper()
	bin := testenv.RequireBinary(t, AlertmanagerBinary, "prometheus-alertmanager")
	dir := tempDir(t, "sockbuf-e2e-alertmanager-")
	text := cfg.Config
	if text == "" {
		if cfg.WebhookURL == "" {
			t.Fatal("StartAlertmanager: neither Config nor WebhookURL given")
		}
		text = fmt.Sprintf(`route:
  receiver: webhook
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: webhook
    webhook_configs:
      - url: %s
        send_resolved: true
`, strconv.Quote(cfg.WebhookURL))
	}
	am := &Alertmanager{}
	am.Addr, am.Client, am.proc = startConfigured(t, ns, "alertmanager", bin, dir, "alertmanager.yml", text, "/-/ready",
		func(cfgPath, addr string) []string {
			return append([]string{
				"--config.file=" + cfgPath,
				"--storage.path=" + filepath.Join(dir, "data"),
				"--web.listen-address=" + addr,
				// An empty address turns the gossip cluster off: one instance, no port 9094, no peers.
				"--cluster.listen-address=",
			}, cfg.Args...)
		})
	am.URL = "http://" + am.Addr
	return am
}

// Logs returns what Alertmanager has logged so far.
func (am *Alertmanager) Logs() string { return am.proc.logs.String() }

// WebhookAlert is one alert of a notification Alertmanager posts to a webhook receiver.
type WebhookAlert struct {
	Status      string            `json:"status"` // firing or resolved
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	EndsAt      time.Time         `json:"endsAt"`
	Fingerprint string            `json:"fingerprint"`
}

// Webhook is an HTTP server in the test process, listening inside a namespace, that records the alerts
// Alertmanager posts to it.
type Webhook struct {
	mu     sync.Mutex
	alerts []WebhookAlert
	notify chan struct{} // closed and replaced on every post
	addr   string
}

// StartWebhook listens on a free port of 127.0.0.1 inside ns and records every alert posted to it; it
// stops when the test ends.
func StartWebhook(t testing.TB, ns *testenv.NetNS) *Webhook {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatalf("webhook listener in netns %s: %v", ns.Name, err)
	}
	w := &Webhook{addr: ln.Addr().String(), notify: make(chan struct{})}
	srv := &http.Server{Handler: w, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return w
}

// URL is what Alertmanager should post to.
func (w *Webhook) URL() string { return "http://" + w.addr + "/alerts" }

// ServeHTTP records the alerts of one Alertmanager notification (webhook payload version 4).
func (w *Webhook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	var msg struct {
		Alerts []WebhookAlert `json:"alerts"`
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err == nil {
		err = json.Unmarshal(body, &msg)
	}
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	w.mu.Lock()
	w.alerts = append(w.alerts, msg.Alerts...)
	close(w.notify)
	w.notify = make(chan struct{})
	w.mu.Unlock()
}

// Alerts returns every alert received so far, in order.
func (w *Webhook) Alerts() []WebhookAlert {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]WebhookAlert(nil), w.alerts...)
}

// WaitAlert waits until an alert named alertname has been received firing and returns it; after timeout
// the test fails, listing what did arrive.
func (w *Webhook) WaitAlert(t testing.TB, alertname string, timeout time.Duration) WebhookAlert {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		alerts, notify := w.alerts, w.notify
		w.mu.Unlock()
		for _, a := range alerts {
			if a.Labels["alertname"] == alertname && a.Status == "firing" {
				return a
			}
		}
		select {
		case <-notify:
		case <-deadline.C:
			var got []string
			for _, a := range alerts {
				got = append(got, a.Labels["alertname"]+"/"+a.Status)
			}
			t.Fatalf("webhook got no firing %s within %s; received: %v", alertname, timeout, got)
		}
	}
}

package main

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sockbuf/sockbuf_exporter/internal/e2e"
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
	"github.com/sockbuf/sockbuf_exporter/internal/trafficgen"
)

// getDiagnose polls path with the given credentials until it answers something other than 503 (the
// sampler has fewer than two readings), within 15s.
func getDiagnose(t *testing.T, exp *e2e.Exporter, path, user, pass string) (int, http.Header, []byte) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; {
		req, err := http.NewRequest(http.MethodGet, exp.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := exp.Client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("GET %s: reading the answer: %v", path, err)
		}
		if resp.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
			return resp.StatusCode, resp.Header, body
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestDiagnoseEndpoint: the running exporter serves /diagnose from its background readings: the JSON
// contract with ?format=json naming the pinned listener a 1-byte load overflows in its namespace, text by
// default, and a link on the landing page.
func TestDiagnoseEndpoint(t *testing.T) {
	e2e.Require(t)
	ns := testenv.NewNetNS(t)
	port := background(t, ns, pruneLoad(trafficgen.Options{Renew: time.Second}))
	exp := e2e.StartExporter(t, ns, "--diagnose.interval=250ms", "--diagnose.window=3s")
	time.Sleep(2 * time.Second) // a window's worth of readings under load

	code, hdr, body := getDiagnose(t, exp, "/diagnose?format=json", "", "")
	if code != http.StatusOK || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
		t.Fatalf("GET /diagnose?format=json: %d %s: %s", code, hdr.Get("Content-Type"), body)
	}
	t.Logf("/diagnose?format=json:\n%s", body)
	r := decodeReport(t, body)
	if *r.WindowSeconds <= 0 || *r.WindowSeconds > 4 {
		t.Errorf("window_seconds %v; want within the 3s window", *r.WindowSeconds)
	}
	found := false
	for _, f := range r.Findings {
		found = found || (f.Cause == "rcvbuf_pinned" && *f.Scope.Role == "server" && *f.Scope.Port == strconv.Itoa(port))
	}
	if !found {
		t.Errorf("no rcvbuf_pinned finding for server port %d", port)
	}

	code, hdr, body = getDiagnose(t, exp, "/diagnose", "", "")
	if code != http.StatusOK || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") || !strings.Contains(string(body), "rcvbuf_pinned") {
		t.Errorf("GET /diagnose: %d %s:\n%s", code, hdr.Get("Content-Type"), body)
	}
	if code, _, _ := getDiagnose(t, exp, "/diagnose?format=yaml", "", ""); code != http.StatusBadRequest {
		t.Errorf("GET /diagnose?format=yaml: %d, want 400", code)
	}
	if code, landing := exp.Get(t, "/", nil); code != http.StatusOK || !strings.Contains(string(landing), `href="/diagnose"`) {
		t.Errorf("landing page (%d) does not link /diagnose:\n%s", code, landing)
	}
}

// TestDiagnoseEndpointBasicAuth: with basic auth in --web.config.file, /diagnose turns a request away
// without credentials or with a wrong password, like /metrics, and answers the right ones.
func TestDiagnoseEndpointBasicAuth(t *testing.T) {
	e2e.Require(t)
	cfg := basicAuthConfig(t, "prom", "s3cret")
	ns := testenv.NewNetNS(t)
	exp := e2e.StartExporter(t, ns, "--web.config.file="+cfg, "--diagnose.interval=200ms")
	for _, tc := range []struct {
		name, user, pass string
		want             int
	}{
		{"no credentials", "", "", http.StatusUnauthorized},
		{"wrong password", "prom", "wrong", http.StatusUnauthorized},
		{"right credentials", "prom", "s3cret", http.StatusOK},
	} {
		for _, path := range []string{"/metrics", "/diagnose?format=json"} {
			code, _, body := getDiagnose(t, exp, path, tc.user, tc.pass)
			if code != tc.want {
				t.Errorf("%s: GET %s: %d, want %d: %s", tc.name, path, code, tc.want, body)
			}
			if code == http.StatusOK && strings.HasPrefix(path, "/diagnose") {
				decodeReport(t, body)
			}
		}
	}
}

package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/sockbuf/sockbuf_exporter/internal/e2e"
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

// TestWebConfigBasicAuth checks that --web.config.file reaches exporter-toolkit: with basic auth configured,
// /metrics turns away a scrape without credentials or with a wrong password and serves one with the right
// ones. It also checks that --web.listen-address is repeatable: the second address serves too.
func TestWebConfigBasicAuth(t *testing.T) {
	e2e.Require(t)
	cfg := basicAuthConfig(t, "prom", "s3cret")
	ns := testenv.NewNetNS(t)
	second := fmt.Sprintf("127.0.0.1:%d", e2e.FreePort(t, ns))
	exp := e2e.StartExporter(t, ns, "--web.config.file="+cfg, "--web.listen-address="+second,
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", e2e.FreePort(t, ns)))

	for _, tc := range []struct {
		name       string
		user, pass string
		want       int
	}{
		{"no credentials", "", "", http.StatusUnauthorized},
		{"wrong password", "prom", "wrong", http.StatusUnauthorized},
		{"right credentials", "prom", "s3cret", http.StatusOK},
	} {
		for _, addr := range []string{exp.Addr, second} {
			req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.user != "" {
				req.SetBasicAuth(tc.user, tc.pass)
			}
			resp, err := exp.Client.Do(req)
			if err != nil {
				t.Fatalf("%s on %s: %v", tc.name, addr, err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("%s on %s: reading the answer: %v", tc.name, addr, err)
			}
			if resp.StatusCode != tc.want {
				t.Errorf("%s on %s: status %d, want %d", tc.name, addr, resp.StatusCode, tc.want)
			}
			if tc.want == http.StatusOK && !strings.Contains(string(body), "sockbuf_build_info") {
				t.Errorf("%s on %s: no sockbuf_build_info in the answer", tc.name, addr)
			}
		}
	}
}

// basicAuthConfig writes a --web.config.file with one basic-auth user and returns its path.
func basicAuthConfig(t *testing.T, user, password string) string {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "web.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("basic_auth_users:\n  %s: %s\n", user, hash)), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

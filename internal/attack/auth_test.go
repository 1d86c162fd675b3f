package attack

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/sockbuf/sockbuf_exporter/internal/e2e"
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

// webConfig writes an exporter-toolkit web configuration with user prom, password s3cret hashed at cost,
// plus extra YAML.
func webConfig(t testing.TB, cost int, extra string) string {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), cost)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "web.yml")
	if err := os.WriteFile(p, fmt.Appendf(nil, "basic_auth_users:\n  prom: %s\n%s", hash, extra), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// authGet fetches path as user prom with pass and returns the status.
func authGet(t testing.TB, client *http.Client, url, pass string) int {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("prom", pass)
	resp, err := client.Do(req)
	if err != nil {
		t.Errorf("GET %s: %v", url, err)
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestWebConfigRateLimit checks exporter-toolkit's rate_limit, the one defence against a password flood its
// web configuration offers: one token bucket for the whole server, taken before the password is checked.
// Requests beyond the burst get 429 without a bcrypt comparison, whoever sends them, so a flood is refused
// cheaply but refuses Prometheus too until tokens come back (docs/deployment.md#basic-auth-under-a-password-flood).
func TestWebConfigRateLimit(t *testing.T) {
	e2e.Require(t)
	ns := testenv.NewNetNS(t)
	cfg := webConfig(t, bcrypt.MinCost, "rate_limit:\n  interval: 1s\n  burst: 5\n")
	exp := start(t, ns, nil, "--path.procfs="+tree(t, nil), "--web.config.file="+cfg)
	time.Sleep(1100 * time.Millisecond) // start's wait took a token
	codes := map[int]int{}
	for i := range 20 {
		codes[authGet(t, exp.client, exp.url+"/metrics", fmt.Sprint("wrong", i))]++
	}
	if codes[http.StatusUnauthorized] < 1 || codes[http.StatusUnauthorized] > 6 || codes[http.StatusTooManyRequests] < 14 {
		t.Errorf("20 wrong passwords with a burst of 5: statuses %v, want up to 6 401 and the rest 429", codes)
	}
	if code := authGet(t, exp.client, exp.url+"/metrics", "s3cret"); code != http.StatusTooManyRequests {
		t.Errorf("the right password right after the flood: status %d, want 429 (the bucket is shared)", code)
	}
	time.Sleep(1100 * time.Millisecond)
	if code := authGet(t, exp.client, exp.url+"/metrics", "s3cret"); code != http.StatusOK {
		t.Errorf("the right password a second later: status %d, want 200", code)
	}
}

// BenchmarkBasicAuthFlood measures a scrape with the right password while 32 clients send wrong passwords as
// fast as they can, each one different so that exporter-toolkit's cache of checked passwords does not help
// (and is evicted from). exporter-toolkit checks one password at a time, so the right one waits behind the
// flood; the cost of the hash sets how long. It reports ms per scrape for bcrypt cost 10 (htpasswd's
// default) without a flood (the reference) and with one, and for cost 4 with one; run it with
//
//	go test -run '^$' -bench BasicAuthFlood -benchtime 20x ./internal/attack
func BenchmarkBasicAuthFlood(b *testing.B) {
	e2e.Require(b)
	for _, tc := range []struct{ cost, flooders int }{{10, 0}, {10, 32}, {bcrypt.MinCost, 32}} {
		cost := tc.cost
		b.Run(fmt.Sprintf("cost=%d/flooders=%d", cost, tc.flooders), func(b *testing.B) {
			ns := testenv.NewNetNS(b)
			exp := e2e.StartExporter(b, ns, "--no-collector.sockets", "--web.config.file="+webConfig(b, cost, ""))
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var wrong atomic.Int64
			for w := range tc.flooders {
				wg.Go(func() {
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						authGet(b, exp.Client, exp.URL+"/metrics", fmt.Sprintf("wrong-%d-%d", w, i))
						wrong.Add(1)
					}
				})
			}
			time.Sleep(500 * time.Millisecond)
			b.ResetTimer()
			for b.Loop() {
				if code := authGet(b, exp.Client, exp.URL+"/metrics", "s3cret"); code != http.StatusOK {
					b.Fatalf("right password: status %d", code)
				}
			}
			b.StopTimer()
			close(stop)
			wg.Wait()
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/scrape")
			b.ReportMetric(float64(wrong.Load())/b.Elapsed().Seconds(), "wrong/s")
		})
	}
}

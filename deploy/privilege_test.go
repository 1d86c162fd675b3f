package deploy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sockbuf/sockbuf_exporter/internal/e2e"
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

// TestPrivileges runs the exporter the way the deployment files do — uid 65534 with no capabilities (image USER,
// DaemonSet securityContext, the systemd unit), and with only CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH for process
// attribution (process-attribution.conf) — and checks that every collector works and that process attribution
// names a process of another user. It stands in for running the units under systemd, which needs systemd as PID 1.
func TestPrivileges(t *testing.T) {
	setpriv, bin := setprivExporter(t)
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	self := strings.TrimSpace(string(comm))

	// What process-attribution.conf grants and adds to the command line.
	dropInCaps, dropInArgs := dropInGrants(t, "process-attribution.conf")

	for _, c := range []struct {
		name     string
		caps     string // for setpriv; "" is none
		args     []string
		wantProc string // process label of the test's own sockets
	}{
		{"no-capabilities", "", nil, ""},
		{"no-capabilities-process-attribution", "", dropInArgs, ""},
		{"process-attribution-dropin", strings.Join(dropInCaps, ","), dropInArgs, self},
	} {
		t.Run(c.name, func(t *testing.T) {
			ns := testenv.NewNetNS(t)
			// A connection owned by root (this test), for process attribution to name, or not.
			var port int
			var conns []net.Conn
			err := ns.Do(func() error {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					return err
				}
				t.Cleanup(func() { ln.Close() })
				port = ln.Addr().(*net.TCPAddr).Port
				client, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					return err
				}
				server, err := ln.Accept()
				if err != nil {
					return err
				}
				conns = append(conns, client, server)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				for _, c := range conns {
					c.Close()
				}
			})

			caps := "-all"
			if c.caps != "" {
				caps = "-all," + c.caps
			}
			args := []string{"--reuid=65534", "--regid=65534", "--clear-groups",
				"--inh-caps=" + caps, "--ambient-caps=" + caps, "--bounding-set=" + caps}
			if c.caps == "" {
				args = append(args, "--no-new-privs")
			}
			// Default flags: the default port is what every deployment file assumes.
			args = append(append(args, bin), c.args...)
			e2e.StartProcess(t, ns, nil, "the exporter", setpriv, args...)

			body := scrapeInNetNS(t, ns, "127.0.0.1:"+defaultPort(t))
			success := regexp.MustCompile(`(?m)^sockbuf_scrape_collector_success\{collector="([a-z]+)"\} (\S+)$`).FindAllStringSubmatch(body, -1)
			if len(success) < 5 {
				t.Fatalf("only %d collectors reported:\n%s", len(success), body)
			}
			for _, m := range success {
				if m[2] != "1" {
					t.Errorf("collector %s failed without privileges", m[1])
				}
			}
			groupRE := regexp.MustCompile(fmt.Sprintf(`(?m)^sockbuf_sockets\{[^}]*port="%d"[^}]*\} `, port))
			groups := groupRE.FindAllString(body, -1)
			if len(groups) == 0 {
				t.Fatalf("no socket group for the test's connection on port %d:\n%s", port, body)
			}
			for _, g := range groups {
				if !strings.Contains(g, `process="`+c.wantProc+`"`) {
					t.Errorf("group %s: want process=%q", g, c.wantProc)
				}
			}
		})
	}
}

// setprivExporter returns setpriv and the exporter binary, which an unprivileged user can run: it must
// reach the binary through the test's private temporary directory. It needs root.
func setprivExporter(t *testing.T) (setpriv, bin string) {
	t.Helper()
	testenv.RequireRoot(t)
	setpriv = testenv.RequireBinary(t, "setpriv", "util-linux")
	bin = exporterBinary(t)
	for dir := filepath.Dir(bin); dir != filepath.Dir(buildDir); dir = filepath.Dir(dir) {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return setpriv, bin
}

// dropInGrants returns what a systemd drop-in of deploy/systemd grants, as setpriv capabilities ("+bpf"),
// and the flags it adds to the command line (without the unit's socket activation and variables).
func dropInGrants(t *testing.T, dropIn string) (caps, args []string) {
	t.Helper()
	service := unitSettings(t, filepath.Join(systemdDir, dropIn))["Service"]
	for _, c := range strings.Fields(strings.Join(service["AmbientCapabilities"], " ")) {
		caps = append(caps, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
	}
	for _, a := range strings.Fields(service["ExecStart"][0])[1:] {
		if a != "--web.systemd-socket" && !strings.HasPrefix(a, "$") {
			args = append(args, a)
		}
	}
	return caps, args
}

// scrapeInNetNS fetches /metrics from inside the namespace, retrying while the exporter starts. The dial runs on
// the thread that joined the namespace, so the socket lives there.
func scrapeInNetNS(t *testing.T, ns *testenv.NetNS, addr string) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var body string
		err := ns.Do(func() error {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				return err
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := fmt.Fprintf(conn, "GET /metrics HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", addr); err != nil {
				return err
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			data, err := io.ReadAll(resp.Body)
			if err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET /metrics: %s", resp.Status)
			}
			body = string(data)
			return nil
		})
		if err == nil {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("scraping %s in netns %s: %v", addr, ns.Name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

package deploy

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

const (
	systemdDir = repoRoot + "/deploy/systemd"
	// installedBinary is where the units expect the exporter, as docs/deployment.md installs it.
	installedBinary = "/usr/local/bin/sockbuf_exporter"
)

// unitSettings parses a unit file into section -> key -> values (keys may repeat; an empty assignment resets
// the list, as systemd does).
func unitSettings(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
			if out[section] == nil {
				out[section] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: cannot parse %q", path, line)
			}
			if v == "" {
				out[section][k] = []string{}
			} else {
				out[section][k] = append(out[section][k], v)
			}
		}
	}
	return out
}

// installUnits copies the units into a fresh directory with ExecStart pointing at the freshly built exporter:
// systemd-analyze verify checks that the command exists and is executable. A dropIn (process-attribution.conf,
// bpf.conf; "" for none) goes where the docs install it.
func installUnits(t *testing.T, dropIn string) string {
	t.Helper()
	bin := exporterBinary(t)
	dir := t.TempDir()
	files := map[string]string{
		"sockbuf_exporter.service": "sockbuf_exporter.service",
		"sockbuf_exporter.socket":  "sockbuf_exporter.socket",
	}
	if dropIn != "" {
		if err := os.Mkdir(filepath.Join(dir, "sockbuf_exporter.service.d"), 0o755); err != nil {
			t.Fatal(err)
		}
		files[dropIn] = "sockbuf_exporter.service.d/" + dropIn
	}
	for from, to := range files {
		data, err := os.ReadFile(filepath.Join(systemdDir, from))
		if err != nil {
			t.Fatal(err)
		}
		data = bytes.ReplaceAll(data, []byte(installedBinary), []byte(bin))
		if err := os.WriteFile(filepath.Join(dir, to), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestSystemdVerify runs `systemd-analyze verify` on the units, without and with each drop-in, and fails on
// anything it says about them. It works without systemd running as PID 1.
func TestSystemdVerify(t *testing.T) {
	analyze := testenv.RequireBinary(t, "systemd-analyze", "systemd")
	for _, dropIn := range []string{"", "process-attribution.conf", "bpf.conf"} {
		name := strings.TrimSuffix(dropIn, ".conf")
		if dropIn == "" {
			name = "default"
		}
		t.Run(name, func(t *testing.T) {
			dir := installUnits(t, dropIn)
			cmd := exec.Command(analyze, "verify", "--man=no",
				filepath.Join(dir, "sockbuf_exporter.socket"), filepath.Join(dir, "sockbuf_exporter.service"))
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
			}
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				if line == "" {
					continue
				}
				// systemd-analyze also reports on units of this machine pulled in as dependencies; only
				// what it says about ours is our business.
				if strings.Contains(line, "sockbuf_exporter") || strings.Contains(line, dir) {
					t.Errorf("systemd-analyze verify: %s", line)
				} else {
					t.Logf("systemd-analyze verify (not about our units): %s", line)
				}
			}
		})
	}
}

// TestSystemdHardening pins the choices the unit's comments explain, so that a well-meant "more hardening"
// edit cannot blind the exporter, and the flags in ExecStart exist.
func TestSystemdHardening(t *testing.T) {
	svc := unitSettings(t, filepath.Join(systemdDir, "sockbuf_exporter.service"))["Service"]
	for key, want := range map[string]string{
		"DynamicUser":             "yes",
		"CapabilityBoundingSet":   "",
		"AmbientCapabilities":     "",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectKernelTunables":   "yes",
		"ProtectControlGroups":    "yes",
		"RestrictNamespaces":      "yes",
		"MemoryDenyWriteExecute":  "yes",
		"SystemCallArchitectures": "native",
	} {
		got, ok := svc[key]
		if !ok || strings.Join(got, " ") != want {
			t.Errorf("%s = %q (set: %v), want %q", key, got, ok, want)
		}
	}
	families := strings.Fields(strings.Join(svc["RestrictAddressFamilies"], " "))
	for _, need := range []string{"AF_NETLINK", "AF_UNIX", "AF_INET", "AF_INET6"} {
		if !contains(families, need) {
			t.Errorf("RestrictAddressFamilies %v lacks %s, which the exporter needs", families, need)
		}
	}
	// Each of these hides /proc/net, /proc/sys/net, the host's network or other processes' /proc/<pid>.
	for key, bad := range map[string][]string{
		"PrivateNetwork":       {"yes", "true", "on", "1"},
		"ProcSubset":           {"pid"},
		"ProtectProc":          {"invisible", "noaccess", "ptraceable"},
		"NetworkNamespacePath": nil,
	} {
		for _, v := range svc[key] {
			if bad == nil || contains(bad, v) {
				t.Errorf("%s=%s would hide what the exporter reads", key, v)
			}
		}
	}

	flags, _ := exporterFlags(t)
	for _, file := range []string{"sockbuf_exporter.service", "process-attribution.conf", "bpf.conf"} {
		u := unitSettings(t, filepath.Join(systemdDir, file))["Service"]
		starts := u["ExecStart"]
		if len(starts) != 1 {
			t.Fatalf("%s: want exactly one ExecStart after resets, got %q", file, starts)
		}
		args := strings.Fields(starts[0])
		if args[0] != installedBinary {
			t.Errorf("%s: ExecStart runs %s, want %s (where docs/deployment.md installs it)", file, args[0], installedBinary)
		}
		if !contains(args, "--web.systemd-socket") {
			t.Errorf("%s: ExecStart lacks --web.systemd-socket: the socket unit's listener would be ignored", file)
		}
		checkArgs(t, file+" ExecStart", args[1:], flags)
	}

	sock := unitSettings(t, filepath.Join(systemdDir, "sockbuf_exporter.socket"))["Socket"]
	if got, want := sock["ListenStream"], defaultPort(t); len(got) != 1 || got[0] != want {
		t.Errorf("socket ListenStream = %q, want the exporter's default port %s", got, want)
	}
}

// scoreRE finds the exposure level in `systemd-analyze security` output.
var scoreRE = regexp.MustCompile(`Overall exposure level for [^:]+: ([0-9.]+)`)

// TestSystemdSecurityScore measures the units' `systemd-analyze security` exposure level and compares it with
// what docs/deployment.md quotes, so that the number users read is the number they get.
func TestSystemdSecurityScore(t *testing.T) {
	analyze := testenv.RequireBinary(t, "systemd-analyze", "systemd")
	docs, err := os.ReadFile(filepath.Join(repoRoot, "docs", "deployment.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		dropIn string
		row    string // the row of the table in docs/deployment.md
	}{
		{"", "sockbuf_exporter.service"},
		{"process-attribution.conf", "sockbuf_exporter.service + process-attribution.conf"},
		{"bpf.conf", "sockbuf_exporter.service + bpf.conf"},
	} {
		dir := installUnits(t, c.dropIn)
		out, err := exec.Command(analyze, "security", "--offline=yes", "--no-pager",
			filepath.Join(dir, "sockbuf_exporter.service")).CombinedOutput()
		m := scoreRE.FindSubmatch(out)
		if m == nil {
			if bytes.Contains(out, []byte("offline")) {
				testenv.Missing(t, "systemd-analyze security --offline needs systemd >= 250: %s", out)
			}
			t.Fatalf("systemd-analyze security: %v: no exposure level in:\n%s", err, out)
		}
		got := string(m[1])
		rowRE := regexp.MustCompile(`\|\s*` + regexp.QuoteMeta("`"+c.row+"`") + `\s*\|\s*\*\*([0-9.]+)`)
		d := rowRE.FindSubmatch(docs)
		if d == nil {
			t.Errorf("docs/deployment.md has no row | `%s` | **<score>** ...; measured %s", c.row, got)
			continue
		}
		if string(d[1]) != got {
			t.Errorf("docs/deployment.md quotes exposure level %s for %s, systemd-analyze measures %s", d[1], c.row, got)
		}
		t.Logf("%s: exposure level %s", c.row, got)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

package deploy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

// repoRoot is the module root as seen from this package's directory, where `go test` runs the tests.
const repoRoot = ".."

var (
	buildDir  string // removed by TestMain
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sockbuf-deploy-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buildDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// exporterBinary builds the exporter once per test run, statically (CGO_ENABLED=0) as `make build` does, so
// that the tests do not depend on make having run.
func exporterBinary(t *testing.T) string {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		testenv.Missing(t, "the go command is not on PATH; needed to build the exporter")
	}
	buildOnce.Do(func() {
		out := filepath.Join(buildDir, "linux-"+runtime.GOARCH, "sockbuf_exporter")
		cmd := exec.Command(goCmd, "build", "-trimpath", "-o", out, "./cmd/sockbuf_exporter")
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
		if msg, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/sockbuf_exporter: %v\n%s", err, msg)
			return
		}
		buildPath = out
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// flagNameRE matches a flag in kingpin's --help output, with the "[no-]" a boolean flag shows.
var flagNameRE = regexp.MustCompile(`(?m)^\s+(?:-\w, )?--(?:\[no-\])?([a-z0-9][a-z0-9.\-]*)`)

// exporterFlags returns the long flags the built binary accepts (without "--"), and the default of each
// flag that shows one.
func exporterFlags(t *testing.T) (flags map[string]bool, defaults map[string]string) {
	t.Helper()
	out, err := exec.Command(exporterBinary(t), "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("sockbuf_exporter --help: %v\n%s", err, out)
	}
	flags, defaults = map[string]bool{}, map[string]string{}
	for _, m := range flagNameRE.FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	for _, m := range regexp.MustCompile(`--([a-z0-9.\-]+)=(\S+)`).FindAllStringSubmatch(string(out), -1) {
		defaults[m[1]] = strings.Trim(m[2], `"`)
	}
	if len(flags) < 5 {
		t.Fatalf("found only %d flags in --help output, the parser is out of date:\n%s", len(flags), out)
	}
	return flags, defaults
}

// checkArgs fails the test for every argument that is not a flag the exporter accepts. Arguments are
// "--name=value", "--name", or "--no-name" for a boolean flag; a "$VAR" argument is expanded by the caller
// (systemd, kubelet) and is skipped.
func checkArgs(t *testing.T, where string, args []string, flags map[string]bool) {
	t.Helper()
	for _, a := range args {
		if strings.HasPrefix(a, "$") {
			continue
		}
		if !strings.HasPrefix(a, "--") {
			t.Errorf("%s: argument %q is not a --flag (the exporter takes no positional arguments)", where, a)
			continue
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if flags[name] || (strings.HasPrefix(name, "no-") && flags[strings.TrimPrefix(name, "no-")]) {
			continue
		}
		t.Errorf("%s: sockbuf_exporter does not accept %s (see sockbuf_exporter --help)", where, a)
	}
}

// defaultPort is the port of the binary's default --web.listen-address, e.g. "10714".
func defaultPort(t *testing.T) string {
	t.Helper()
	_, defaults := exporterFlags(t)
	addr, ok := defaults["web.listen-address"]
	if !ok {
		t.Fatal("--help shows no default for --web.listen-address")
	}
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		t.Fatalf("default --web.listen-address %q has no port", addr)
	}
	return addr[i+1:]
}

func TestFlagParser(t *testing.T) {
	flags, _ := exporterFlags(t)
	for _, want := range []string{"path.procfs", "web.listen-address", "web.systemd-socket", "collector.sockets.process"} {
		if !flags[want] {
			t.Errorf("--%s not found in --help output: %v", want, flags)
		}
	}
	if got := defaultPort(t); got != "10714" {
		t.Errorf("default port = %s, want 10714 (the port every deployment file uses)", got)
	}
}

// TestOtherSystemsSayLinuxOnly: the exporter is Linux only, declared in one place
// (cmd/sockbuf_exporter/main_other.go): for another system the command still builds, into a binary that says
// so, and the packages that need no Linux (sockdiag's codec, the aggregation, the /proc parsers, the rules)
// build too.
func TestOtherSystemsSayLinuxOnly(t *testing.T) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		testenv.Missing(t, "the go command is not on PATH")
	}
	for _, args := range [][]string{
		{"build", "-o", os.DevNull, "./cmd/sockbuf_exporter"},
		{"build", "./sockdiag", "./sockagg", "./procnet", "./diagnose"},
	} {
		cmd := exec.Command(goCmd, args...)
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=darwin", "GOARCH=arm64")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("GOOS=darwin go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

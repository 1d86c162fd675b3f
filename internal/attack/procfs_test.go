package attack

import (
	"bytes"
	stdcmp "cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sockbuf/sockbuf_exporter/collector"
	"github.com/sockbuf/sockbuf_exporter/internal/e2e"
	"github.com/sockbuf/sockbuf_exporter/procnet"
)

// fixture is the recorded procfs tree every attack starts from.
const fixture = "../../collector/testdata/proc-host"

// procCollectors are the collectors that read only procfs.
var procCollectors = []string{"netstat", "sockstat", "softnet", "sysctl"}

// attack is one crafted procfs tree: the fixture, changed by mutate.
type attack struct {
	name   string
	mutate func(t *testing.T, proc string)
	// failed are the collectors that must report success 0, every other one 1.
	failed []string
	// logs must appear in the "collector failed" log line of each failed collector.
	logs string
	// absent are metrics that must be missing while their collector succeeds; every other series of a
	// succeeding collector must have the fixture's value.
	absent []string
	// timeout is the scrape's deadline; attacks that block need it short.
	timeout time.Duration
}

// The attacks. A line of the fixture's files is kept intact where the attack is about something else, so
// that a wrong number shows as a difference from the untouched tree.
var attacks = []attack{
	{name: "pristine"},
	{name: "netstat truncated in a values line", mutate: cut("net/netstat", 700),
		failed: []string{"netstat"}, logs: "truncated: last line has no newline"},
	{name: "netstat names line only", mutate: keepLines("net/netstat", 1),
		failed: []string{"netstat"}, logs: `no values line after "TcpExt: SyncookiesSent`},
	{name: "netstat empty", mutate: write("net/netstat", ""), failed: []string{"netstat"}, logs: "no TcpExt lines"},
	{name: "netstat binary garbage", mutate: garbage("net/netstat", 64<<10), failed: []string{"netstat"}},
	{name: "netstat NUL bytes", mutate: write("net/netstat", strings.Repeat("\x00", 4096)), failed: []string{"netstat"},
		logs: "truncated"},
	{name: "netstat one byte over the limit", mutate: oversize("net/netstat", procnet.MaxFileSize+1),
		failed: []string{"netstat"}, logs: fmt.Sprintf("file too large: more than %d bytes", procnet.MaxFileSize)},
	{name: "netstat sparse 1 GiB", mutate: sparse("net/netstat", 1<<30),
		failed: []string{"netstat"}, logs: "file too large"},
	{name: "netstat linked to /dev/urandom", mutate: link("net/netstat", "/dev/urandom"),
		failed: []string{"netstat"}, logs: "file too large"},
	{name: "netstat linked to /dev/zero", mutate: link("net/netstat", "/dev/zero"),
		failed: []string{"netstat"}, logs: "file too large"},
	{name: "snmp linked to /dev/null", mutate: link("net/snmp", "/dev/null"), failed: []string{"netstat"},
		logs: "no Tcp lines"},
	{name: "netstat symlink loop", mutate: link("net/netstat", "netstat"), failed: []string{"netstat"},
		logs: "too many levels of symbolic links"},
	{name: "netstat a directory", mutate: dir("net/netstat"), failed: []string{"netstat"}, logs: "is a directory"},
	{name: "netstat missing", mutate: remove("net/netstat"), failed: []string{"netstat"},
		logs: "no such file or directory"},
	{name: "netstat a FIFO", mutate: fifo("net/netstat"), failed: []string{"netstat"},
		logs: "scrape deadline passed before the collector finished", timeout: 500 * time.Millisecond},
	{name: "netstat value beyond uint64", mutate: replaceValue("net/netstat", "PruneCalled", "18446744073709551616"),
		failed: []string{"netstat"}, logs: `TcpExt PruneCalled: not a number: "18446744073709551616" overflows uint64`},
	{name: "netstat negative value", mutate: replaceValue("net/netstat", "PruneCalled", "-6"),
		failed: []string{"netstat"}, logs: `not a number: "-6"`},
	{name: "netstat a value missing", mutate: dropValue("net/netstat", "PruneCalled"),
		failed: []string{"netstat"}, logs: "TcpExt: 135 names but 134 values"},
	{name: "netstat without a kernel field", mutate: dropField("net/netstat", "TCPZeroWindowDrop"),
		absent: []string{"sockbuf_tcp_zero_window_drop_total"}},
	{name: "net a symlink loop", mutate: link("net", "net"), failed: []string{"netstat", "sockstat", "softnet"},
		logs: "too many levels of symbolic links"},
	{name: "net missing", mutate: remove("net"), failed: []string{"netstat", "sockstat", "softnet"},
		logs: "no such file or directory"},
	{name: "sockstat without TCP", mutate: write("net/sockstat", "sockets: used 1\nUDP: inuse 0 mem 3\n"),
		failed: []string{"sockstat"}, logs: "no TCP line"},
	{name: "sockstat truncated", mutate: cut("net/sockstat", 20), failed: []string{"sockstat"}, logs: "truncated"},
	{name: "softnet empty", mutate: write("net/softnet_stat", ""), failed: []string{"softnet"}, logs: "no CPU rows"},
	{name: "softnet more rows than possible CPUs", mutate: softnetRows(3, "0-1"), failed: []string{"softnet"},
		logs: "more than 2 rows, one per possible CPU"},
	{name: "softnet 9,000 rows, no sysfs", mutate: softnetRows(9000, ""), failed: []string{"softnet"},
		logs: fmt.Sprintf("more than %d rows", procnet.MaxCPUs)},
	{name: "softnet cpu beyond the possible", mutate: softnetCPU(2, 7, "0-3"), failed: []string{"softnet"},
		logs: "row 2: cpu 7 out of range, 4 CPUs are possible"},
	{name: "softnet 100,000 rows", mutate: softnetRows(100_000, ""), failed: []string{"softnet"},
		logs: "file too large"},
	{name: "softnet linked to /dev/urandom", mutate: link("net/softnet_stat", "/dev/urandom"),
		failed: []string{"softnet"}, logs: "file too large"},
	{name: "sysctl negative", mutate: write("sys/net/core/rmem_max", "-1\n"), failed: []string{"sysctl"},
		logs: "negative value -1"},
	{name: "sysctl a FIFO", mutate: fifo("sys/net/core/rmem_max"), failed: []string{"sysctl"},
		logs: "scrape deadline passed", timeout: 500 * time.Millisecond},
	{name: "sysctl one missing", mutate: remove("sys/net/core/rmem_max"),
		absent: []string{"sockbuf_net_core_rmem_max_bytes"}},
	{name: "sysctl all missing", mutate: remove("sys"), failed: []string{"sysctl"},
		logs: "none of the sysctl files exist",
		// sockstat's thresholds come from the sysctls; a namespace may lack them, so they go missing alone.
		absent: []string{"sockbuf_tcp_mem_threshold_bytes", "sockbuf_udp_mem_threshold_bytes", "sockbuf_tcp_max_orphans"}},
	{name: "tcp_mem a directory", mutate: dir("sys/net/ipv4/tcp_mem"), failed: []string{"sockstat", "sysctl"},
		logs: "is a directory"},
}

func TestProcfsAttacks(t *testing.T) {
	base := gatherTree(t, attack{name: "baseline"})
	if len(base.series) < 50 {
		t.Fatalf("the fixture gives only %d series", len(base.series))
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			got := gatherTree(t, a)
			want := map[string]float64{}
			for _, c := range procCollectors {
				want[c] = 1
			}
			for _, c := range a.failed {
				want[c] = 0
			}
			if diff := cmp.Diff(want, got.success); diff != "" {
				t.Errorf("sockbuf_scrape_collector_success (-want +got):\n%s", diff)
			}
			for _, c := range a.failed {
				line := logLine(got.logs, c)
				if line == "" {
					t.Errorf("no \"collector failed\" log line for %s:\n%s", c, got.logs)
				} else if !strings.Contains(line, a.logs) {
					t.Errorf("log line of %s does not say %q:\n%s", c, a.logs, line)
				}
			}
			// Never a wrong number: every series is the untouched tree's, with the same value; the failed
			// collectors' and the absent metrics are missing.
			for key, v := range got.series {
				if bv, ok := base.series[key]; !ok || bv != v {
					t.Errorf("%s = %v, the untouched tree gives %v (present %v)", key, v, bv, ok)
				}
			}
			for key := range base.series {
				_, ok := got.series[key]
				gone := slices.Contains(a.failed, base.owner[key]) || slices.Contains(a.absent, seriesName(key))
				if ok == gone {
					t.Errorf("%s present %v, want %v", key, ok, !gone)
				}
			}
		})
	}
}

// TestFIFOScrapesHoldOneGoroutine: twenty scrapes of a tree whose netstat is a FIFO each answer at their
// deadline, and the blocked read holds one goroutine, not one per scrape.
func TestFIFOScrapesHoldOneGoroutine(t *testing.T) {
	proc := tree(t, fifo("net/netstat"))
	e, err := collector.New(collector.Config{ProcPath: proc}, []string{"netstat"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	scrape := func() time.Duration {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		reg := prometheus.NewRegistry()
		reg.MustRegister(e.WithContext(ctx))
		if _, err := reg.Gather(); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	scrape()
	before := runtime.NumGoroutine()
	for range 20 {
		if d := scrape(); d > 5*time.Second {
			t.Fatalf("a scrape took %v with a deadline of 200ms", d)
		}
	}
	time.Sleep(100 * time.Millisecond) // let the scrapes' goroutines end
	if after := runtime.NumGoroutine(); after > before+2 {
		t.Errorf("%d goroutines after 20 scrapes of a blocked file, %d after the first", after, before)
	}
}

// gathered is one scrape of a tree.
type gathered struct {
	success map[string]float64
	series  map[string]float64 // by name{labels}, without the exporter's own metrics
	owner   map[string]string  // series key -> collector, from the metric's help registry below
	logs    string
}

// gatherTree builds the tree of a, runs the procfs collectors on it once and returns what they gave.
func gatherTree(t *testing.T, a attack) gathered {
	t.Helper()
	proc := tree(t, a.mutate)
	var logs e2e.LockedBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	g := gathered{success: map[string]float64{}, series: map[string]float64{}, owner: map[string]string{}}
	for _, c := range procCollectors {
		// One exporter per collector, so that each series is known to come from it.
		e, err := collector.New(collector.Config{ProcPath: proc}, []string{c}, logger)
		if err != nil {
			t.Fatal(err)
		}
		timeout := stdcmp.Or(a.timeout, 5*time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		reg := prometheus.NewRegistry()
		reg.MustRegister(e.WithContext(ctx))
		start := time.Now()
		mfs, err := reg.Gather()
		cancel()
		if err != nil {
			t.Fatalf("gathering %s: %v", c, err)
		}
		if d := time.Since(start); d > timeout+2*time.Second {
			t.Errorf("%s took %v with a deadline of %v", c, d, timeout)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				key := seriesKey(mf.GetName(), m)
				v := value(m)
				switch mf.GetName() {
				case "sockbuf_scrape_collector_success":
					g.success[c] = v
				case "sockbuf_scrape_collector_duration_seconds":
				default:
					g.series[key] = v
					g.owner[key] = c
				}
			}
		}
	}
	g.logs = logs.String()
	return g
}

// tree copies the fixture into a temporary <dir>/proc and applies mutate. <dir>/sys, where procnet looks
// for the possible CPUs, exists only if an attack writes it; without it the bound is procnet.MaxCPUs.
func tree(t *testing.T, mutate func(*testing.T, string)) string {
	t.Helper()
	dir := t.TempDir()
	proc := filepath.Join(dir, "proc")
	if err := os.CopyFS(proc, os.DirFS(fixture)); err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(t, proc)
	}
	return proc
}

func write(name, content string) func(*testing.T, string) {
	return func(t *testing.T, proc string) {
		p := filepath.Join(proc, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// edit rewrites a file of the tree through fn.
func edit(name string, fn func(t *testing.T, data []byte) []byte) func(*testing.T, string) {
	return func(t *testing.T, proc string) {
		p := filepath.Join(proc, name)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, fn(t, data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func cut(name string, n int) func(*testing.T, string) {
	return edit(name, func(t *testing.T, data []byte) []byte {
		if n >= len(data) || data[n-1] == '\n' {
			t.Fatalf("cutting %s at %d does not cut a line", name, n)
		}
		return data[:n]
	})
}

func keepLines(name string, n int) func(*testing.T, string) {
	return edit(name, func(_ *testing.T, data []byte) []byte {
		lines := bytes.SplitAfter(data, []byte("\n"))
		return bytes.Join(lines[:n], nil)
	})
}

// columns edits the TcpExt names and values lines of a netstat file column by column: fn gets the index of
// the named field and both lines' fields.
func columns(name, field string, fn func(i int, names, values []string) ([]string, []string)) func(*testing.T, string) {
	return edit(name, func(t *testing.T, data []byte) []byte {
		lines := strings.Split(string(data), "\n")
		names, values := strings.Fields(lines[0]), strings.Fields(lines[1])
		i := slices.Index(names, field)
		if i < 0 {
			t.Fatalf("no field %s in %s", field, name)
		}
		names, values = fn(i, names, values)
		lines[0], lines[1] = strings.Join(names, " "), strings.Join(values, " ")
		return []byte(strings.Join(lines, "\n"))
	})
}

func replaceValue(name, field, v string) func(*testing.T, string) {
	return columns(name, field, func(i int, names, values []string) ([]string, []string) {
		values[i] = v
		return names, values
	})
}

func dropValue(name, field string) func(*testing.T, string) {
	return columns(name, field, func(i int, names, values []string) ([]string, []string) {
		return names, slices.Delete(values, i, i+1)
	})
}

// dropField removes a field as an older kernel would not have it: name and value.
func dropField(name, field string) func(*testing.T, string) {
	return columns(name, field, func(i int, names, values []string) ([]string, []string) {
		return slices.Delete(names, i, i+1), slices.Delete(values, i, i+1)
	})
}

func garbage(name string, n int) func(*testing.T, string) {
	return func(t *testing.T, proc string) {
		b := make([]byte, n)
		r := rand.NewChaCha8([32]byte{1})
		r.Read(b)
		write(name, string(b))(t, proc)
	}
}

// oversize writes a file of n bytes of valid-looking netstat lines.
func oversize(name string, n int) func(*testing.T, string) {
	return func(t *testing.T, proc string) {
		data := bytes.Repeat([]byte("TcpExt: PruneCalled\nTcpExt: 1\n"), n/30+1)
		write(name, string(data[:n]))(t, proc)
	}
}

func sparse(name string, n int64) func(*testing.T, string) {
	return func(t *testing.T, proc string) {
		if err := os.Truncate(filepath.Join(proc, name), n); err != nil {
			t.Fatal(err)
		}
	}
}

func link(name, target string) func(*testing.T, string) {
	return func(t *testing.T, proc string) {
		p := filepath.Join(proc, name)
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
}

func dir(name string) func(*testing.T, string) {
	return func(t *testing.T, proc string) {
		p := filepath.Join(proc, name)
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func remove(name string) func(*testing.T, string) {
	return func(t *testing.T, proc string) {
		if err := os.RemoveAll(filepath.Join(proc, name)); err != nil {
			t.Fatal(err)
		}
	}
}

// fifo replaces a file with a FIFO nobody writes to: opening it blocks. When the test ends the FIFO is
// opened for writing and closed, so that the blocked reader sees end of file and its goroutine ends.
func fifo(name string) func(*testing.T, string) {
	return func(t *testing.T, proc string) {
		p := filepath.Join(proc, name)
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		if err := syscall.Mkfifo(p, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { releaseFIFO(p) })
	}
}

// releaseFIFO lets readers blocked in open or read of a FIFO go: a writer comes and leaves, repeatedly for
// a while, as a reader may only now arrive at the open.
func releaseFIFO(p string) {
	for range 20 {
		fd, err := syscall.Open(p, syscall.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return // ENXIO: no reader is waiting
		}
		syscall.Close(fd)
		time.Sleep(10 * time.Millisecond)
	}
}

// softnetRows writes a softnet_stat of n rows of 13 columns and, unless possible is empty, the possible CPUs
// into the sysfs next to the tree.
func softnetRows(n int, possible string) func(*testing.T, string) {
	return func(t *testing.T, proc string) {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "%s%08x\n", strings.Repeat("00000001 ", 12), i)
		}
		write("net/softnet_stat", b.String())(t, proc)
		writePossible(t, proc, possible)
	}
}

// softnetCPU writes a softnet_stat whose row `row` (1-based) names CPU cpu.
func softnetCPU(row, cpu int, possible string) func(*testing.T, string) {
	return func(t *testing.T, proc string) {
		var b strings.Builder
		for i := range row {
			c := i
			if i == row-1 {
				c = cpu
			}
			fmt.Fprintf(&b, "%s%08x\n", strings.Repeat("00000001 ", 12), c)
		}
		write("net/softnet_stat", b.String())(t, proc)
		writePossible(t, proc, possible)
	}
}

func writePossible(t *testing.T, proc, possible string) {
	if possible == "" {
		return
	}
	write("../sys/devices/system/cpu/possible", possible+"\n")(t, proc)
}

// logLine returns the "collector failed" line of collector c.
func logLine(logs, c string) string {
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "collector failed") && strings.Contains(l, "collector="+c+" ") {
			return strings.ReplaceAll(l, `\"`, `"`) // slog's text handler quotes the error
		}
	}
	return ""
}

func seriesKey(name string, m *dto.Metric) string {
	var labels []string
	for _, l := range m.GetLabel() {
		labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
	}
	if len(labels) == 0 {
		return name
	}
	return name + "{" + strings.Join(labels, ",") + "}"
}

func seriesName(key string) string { name, _, _ := strings.Cut(key, "{"); return name }

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

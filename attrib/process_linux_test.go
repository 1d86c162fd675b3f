package attrib

import (
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"

	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseSocketLink(t *testing.T) {
	for in, want := range map[string]uint32{
		"socket:[12345]":      12345,
		"socket:[0]":          0,
		"socket:[4294967295]": 4294967295,
	} {
		if got, ok := parseSocketLink([]byte(in)); !ok || got != want {
			t.Errorf("parseSocketLink(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
	for _, in := range []string{"socket:[]", "socket:[4294967296]", "socket:[12a]", "pipe:[123]", "/dev/null", "socket:[1"} {
		if _, ok := parseSocketLink([]byte(in)); ok {
			t.Errorf("parseSocketLink(%q) accepted", in)
		}
	}
}

// fakeProc builds a /proc with processes whose fd links point at the given targets.
func fakeProc(t *testing.T, procs map[string]struct {
	comm  string
	links []string
}) string {
	t.Helper()
	root := t.TempDir()
	for pid, p := range procs {
		fd := filepath.Join(root, pid, "fd")
		if err := os.MkdirAll(fd, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, pid, "comm"), []byte(p.comm+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		for i, l := range p.links {
			if err := os.Symlink(l, filepath.Join(fd, string(rune('0'+i)))); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Entries that are not processes.
	if err := os.Symlink("1", filepath.Join(root, "self")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "sys"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A process without an fd directory (a zombie, or one the exporter may not read).
	if err := os.MkdirAll(filepath.Join(root, "99"), 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestProcessScanner(t *testing.T) {
	root := fakeProc(t, map[string]struct {
		comm  string
		links []string
	}{
		"1":   {"systemd", []string{"/dev/null", "anon_inode:[eventpoll]"}},
		"100": {"nginx", []string{"/dev/null", "socket:[1001]", "socket:[1002]", "pipe:[5]"}},
		"200": {"postgres", []string{"socket:[2001]"}},
		"300": {"p\xfe", []string{"socket:[3001]"}},
	})
	p := NewProcessScanner(root)
	for range 2 { // the second scan reuses everything
		if err := p.Scan(); err != nil {
			t.Fatal(err)
		}
		for ino, want := range map[uint32]string{1001: "nginx", 1002: "nginx", 2001: "postgres", 3001: `p\xfe`, 3: ""} {
			if got := p.Name(p.Owner(ino)); got != want {
				t.Errorf("owner of inode %d = %q, want %q", ino, got, want)
			}
		}
		if len(p.owners) != 4 {
			t.Errorf("%d socket owners, want 4", len(p.owners))
		}
	}
	if err := NewProcessScanner(filepath.Join(root, "missing")).Scan(); err == nil {
		t.Error("scan of a missing /proc: no error")
	}
}

// BenchmarkProcessScan measures process attribution on this host's real /proc: the cost per scrape grows
// with the number of open file descriptors, reported as ns/fd.
func BenchmarkProcessScan(b *testing.B) {
	p := NewProcessScanner("/proc")
	if err := p.Scan(); err != nil {
		b.Skip(err)
	}
	fds := countFDs(b)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := p.Scan(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(fds), "ns/fd")
	b.ReportMetric(float64(len(p.owners)), "sockets")
}

func countFDs(b *testing.B) int {
	pids, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	if len(pids) == 0 {
		b.Skip("no readable /proc/<pid>/fd")
	}
	return len(pids)
}

// sockInode opens a TCP socket and returns its fd and inode.
func sockInode(t *testing.T) (int, uint32) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return fd, uint32(st.Ino)
}

// TestProcessScannerIncremental checks the incremental scan on the real /proc, with this test's own sockets:
// a steady state reads no link, a socket born after Refresh is found on the same Refresh, a socket that
// replaced another under the same descriptor count is found by the full pass its misses ask for, an exited
// process is forgotten, and a deadline keeps what was known.
func TestProcessScannerIncremental(t *testing.T) {
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		testenv.Missing(t, "reading /proc/self/comm: %v", err)
	}
	self := Label(strings.TrimSpace(string(comm)))
	now := time.Unix(1e9, 0)
	p := NewProcessScanner("/proc")
	p.now = func() time.Time { return now }
	refresh := func() {
		t.Helper()
		now = now.Add(time.Second)
		if err := p.Refresh(time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	owner := func(ino uint32) string { return p.Name(p.Owner(ino)) }

	_, ino1 := sockInode(t)
	refresh() // the first is a full pass
	if got := owner(ino1); got != self {
		t.Fatalf("owner of a socket opened before the first Refresh = %q, want %q", got, self)
	}
	full := p.LinksRead()
	refresh()
	if got := owner(ino1); got != self || p.LinksRead() != full {
		t.Errorf("steady state: owner %q, %d links read, want %q and none", got, p.LinksRead()-full, self)
	}

	_, ino2 := sockInode(t)
	if got := owner(ino2); got != "" {
		t.Errorf("socket born after a full Refresh found on it: %q", got)
	}
	refresh()
	if got := owner(ino2); got != self {
		t.Errorf("socket born before a Refresh = %q, want %q", got, self)
	}
	fd3, ino2b := sockInode(t) // found on this Refresh: the count moved
	refresh()
	if got := owner(ino2b); got != self {
		t.Errorf("socket born after a Refresh = %q, want %q", got, self)
	}
	t.Logf("a full pass read %d links; a Refresh after one new socket read %d", full, p.LinksRead()-full)

	// The same count: a new socket takes fd3's place (dup2 closes the old one atomically).
	fd4, ino3 := sockInode(t)
	if err := unix.Dup2(fd4, fd3); err != nil {
		t.Fatal(err)
	}
	unix.Close(fd4)
	refresh()
	owner(ino3)
	refresh()
	if got := owner(ino3); got != "" {
		t.Logf("socket under an unchanged count found before the full pass (the count moved meanwhile): %q", got)
	}
	now = now.Add(FullRescanMin)
	refresh()
	if got := owner(ino3); got != self {
		t.Errorf("socket under an unchanged count after the full pass its misses asked for = %q, want %q", got, self)
	}

	// An exited process is forgotten.
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := int32(cmd.Process.Pid)
	refresh()
	if p.procs[pid] == nil {
		t.Errorf("child %d not listed", pid)
	}
	cmd.Process.Kill()
	cmd.Wait()
	refresh()
	if p.procs[pid] != nil {
		t.Errorf("exited child %d still known", pid)
	}

	// A deadline already passed: counted, and what was known stays.
	before := p.Incomplete()
	if err := p.Refresh(now.Add(-time.Second)); !errors.Is(err, ErrScanDeadline) {
		t.Errorf("Refresh past its deadline = %v, want ErrScanDeadline", err)
	}
	if p.Incomplete() != before+1 || owner(ino1) != self {
		t.Errorf("after a late Refresh: incomplete %d (was %d), owner %q", p.Incomplete(), before, owner(ino1))
	}
}

// TestProcessScannerUnowned checks that an inode no process holds costs one full pass, asked for by its
// second miss, and then no more link reads.
func TestProcessScannerUnowned(t *testing.T) {
	root := fakeProc(t, map[string]struct {
		comm  string
		links []string
	}{"100": {"nginx", []string{"socket:[1001]"}}})
	now := time.Unix(1e9, 0)
	p := NewProcessScanner(root)
	p.now = func() time.Time { return now }
	const unowned = 4000000000
	for i, want := range []struct {
		after time.Duration
		full  bool
	}{{0, true}, {time.Second, false}, {FullRescanMin, true}, {FullRescanMin, false}, {FullRescanMin, false}} {
		now = now.Add(want.after)
		if err := p.Refresh(time.Time{}); err != nil {
			t.Fatal(err)
		}
		if full := p.fullGen == p.gen; full != want.full {
			t.Errorf("Refresh %d: full pass %v, want %v", i, full, want.full)
		}
		before := p.LinksRead()
		if got := p.Name(p.Owner(unowned)); got != "" {
			t.Errorf("unowned inode has owner %q", got)
		}
		if i >= 3 && p.LinksRead() != before {
			t.Errorf("Refresh %d: the unowned inode cost %d link reads", i, p.LinksRead()-before)
		}
		if got := p.Name(p.Owner(1001)); got != "nginx" {
			t.Errorf("Refresh %d: owner of 1001 = %q", i, got)
		}
	}
}

// BenchmarkProcessRefresh measures a steady-state Refresh on this host's real /proc: listing the processes
// and a statx of each /proc/<pid>/fd, no link read.
func BenchmarkProcessRefresh(b *testing.B) {
	p := NewProcessScanner("/proc")
	if err := p.Scan(); err != nil {
		b.Skip(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Refresh(time.Time{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(p.procs)), "processes")
	b.ReportMetric(float64(len(p.owners)), "sockets")
}

// BenchmarkProcessOwner measures Owner on known inodes, as a dump calls it once per socket.
func BenchmarkProcessOwner(b *testing.B) {
	p := NewProcessScanner("/proc")
	if err := p.Scan(); err != nil {
		b.Skip(err)
	}
	inodes := make([]uint32, 0, len(p.owners))
	for ino := range p.owners {
		inodes = append(inodes, ino)
	}
	if len(inodes) == 0 {
		b.Skip("no sockets")
	}
	i := 0
	for b.Loop() {
		p.Owner(inodes[i%len(inodes)])
		i++
	}
	b.ReportMetric(float64(len(inodes)), "sockets")
}

package attrib

import (
	"os"
	"path/filepath"
	"testing"
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

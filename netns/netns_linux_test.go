package netns

import (
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"

	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sockbuf/sockbuf_exporter/attrib"
)

// TestNetnsStatNamedInode checks the real stat of /run/netns entries against this process's namespace link, which
// is on nsfs like a namespace bind mount, and a plain file, which is what a mount leaves behind.
func TestNetnsStatNamedInode(t *testing.T) {
	const self = "/proc/self/ns/net"
	link, err := os.Readlink(self)
	if err != nil {
		testenv.Missing(t, "no %s: %v", self, err)
	}
	want, _ := ParseLink(link)
	var nsfs unix.Stat_t
	if err := unix.Stat(self, &nsfs); err != nil {
		t.Fatal(err)
	}
	if got, ok := StatNamedInode(self, &nsfs); !ok || got != want {
		t.Errorf("StatNamedInode(%s) = %d, %v; want %d, true", self, got, ok, want)
	}
	plain := filepath.Join(t.TempDir(), "left-behind")
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, ok := StatNamedInode(plain, &nsfs); ok {
		t.Errorf("StatNamedInode(plain file) is a namespace")
	}
	if _, ok := StatNamedInode(self, nil); ok {
		t.Errorf("StatNamedInode without nsfs's stat is a namespace")
	}
}

func TestRandomNetnsName(t *testing.T) {
	for name, want := range map[string]bool{
		"cni-8d1c3f2e-1b9a-4c2e-9f0e-4a5b6c7d8e9f": true,
		"8d1c3f2e-1b9a-4c2e-9f0e-4a5b6c7d8e9f":     true,
		"blue":                                     false,
		"8d1c3f2e-1b9a-4c2e-9f0e-4a5b6c7d8e9g":     false,
		"test-8d1c3f2e":                            false,
	} {
		if got := randomName(name); got != want {
			t.Errorf("randomName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestParseNetnsLink(t *testing.T) {
	for link, want := range map[string]uint64{"net:[4026531840]": 4026531840, "net:[]": 0, "mnt:[4026531840]": 0,
		"net:[12": 0, "net:[-1]": 0, "socket:[5]": 0} {
		got, ok := ParseLink(link)
		if got != want || ok != (want != 0) {
			t.Errorf("ParseLink(%q) = %d, %v", link, got, ok)
		}
	}
}

// fakeProc builds a /proc tree with pids processes spread over spaces namespaces (the first, pid 1 and
// self's, is the exporter's own), each namespace's processes in one cgroup.
func fakeProc(t testing.TB, pids, spaces int) string {
	t.Helper()
	proc := filepath.Join(t.TempDir(), "proc")
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	for pid := 1; pid <= pids; pid++ {
		space := (pid - 1) % spaces
		dir := filepath.Join(proc, fmt.Sprint(pid))
		must(os.MkdirAll(filepath.Join(dir, "ns"), 0o755))
		must(os.Symlink(fmt.Sprintf("net:[%d]", 4026531840+space), filepath.Join(dir, "ns", "net")))
		must(os.WriteFile(filepath.Join(dir, "cgroup"), fmt.Appendf(nil, "0::/system.slice/app-%d.service\n", space), 0o644))
	}
	must(os.Symlink("1", filepath.Join(proc, "self")))
	return proc
}

// warm returns a Discoverer on a fake /proc of pids processes in spaces namespaces after enough scans for
// every pid to be cached, and the exporter's namespace inode.
func warm(b *testing.B, pids, spaces int) (*Discoverer, uint64) {
	b.Helper()
	d := New(fakeProc(b, pids, spaces), b.TempDir(), attrib.CgroupStable)
	for range 3 {
		if _, err := d.Scan(); err != nil {
			b.Fatal(err)
		}
	}
	return d, 4026531840
}

// BenchmarkDiscover measures listing the processes of a steady-state scan, every pid cached.
func BenchmarkDiscover(b *testing.B) {
	d, _ := warm(b, 1000, 300)
	for b.Loop() {
		d.scan++
		if err := d.discover(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkChoose measures choosing the process of every namespace when all of them keep theirs.
func BenchmarkChoose(b *testing.B) {
	d, self := warm(b, 1000, 300)
	for b.Loop() {
		if found := d.choose(self); len(found) != 299 {
			b.Fatalf("choose found %d namespaces, want 299", len(found))
		}
	}
}

// BenchmarkNamedNamespaces measures reading /run/netns with the real stat of its entries: files left
// behind without their mount, so none is a namespace.
func BenchmarkNamedNamespaces(b *testing.B) {
	named := b.TempDir()
	for i := range 50 {
		if err := os.WriteFile(filepath.Join(named, fmt.Sprint("ns", i)), nil, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	d := New("/proc", named, attrib.CgroupStable)
	for b.Loop() {
		if got := d.namedNamespaces(); len(got) != 0 {
			b.Fatalf("named namespaces from plain files: %v", got)
		}
	}
}

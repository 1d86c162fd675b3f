package memcg

import (
	"os/exec"
	"testing"
	"time"

	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

// On this host's own cgroups: a process moved into a memory cgroup whose TCP memory is limited is found
// there, and the limit is read back (rounded down to pages by the kernel).
func TestRealCgroup(t *testing.T) {
	dir, path := testenv.TCPLimitedMemcg(t, "memcg-test", 300000)
	r, err := NewReader("/proc")
	if err != nil {
		testenv.Missing(t, "no memory cgroup: %v", err)
	}
	if r.Version() != V1 {
		testenv.Missing(t, "the memory controller is on the unified hierarchy; this test limits v1 TCP memory")
	}
	cmd := exec.Command("sh", "-c", `echo $$ > "$0/cgroup.procs" && exec sleep 30`, dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() }) //nolint:errcheck // killed by the test
	var got string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if got, err = r.CgroupOf(cmd.Process.Pid); err == nil && got == path {
			break
		}
	}
	if got != path {
		t.Fatalf("CgroupOf(sleep) = %q, %v; want %q", got, err, path)
	}
	s, err := r.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if !s.TCPAccounted || !s.TCPLimit.OK || s.TCPLimit.V > 300000 || s.TCPLimit.V < 300000-64<<10 || !s.TCPUsage.OK {
		t.Fatalf("Read(%s) = %+v; want TCP accounting on with a limit just under 300000", path, s)
	}
}

//go:build linux

package drops

import (
	"errors"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

// withCaps runs fn on an OS thread of its own whose effective capabilities are reduced to keep (the kernel
// checks the calling thread's credentials on bpf()). The thread is thrown away afterwards: its goroutine
// ends while locked to it.
func withCaps(t *testing.T, keep []int, fn func()) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			errc <- err
			return
		}
		var eff [2]uint32
		for _, c := range keep {
			eff[c/32] |= 1 << (c % 32)
		}
		data[0].Effective = eff[0] & data[0].Permitted
		data[1].Effective = eff[1] & data[1].Permitted
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			errc <- err
			return
		}
		fn()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatalf("changing capabilities: %v", err)
	}
}

// TestOpenPrivileges checks what Open needs: without CAP_BPF and CAP_PERFMON it fails with an error that
// says so; with exactly those two, and RLIMIT_MEMLOCK at 0 (BPF memory is charged to the memory cgroup
// since Linux 5.11), it works: CAP_SYS_ADMIN and CAP_SYS_RESOURCE are not needed.
func TestOpenPrivileges(t *testing.T) {
	// A first, privileged Open lets cilium/ebpf run and cache its feature probes with all capabilities.
	openTracer(t, nil)

	for _, c := range []struct {
		name string
		keep []int
	}{
		{"none", nil},
		{"CAP_BPF only", []int{unix.CAP_BPF}},
		{"CAP_PERFMON only", []int{unix.CAP_PERFMON}},
	} {
		withCaps(t, c.keep, func() {
			tr, err := Open(Options{})
			if err == nil {
				tr.Close()
				t.Errorf("%s: Open succeeded", c.name)
				return
			}
			if !errors.Is(err, os.ErrPermission) || !strings.Contains(err.Error(), "CAP_BPF and CAP_PERFMON") {
				t.Errorf("%s: Open error %q does not name the missing capabilities (or is not os.ErrPermission)", c.name, err)
			}
			t.Logf("%s: %v", c.name, err)
		})
	}

	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &old); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: 0, Max: old.Max}); err != nil {
		t.Fatal(err)
	}
	defer unix.Setrlimit(unix.RLIMIT_MEMLOCK, &old)
	withCaps(t, []int{unix.CAP_BPF, unix.CAP_PERFMON}, func() {
		tr, err := Open(Options{})
		if err != nil {
			t.Errorf("CAP_BPF+CAP_PERFMON, RLIMIT_MEMLOCK 0: %v", err)
			return
		}
		defer tr.Close()
		if _, err := tr.Read(); err != nil {
			t.Errorf("Read with CAP_BPF+CAP_PERFMON: %v", err)
		}
	})
}

func TestMissingTracepoint(t *testing.T) {
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		testenv.Missing(t, "no kernel BTF: %v", err)
	}
	if _, err := tracepointParams(kernel, "no_such_tracepoint"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("tracepointParams(no_such_tracepoint) = %v, want os.ErrNotExist", err)
	}
	n, err := tracepointParams(kernel, "sock_exceed_buf_limit")
	if err != nil || n != 4 {
		t.Errorf("sock_exceed_buf_limit has %d arguments (%v), want 4 (sk, prot, allocated, kind)", n, err)
	}
}

// TestReasonNames compares the names Open resolves with bpftool's dump of the same BTF.
func TestReasonNames(t *testing.T) {
	bpftool := testenv.RequireBinary(t, "bpftool", "bpftool")
	out, err := exec.Command(bpftool, "btf", "dump", "file", "/sys/kernel/btf/vmlinux", "format", "c").Output()
	if err != nil {
		testenv.Missing(t, "bpftool btf dump: %v", err)
	}
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatal(err)
	}
	names, err := reasonNames(kernel)
	if err != nil {
		t.Fatal(err)
	}
	tr := &Tracer{names: names}
	block := regexp.MustCompile(`(?s)\nenum skb_drop_reason \{\n(.*?)\n\};`).FindSubmatch(out)
	if block == nil {
		t.Fatal("bpftool's dump has no enum skb_drop_reason")
	}
	re := regexp.MustCompile(`(?m)^\s*SKB_DROP_REASON_([A-Z0-9_]+) = (\d+),$`)
	n := 0
	for _, m := range re.FindAllStringSubmatch(string(block[1]), -1) {
		if m[1] == "MAX" || m[1] == "SUBSYS_MASK" {
			continue
		}
		v, _ := strconv.ParseUint(m[2], 10, 32)
		if got, want := tr.ReasonName(uint32(v)), strings.ToLower(m[1]); got != want {
			t.Errorf("reason %d: %q, bpftool says %q", v, got, want)
		}
		n++
	}
	if n < 10 {
		t.Fatalf("bpftool listed only %d drop reasons", n)
	}
	if got := tr.ReasonName(1<<16 | 3); !strings.HasPrefix(got, "unknown_") {
		t.Errorf("subsystem reason named %q", got)
	}
}

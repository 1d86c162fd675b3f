//go:build linux

package drops

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

// helperEnv makes the test binary act as the child of TestOpenAsServiceUser.
const helperEnv = "SOCKBUF_DROPS_HELPER"

// TestOpenAsServiceUser runs Open the way deploy/systemd/bpf.conf runs the exporter: as an unprivileged uid
// (DynamicUser) whose only capabilities, ambient and bounding, are CAP_BPF and CAP_PERFMON, with
// RLIMIT_MEMLOCK at 0. It works; with no capabilities it fails with os.ErrPermission.
func TestOpenAsServiceUser(t *testing.T) {
	testenv.RequireRoot(t)
	setpriv := testenv.RequireBinary(t, "setpriv", "util-linux")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The test binary sits in a directory only root may enter: copy it where the uid can run it.
	dir, err := os.MkdirTemp("", "sbtest-drops-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "drops.test")
	if err := copyFile(self, bin); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ caps, want string }{
		{"-all,+bpf,+perfmon", "works"},
		{"-all", "denied"},
		{"-all,+bpf", "denied"},
	} {
		cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
			"--inh-caps="+c.caps, "--ambient-caps="+c.caps, "--bounding-set="+c.caps,
			bin, "-test.run=^TestServiceUserHelper$", "-test.v", "-test.count=1")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), helperEnv+"="+c.want)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestServiceUserHelper") {
			t.Errorf("capabilities %s, want %s: %v\n%s", c.caps, c.want, err, out)
		} else {
			t.Logf("capabilities %s: %s", c.caps, c.want)
		}
	}
}

// TestServiceUserHelper is the child of TestOpenAsServiceUser; it does nothing in a normal run.
func TestServiceUserHelper(t *testing.T) {
	want := os.Getenv(helperEnv)
	if want == "" {
		t.Skip("helper of TestOpenAsServiceUser")
	}
	if os.Geteuid() == 0 {
		t.Fatal("helper runs as root")
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
		t.Fatal(err)
	}
	lim.Cur = 0
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
		t.Fatal(err)
	}
	tr, err := Open(Options{})
	switch want {
	case "works":
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer tr.Close()
		if _, err := tr.Read(); err != nil {
			t.Fatalf("Read: %v", err)
		}
	case "denied":
		if err == nil {
			tr.Close()
			t.Fatal("Open succeeded")
		}
		if !errors.Is(err, os.ErrPermission) {
			t.Fatalf("Open: %v, want os.ErrPermission", err)
		}
		t.Log(err)
	}
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

package testenv

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Receiver is a process started in a network namespace and in cgroups of the test's, which printed the
// loopback port it listens on as its first line.
type Receiver struct {
	Port int
	PID  int
	// Stdin is the process's standard input: closing it is how scripts such as bpf/drops/testdata's
	// slowreader.py are told to stop.
	Stdin io.WriteCloser
	wait  func() error
}

// Wait waits for the process to exit.
func (r *Receiver) Wait() error { return r.wait() }

// StartReceiver runs name with args inside ns after moving into each of cgroupDirs (their cgroup.procs), so
// that the sockets it creates or accepts belong to those cgroups, and reads the port it prints. It enters
// only the network namespace (CommandKeepSys: the cgroup directories are in the host's /sys). The process is
// killed when the test ends, before the cgroups made earlier in the test are removed.
func (ns *NetNS) StartReceiver(t testing.TB, ctx context.Context, cgroupDirs []string, name string, args ...string) *Receiver {
	t.Helper()
	script := `for d in $RECEIVER_CGROUPS; do echo $$ > "$d/cgroup.procs" || exit 1; done; exec "$@"`
	for _, d := range cgroupDirs {
		if strings.ContainsAny(d, " \t\n") {
			t.Fatalf("cgroup directory %q has white space", d)
		}
	}
	cmd := ns.CommandKeepSys(ctx, "sh", append([]string{"-c", script, "sh", name}, args...)...)
	cmd.Env = append(os.Environ(), "RECEIVER_CGROUPS="+strings.Join(cgroupDirs, " "))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	var waitErr error
	r := &Receiver{PID: cmd.Process.Pid, Stdin: stdin, wait: func() error {
		once.Do(func() { waitErr = cmd.Wait() })
		return waitErr
	}}
	t.Cleanup(func() {
		cmd.Process.Kill() //nolint:errcheck // it may have exited
		r.wait()           //nolint:errcheck // killed
	})
	lines := bufio.NewScanner(out)
	if !lines.Scan() {
		t.Fatalf("%s printed no port: %v", name, errors.Join(lines.Err(), r.wait()))
	}
	if r.Port, err = strconv.Atoi(strings.TrimSpace(lines.Text())); err != nil || r.Port <= 0 || r.Port > 65535 {
		t.Fatalf("%s printed %q, not a port", name, lines.Text())
	}
	go io.Copy(io.Discard, out) //nolint:errcheck // the rest of its output is not read
	return r
}

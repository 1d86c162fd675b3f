package e2e

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

// StartExporterSeeingCgroups is StartExporter for a non-nil ns with the exporter entering only ns's network
// namespace (testenv.NetNS.CommandKeepSys, nsenter --net), so that it sees the host's /sys/fs/cgroup:
// `ip netns exec` mounts a fresh /sys that hides the cgroup hierarchies from the memcg collector and from
// the sockets collector's cgroup attribution.
func StartExporterSeeingCgroups(t testing.TB, ns *testenv.NetNS, args ...string) *Exporter {
	t.Helper()
	bin := BuildExporter(t)
	addr := ""
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--web.listen-address="); ok {
			addr = v
		}
	}
	if addr == "" {
		addr = fmt.Sprintf("127.0.0.1:%d", FreePort(t, ns))
		args = append([]string{"--web.listen-address=" + addr}, args...)
	}
	e := &Exporter{Addr: addr, URL: "http://" + addr, Client: Client(t, ns)}
	cmd := ns.CommandKeepSys(context.Background(), bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	e.proc = runProcess(t, "sockbuf_exporter", cmd, args)
	e.PID = e.proc.cmd.Process.Pid
	e.proc.waitHTTP(t, e.Client, e.URL+"/metrics")
	return e
}

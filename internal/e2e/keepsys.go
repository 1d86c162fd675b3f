package e2e

import (
	"context"
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
	return startExporter(t, ns, func(bin string, args []string) *process {
		cmd := ns.CommandKeepSys(context.Background(), bin, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		return runProcess(t, "sockbuf_exporter", cmd, args)
	}, args)
}

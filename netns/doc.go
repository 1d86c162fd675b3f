// Package netns finds the host's network namespaces through /proc/<pid>/ns/net, chooses a process to read
// each through, names them, reads their TCP counters, and opens sock_diag clients inside them. It knows
// nothing of Prometheus: collector/netns.go turns its results into metrics.
//
// Discovery: the distinct targets ("net:[INODE]") of the /proc/<pid>/ns/net links. Reading another user's
// link needs ptrace read access (root or CAP_SYS_PTRACE); processes that vanish or deny access are skipped,
// and only when no other process at all can be read does a scan fail, with an error saying why. The
// exporter's own namespace is left out.
//
// Counters: /proc/<pid>/net/{netstat,snmp} show the namespace of <pid>, so one process per namespace (the
// lowest pid when the namespace was found, kept while it lives in it) is read. The files are opened and
// closed on every scrape: an open /proc/<pid>/net file holds a reference to its namespace, and keeping it
// would keep a deleted pod's namespace (and its veth) alive.
//
// Cost: readlink of a /proc/<pid>/ns/net costs about 2.4µs, reading the two files of a namespace about
// 100µs. A pid's namespace is cached once it was read twice on consecutive scans (`ip netns exec` and runc
// join the namespace right after fork, so a first read can see the parent's), every namespace's chosen pid
// is read again on every scan, before and after its counters (see ReadCounters), and every cached pid is
// read again every RecheckInterval (a pid reused between two scans, a process that moved later). A
// namespace whose processes all arrived that way shows up at most one interval late.
//
// Names, stable while the namespace lives and bounded by the number of namespaces, valid UTF-8:
//  1. the name under /run/netns bind-mounted to it (`ip netns add`), unless the name is random: containerd
//     and CRI-O pin pod namespaces as cni-<uuid> or <uuid>, which no other metric carries;
//  2. else the cgroup v2 of its chosen process named by the sockets collector's policy (attrib.CgroupName):
//     by default, for a Kubernetes pod, the pod's directory, which holds every container of the pod and
//     carries the pod UID that kube-state-metrics' kube_pod_info{uid} has (with "_" for "-" under systemd);
//  3. else netns-<inode>.
package netns

package collector

import (
	"testing"
)

// TestNetnsInvalidUTF8 checks that an unnamed network namespace whose process's cgroup has a name that is not
// valid UTF-8 gets an escaped netns label and does not fail the netns collector.
func TestNetnsInvalidUTF8(t *testing.T) {
	b := startBadNames(t)
	ino := nsInode(t, b.ns.Path)
	// An empty named directory: the namespace is named after its process's cgroup.
	c := newNetnsCollector(Config{ProcPath: "/proc", Netns: NetnsConfig{MaxNamespaces: 10000, NamedDir: t.TempDir()}})
	m := gather(t, c)
	k := `sockbuf_netns_tcp_prune_called_total{netns="` + b.cgroup + `",netns_inode="` + ino + `"}`
	if _, ok := m[k]; !ok {
		t.Errorf("%s missing; series: %v", k, gatherPrefix(m, "sockbuf_netns_tcp_prune_called_total"))
	}
}

package collector

import (
	"bytes"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sockbuf/sockbuf_exporter/internal/collectortest"
)

// scrapeCounters runs one scrape of c over the kernel entries and returns the exported values by a short name.
func scrapeCounters(c *bpfCounters, entries ...counterEntry) map[string]uint64 {
	c.begin()
	for _, e := range entries {
		c.add(e.key, e.series, e.value)
	}
	out := map[string]uint64{}
	for _, s := range c.finish() {
		g := s.series.group
		out[s.series.reason+"/"+g.role+"/"+g.port+"/"+g.cgroup] = s.value
	}
	return out
}

type counterEntry struct {
	key    kernelKey
	series bpfSeries
	value  uint64
}

func entry(port uint16, cgroupID uint64, cgroup string, value uint64) counterEntry {
	return counterEntry{
		key:    kernelKey{reason: 1, role: 1, port: port, cgroup: cgroupID},
		series: bpfSeries{reason: "proto_mem", group: bpfGroup{role: "server", port: strconv.Itoa(int(port)), cgroup: cgroup}},
		value:  value,
	}
}

// TestBPFCountersFoldMonotonic: with a cap of 2 and three groups of one role, the group with the most drops
// since start is shown and the others fold into port="other"; when a folded one overtakes, they swap, and no
// exported counter ever goes down: the returning group goes on with its drops while folded included, and
// "other" keeps what it counted.
func TestBPFCountersFoldMonotonic(t *testing.T) {
	c := newBPFCounters(2)
	steps := []struct {
		a, b, c uint64 // the kernel's cumulative drops of ports 80, 443 and 8080; 0: no kernel entry yet
		want    map[string]uint64
	}{
		{10, 0, 0, map[string]uint64{"proto_mem/server/80/": 10}},
		// Three groups, cap 2, one role: keep 1, fold 2.
		{12, 5, 1, map[string]uint64{"proto_mem/server/80/": 12, "proto_mem/server/other/": 6}},
		// 443 overtakes (20 > 13): 443 is shown with all 20, 80's +1 goes to other.
		{13, 20, 1, map[string]uint64{"proto_mem/server/443/": 20, "proto_mem/server/other/": 7}},
		// 80 overtakes again: its counter goes on from 13 (+1 while folded, which other counted too).
		{40, 21, 1, map[string]uint64{"proto_mem/server/80/": 40, "proto_mem/server/other/": 8}},
	}
	for i, s := range steps {
		var entries []counterEntry
		for _, e := range []counterEntry{entry(80, 0, "", s.a), entry(443, 0, "", s.b), entry(8080, 0, "", s.c)} {
			if e.value != 0 {
				entries = append(entries, e)
			}
		}
		if diff := cmp.Diff(s.want, scrapeCounters(c, entries...)); diff != "" {
			t.Errorf("scrape %d (-want +got):\n%s", i, diff)
		}
	}
}

// TestBPFCountersRename: a cgroup named late (empty on the first scrape, found by a later walk) gives the key
// a new label set, which starts from the delta, not from the kernel's cumulative value, so that the sum over
// series is the kernel's total.
func TestBPFCountersRename(t *testing.T) {
	c := newBPFCounters(0)
	first := scrapeCounters(c, entry(80, 7, "", 3))
	second := scrapeCounters(c, entry(80, 7, "web.service", 5))
	third := scrapeCounters(c, entry(80, 7, "web.service", 9))
	want := []map[string]uint64{
		{"proto_mem/server/80/": 3},
		{"proto_mem/server/80/web.service": 2},
		{"proto_mem/server/80/web.service": 6},
	}
	for i, got := range []map[string]uint64{first, second, third} {
		if diff := cmp.Diff(want[i], got); diff != "" {
			t.Errorf("scrape %d (-want +got):\n%s", i, diff)
		}
	}
}

// TestBPFCountersTwoRolesFold: when the folded groups have two roles, one "other" group per role, and the
// cap still holds.
func TestBPFCountersTwoRolesFold(t *testing.T) {
	c := newBPFCounters(3)
	client := func(port uint16, v uint64) counterEntry {
		e := entry(port, 0, "", v)
		e.key.role, e.series.group.role = 2, "client"
		return e
	}
	got := scrapeCounters(c, entry(80, 0, "", 50), client(5432, 40), entry(81, 0, "", 30), client(6379, 1))
	want := map[string]uint64{
		"proto_mem/server/80/":    50,
		"proto_mem/server/other/": 30,
		"proto_mem/client/other/": 41,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if c.folded != 3 {
		t.Errorf("folded %d groups, want 3", c.folded)
	}
}

// TestUnavailableLogsOnce: a collector that could not start logs one line when built, and its scrapes fail
// (success 0) without logging again, while the other collectors succeed.
func TestUnavailableLogsOnce(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	bad := newUnavailable(logger, "the bpf collector cannot load its programs and exports nothing: it needs CAP_BPF and CAP_PERFMON",
		errors.New("operation not permitted"))
	e := NewExporter(map[string]Collector{"bpf": bad, "ok": collectortest.Emits(1)}, 0, logger)
	for range 3 {
		want := `
# HELP sockbuf_scrape_collector_success Whether a collector succeeded on this scrape (1) or failed (0): missing file, permission denied, unparsable input or scrape timeout.
# TYPE sockbuf_scrape_collector_success gauge
sockbuf_scrape_collector_success{collector="bpf"} 0
sockbuf_scrape_collector_success{collector="ok"} 1
`
		if err := testutil.CollectAndCompare(e, strings.NewReader(want), "sockbuf_scrape_collector_success"); err != nil {
			t.Error(err)
		}
	}
	if n := strings.Count(logs.String(), "\n"); n != 1 || !strings.Contains(logs.String(), "CAP_BPF") {
		t.Errorf("want one log line naming CAP_BPF, got %d:\n%s", n, logs.String())
	}
}

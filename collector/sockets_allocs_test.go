package collector

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockbuf/sockbuf_exporter/internal/socktest"
	"github.com/sockbuf/sockbuf_exporter/sockdiag"
)

// TestSocketsAllocsFollowGroupsNotSockets: a scrape of the sockets collector allocates per group (labels,
// metrics), never per socket: 100 times the sockets in the same groups cost the same allocations.
func TestSocketsAllocsFollowGroupsNotSockets(t *testing.T) {
	allocs := func(perGroup int) float64 {
		var socks []*sockdiag.Socket
		for p := range 20 {
			socks = append(socks, socktest.Listen(uint16(8000+p), 0, 128).Socket())
			for i := range perGroup {
				socks = append(socks, socktest.Sock{Local: uint16(8000 + p), Remote: uint16(30000 + i), RQ: 1, Rmem: 10,
					Rcvbuf: 100, Drops: uint32(i % 3), Cookie: uint64(p*100000 + i)}.Socket())
			}
		}
		c, err := newSocketsCollector(Config{ProcPath: "testdata/none", Sockets: DefaultSocketsConfig()}, nil,
			func() (socketDumper, error) { return &replayDumper{socks: socks}, nil })
		if err != nil {
			t.Fatal(err)
		}
		c.cgroups = nil
		ch := make(chan prometheus.Metric, 4096)
		scrape := func() {
			if err := c.Update(context.Background(), ch); err != nil {
				t.Fatal(err)
			}
			for len(ch) > 0 {
				<-ch
			}
		}
		scrape() // grow the maps and slices to this population
		return testing.AllocsPerRun(10, scrape)
	}
	few, many := allocs(10), allocs(1000)
	if many > few*1.05+5 {
		t.Errorf("a scrape allocates %g times with 20,000 sockets in 20 groups, %g with 200: allocations follow sockets", many, few)
	}
	t.Logf("allocations per scrape: %g with 200 sockets, %g with 20,000, in 20 groups", few, many)
}

package collector

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestSoftnetCollector(t *testing.T) {
	for _, tc := range []struct{ proc, want string }{
		{"testdata/proc-host", `
sockbuf_softnet_dropped_total{cpu="0"} 5
sockbuf_softnet_dropped_total{cpu="1"} 0
sockbuf_softnet_times_squeezed_total{cpu="0"} 42
sockbuf_softnet_times_squeezed_total{cpu="1"} 3
`},
		{"testdata/proc-netns", `
sockbuf_softnet_dropped_total{cpu="0"} 1
sockbuf_softnet_dropped_total{cpu="2"} 3
sockbuf_softnet_times_squeezed_total{cpu="0"} 2
sockbuf_softnet_times_squeezed_total{cpu="2"} 4
`},
	} {
		t.Run(tc.proc, func(t *testing.T) {
			c := asPromCollector(newSoftnetCollector(Config{ProcPath: tc.proc}))
			if err := testutil.CollectAndCompare(c, strings.NewReader(withHeaders(t, tc.want))); err != nil {
				t.Error(err)
			}
		})
	}
}

package collector

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestParseSoftnet(t *testing.T) {
	for _, tc := range []struct {
		name, fixture string
		want          []softnetRow
		wantErr       string
	}{
		{
			name: "linux 6.18, 15 columns", fixture: "proc-host/net/softnet_stat",
			want: []softnetRow{{cpu: 0, dropped: 5, squeezed: 42}, {cpu: 1, dropped: 0, squeezed: 3}},
		},
		{
			// Column 13 names the CPU; CPU 1 is offline.
			name: "offline cpu", fixture: "proc-netns/net/softnet_stat",
			want: []softnetRow{{cpu: 0, dropped: 1, squeezed: 2}, {cpu: 2, dropped: 3, squeezed: 4}},
		},
		{
			name: "12 columns and more: cpu column", fixture: "parse/softnet-cpu-gap",
			want: []softnetRow{{cpu: 0, dropped: 1, squeezed: 2}, {cpu: 5, dropped: 3, squeezed: 4}},
		},
		{
			name: "older kernel, 11 columns: row number", fixture: "proc-old/net/softnet_stat",
			want: []softnetRow{{cpu: 0, dropped: 1, squeezed: 2}, {cpu: 1, dropped: 3, squeezed: 4}},
		},
		{
			name: "9 columns", fixture: "parse/softnet-9-columns",
			want: []softnetRow{{cpu: 0, dropped: 1, squeezed: 2}, {cpu: 1, dropped: 3, squeezed: 4}},
		},
		{
			name: "largest 32-bit values", fixture: "parse/softnet-huge",
			want: []softnetRow{{cpu: 0, dropped: 1<<32 - 1, squeezed: 1<<32 - 2}},
		},
		{name: "empty", fixture: "parse/softnet-empty"},
		{name: "rows of different widths", fixture: "parse/softnet-ragged", wantErr: "row 2: 9 columns, row 1 has 11"},
		{name: "not hexadecimal", fixture: "parse/softnet-nonhex", wantErr: `row 1 column 2: not a number: "0000000g"`},
		{name: "truncated", fixture: "parse/softnet-truncated", wantErr: "truncated"},
		{name: "too few columns", fixture: "parse/softnet-narrow", wantErr: "3 columns, want at least 9"},
		{name: "duplicate cpu", fixture: "parse/softnet-duplicate-cpu", wantErr: "row 2: cpu 1 after cpu 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []softnetRow
			err := parseSoftnet(readFixture(t, tc.fixture), func(r softnetRow) { got = append(got, r) })
			if !checkErr(t, err, tc.wantErr) {
				return
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(softnetRow{})); diff != "" {
				t.Errorf("rows (-want +got):\n%s", diff)
			}
		})
	}
}

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

package procnet

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseSockstat(t *testing.T) {
	for _, tc := range []struct {
		name, fixture string
		want          map[string]uint64
		wantErr       string
	}{
		{
			name: "linux 6.18", fixture: "proc-host/net/sockstat",
			want: map[string]uint64{"TCP inuse": 20, "TCP orphan": 3, "TCP tw": 7, "TCP alloc": 25, "TCP mem": 1500, "UDP mem": 12},
		},
		{
			name: "unknown keys and protocols", fixture: "parse/sockstat-extra-keys",
			want: map[string]uint64{"TCP inuse": 1, "TCP orphan": 0, "TCP tw": 2, "TCP alloc": 3, "TCP mem": 4, "UDP mem": 5},
		},
		{
			// A kernel without UDP mem accounting: the UDP value is absent, not 0.
			name: "older kernel", fixture: "parse/sockstat-old",
			want: map[string]uint64{"TCP inuse": 1, "TCP orphan": 0, "TCP tw": 2, "TCP alloc": 3, "TCP mem": 4},
		},
		{
			name: "huge", fixture: "parse/sockstat-huge",
			want: map[string]uint64{"TCP inuse": 1, "TCP orphan": 0, "TCP tw": 2, "TCP alloc": 3, "TCP mem": 1<<64 - 1},
		},
		{name: "truncated", fixture: "parse/sockstat-truncated", wantErr: "truncated"},
		{name: "key without value", fixture: "parse/sockstat-odd", wantErr: "key mem without a value"},
		{name: "negative", fixture: "parse/sockstat-negative", wantErr: `TCP orphan: not a number: "-1"`},
		{name: "non-numeric", fixture: "parse/sockstat-nonnumeric", wantErr: `TCP mem: not a number: "lots"`},
		{name: "no TCP line", fixture: "parse/sockstat-no-tcp", wantErr: "no TCP line"},
		{name: "garbage", fixture: "parse/sockstat-garbage", wantErr: "does not start with"},
		{name: "empty", fixture: "parse/sockstat-empty", wantErr: "no TCP line"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s Sockstat
			err := ParseSockstat(readFixture(t, tc.fixture), &s)
			if !checkErr(t, err, tc.wantErr) {
				return
			}
			got := map[string]uint64{}
			for v := range NumSockstatValues {
				if n, ok := s.Get(v); ok {
					got[v.Proto()+" "+v.Key()] = n
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("parsed fields (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseSysctl(t *testing.T) {
	for _, tc := range []struct {
		name, fixture string
		sysctl        Sysctl
		want          []int64
		wantErr       string
	}{
		{name: "one value", fixture: "parse/sysctl-one", sysctl: RmemMax, want: []int64{4194304}},
		{name: "three values", fixture: "parse/sysctl-triple", sysctl: TCPRmem, want: []int64{4096, 131072, 33554432}},
		{name: "spaces", fixture: "parse/sysctl-triple-spaces", sysctl: TCPRmem, want: []int64{4096, 131072, 33554432}},
		{name: "signed", fixture: "parse/sysctl-negative", sysctl: TCPAdvWinScale, want: []int64{-2}},
		{name: "largest", fixture: "parse/sysctl-int64-max", sysctl: RmemMax, want: []int64{1<<63 - 1}},
		{name: "negative", fixture: "parse/sysctl-negative", sysctl: RmemMax, wantErr: "negative value -2"},
		{name: "beyond int64", fixture: "parse/sysctl-too-big", sysctl: RmemMax, wantErr: "overflows int64"},
		{name: "too few", fixture: "parse/sysctl-two", sysctl: TCPRmem, wantErr: "2 values, want 3"},
		{name: "too many", fixture: "parse/sysctl-four", sysctl: TCPRmem, wantErr: "more than 3 values"},
		{name: "non-numeric", fixture: "parse/sysctl-nonnumeric", sysctl: RmemMax, wantErr: `not a number: "abc"`},
		{name: "truncated", fixture: "parse/sysctl-truncated", sysctl: RmemMax, wantErr: "truncated"},
		{name: "empty", fixture: "parse/sysctl-empty", sysctl: RmemMax, wantErr: "truncated"},
		{name: "blank", fixture: "parse/sysctl-blank", sysctl: RmemMax, wantErr: "0 values, want 1"},
		{name: "two lines", fixture: "parse/sysctl-two-lines", sysctl: RmemMax, wantErr: "more than one line"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := ParseSysctl(tc.sysctl, readFixture(t, tc.fixture))
			if !checkErr(t, err, tc.wantErr) {
				return
			}
			got := v.Values[:tc.sysctl.Len()]
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("values (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseSoftnet(t *testing.T) {
	for _, tc := range []struct {
		name, fixture string
		want          []SoftnetRow
		wantErr       string
	}{
		{
			name: "linux 6.18, 15 columns", fixture: "proc-host/net/softnet_stat",
			want: []SoftnetRow{{CPU: 0, Dropped: 5, Squeezed: 42}, {CPU: 1, Dropped: 0, Squeezed: 3}},
		},
		{
			// Column 13 names the CPU; CPU 1 is offline.
			name: "offline cpu", fixture: "proc-netns/net/softnet_stat",
			want: []SoftnetRow{{CPU: 0, Dropped: 1, Squeezed: 2}, {CPU: 2, Dropped: 3, Squeezed: 4}},
		},
		{
			name: "12 columns and more: cpu column", fixture: "parse/softnet-cpu-gap",
			want: []SoftnetRow{{CPU: 0, Dropped: 1, Squeezed: 2}, {CPU: 5, Dropped: 3, Squeezed: 4}},
		},
		{
			name: "older kernel, 11 columns: row number", fixture: "proc-old/net/softnet_stat",
			want: []SoftnetRow{{CPU: 0, Dropped: 1, Squeezed: 2}, {CPU: 1, Dropped: 3, Squeezed: 4}},
		},
		{
			name: "9 columns", fixture: "parse/softnet-9-columns",
			want: []SoftnetRow{{CPU: 0, Dropped: 1, Squeezed: 2}, {CPU: 1, Dropped: 3, Squeezed: 4}},
		},
		{
			name: "largest 32-bit values", fixture: "parse/softnet-huge",
			want: []SoftnetRow{{CPU: 0, Dropped: 1<<32 - 1, Squeezed: 1<<32 - 2}},
		},
		{name: "empty", fixture: "parse/softnet-empty", wantErr: "no CPU rows"},
		{name: "rows of different widths", fixture: "parse/softnet-ragged", wantErr: "row 2: 9 columns, row 1 has 11"},
		{name: "not hexadecimal", fixture: "parse/softnet-nonhex", wantErr: `row 1 column 2: not a number: "0000000g"`},
		{name: "truncated", fixture: "parse/softnet-truncated", wantErr: "truncated"},
		{name: "too few columns", fixture: "parse/softnet-narrow", wantErr: "3 columns, want at least 9"},
		{name: "duplicate cpu", fixture: "parse/softnet-duplicate-cpu", wantErr: "row 2: cpu 1 after cpu 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []SoftnetRow
			err := ParseSoftnet(readFixture(t, tc.fixture), 8, func(r SoftnetRow) { got = append(got, r) })
			if !checkErr(t, err, tc.wantErr) {
				return
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("rows (-want +got):\n%s", diff)
			}
		})
	}
}

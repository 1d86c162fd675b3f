package procnet

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// readFixture reads testdata/<name>.
func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkErr fails the test unless err is nil and wantErr empty, or err contains wantErr.
func checkErr(t *testing.T, err error, wantErr string) bool {
	t.Helper()
	switch {
	case wantErr == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case wantErr != "" && err == nil:
		t.Fatalf("no error, want one containing %q", wantErr)
	case wantErr != "" && !strings.Contains(err.Error(), wantErr):
		t.Fatalf("error %q does not contain %q", err, wantErr)
	}
	return err == nil
}

// parseNetstatFile runs the parser the collector runs for <proc>/net/<file> and returns the wanted fields it
// found, keyed "Proto Field".
func parseNetstatFile(file string, data []byte) (map[string]uint64, error) {
	var n Netstat
	if err := ParseNetstat(file, data, &n); err != nil {
		return nil, err
	}
	got := map[string]uint64{}
	for c := range NumCounters {
		if v, ok := n.Get(c); ok {
			got[c.Proto()+" "+c.Name()] = v
		}
	}
	return got, nil
}

func TestParseNetstat(t *testing.T) {
	for _, tc := range []struct {
		name    string
		file    string // "netstat" or "snmp"
		fixture string
		want    map[string]uint64
		wantErr string
	}{
		{
			name: "linux 6.18", file: "netstat", fixture: "proc-host/net/netstat",
			want: map[string]uint64{
				"TcpExt PruneCalled": 6, "TcpExt RcvPruned": 7, "TcpExt OfoPruned": 8, "TcpExt ListenOverflows": 24,
				"TcpExt ListenDrops": 25, "TcpExt TCPRcvCollapsed": 50, "TcpExt TCPAbortOnMemory": 58,
				"TcpExt TCPMemoryPressures": 62, "TcpExt TCPMemoryPressuresChrono": 63, "TcpExt TCPBacklogDrop": 74, "TcpExt TCPDSACKOldSent": 52,
				"TcpExt TCPRcvCoalesce": 83, "TcpExt TCPOFOQueue": 84, "TcpExt TCPOFODrop": 85, "TcpExt TCPOFOMerge": 86,
				"TcpExt TCPFromZeroWindowAdv": 99, "TcpExt TCPToZeroWindowAdv": 100, "TcpExt TCPWantZeroWindowAdv": 101, "TcpExt TCPWinProbe": 114,
				"TcpExt TCPZeroWindowDrop": 121, "TcpExt TCPRcvQDrop": 122,
			},
		},
		{
			// Linux 4.14 lacks TCPMemoryPressuresChrono, TCPZeroWindowDrop and TCPRcvQDrop: absent, not 0.
			name: "older kernel", file: "netstat", fixture: "proc-old/net/netstat",
			want: map[string]uint64{
				"TcpExt PruneCalled": 50, "TcpExt RcvPruned": 60, "TcpExt OfoPruned": 70, "TcpExt ListenOverflows": 200,
				"TcpExt ListenDrops": 210, "TcpExt TCPRcvCollapsed": 540, "TcpExt TCPAbortOnMemory": 610,
				"TcpExt TCPMemoryPressures": 650, "TcpExt TCPBacklogDrop": 760, "TcpExt TCPDSACKOldSent": 550, "TcpExt TCPRcvCoalesce": 840,
				"TcpExt TCPOFOQueue": 850, "TcpExt TCPOFODrop": 860, "TcpExt TCPOFOMerge": 870,
				"TcpExt TCPFromZeroWindowAdv": 990, "TcpExt TCPToZeroWindowAdv": 1000, "TcpExt TCPWantZeroWindowAdv": 1010, "TcpExt TCPWinProbe": 1140,
			},
		},
		{
			// Fields and protocols we do not know are skipped, without checking their values.
			name: "unknown extra fields", file: "netstat", fixture: "parse/netstat-extra-fields",
			want: map[string]uint64{"TcpExt PruneCalled": 2, "TcpExt RcvPruned": 4},
		},
		{
			name: "huge values", file: "netstat", fixture: "parse/netstat-huge",
			want: map[string]uint64{"TcpExt PruneCalled": 1<<64 - 1, "TcpExt RcvPruned": 1<<53 + 1, "TcpExt OfoPruned": 0},
		},
		{name: "truncated values line", file: "netstat", fixture: "parse/netstat-truncated", wantErr: "truncated"},
		{name: "names line only", file: "netstat", fixture: "parse/netstat-names-only", wantErr: "no values line after \"TcpExt: SyncookiesSent SyncookiesRecv Sy\"...: the file ends after it"},
		{name: "fewer values than names", file: "netstat", fixture: "proc-broken/net/netstat", wantErr: "TcpExt: 135 names but 134 values"},
		{name: "more values than names", file: "netstat", fixture: "parse/netstat-more-values", wantErr: "TcpExt: 2 names but 3 values"},
		{name: "beyond uint64", file: "netstat", fixture: "parse/netstat-overflow", wantErr: "overflows uint64"},
		{name: "negative", file: "netstat", fixture: "parse/netstat-negative", wantErr: `TcpExt PruneCalled: not a number: "-1"`},
		{name: "non-numeric", file: "netstat", fixture: "parse/netstat-nonnumeric", wantErr: `TcpExt RcvPruned: not a number: "abc"`},
		{name: "float", file: "netstat", fixture: "parse/netstat-float", wantErr: `"1e3"`},
		{name: "values of another protocol", file: "netstat", fixture: "parse/netstat-proto-mismatch", wantErr: "TcpExt names line followed by"},
		{name: "duplicate field", file: "netstat", fixture: "parse/netstat-duplicate", wantErr: "PruneCalled appears twice"},
		{name: "no TcpExt", file: "netstat", fixture: "parse/netstat-no-tcpext", wantErr: "no TcpExt lines"},
		{name: "no colon", file: "netstat", fixture: "parse/netstat-no-colon", wantErr: "does not start with"},
		{name: "empty", file: "netstat", fixture: "parse/netstat-empty", wantErr: "no TcpExt lines"},
		{
			// MaxConn is -1: a field we do not export may be negative.
			name: "snmp linux 6.18", file: "snmp", fixture: "proc-host/net/snmp",
			want: map[string]uint64{"Tcp InSegs": 11, "Tcp RetransSegs": 13, "Tcp InErrs": 14, "Tcp InCsumErrors": 16},
		},
		{
			name: "snmp without InCsumErrors", file: "snmp", fixture: "parse/snmp-old",
			want: map[string]uint64{"Tcp InSegs": 4774, "Tcp RetransSegs": 12, "Tcp InErrs": 1},
		},
		{name: "snmp without Tcp", file: "snmp", fixture: "parse/snmp-no-tcp", wantErr: "no Tcp lines"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseNetstatFile(tc.file, readFixture(t, tc.fixture))
			if !checkErr(t, err, tc.wantErr) {
				return
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("parsed fields (-want +got):\n%s", diff)
			}
		})
	}
}

func TestProcFileMissing(t *testing.T) {
	buf := GetBuf()
	defer PutBuf(buf)
	_, err := NewFile("testdata/no-such-proc/net/netstat").Read(buf)
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v, want an error matching os.ErrNotExist", err)
	}
	if !strings.Contains(err.Error(), "testdata/no-such-proc/net/netstat") {
		t.Errorf("error %q does not name the file", err)
	}
}

func TestProcFileGrowsBuffer(t *testing.T) {
	want := strings.Repeat("0123456789abcdef", 3000) // larger than the pooled buffer
	path := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
		t.Fatal(err)
	}
	small := make([]byte, 0, 16)
	got, err := NewFile(path).Read(&small)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("read %d bytes, want %d", len(got), len(want))
	}
}

// TestProcFileRereads: the kept descriptor sees new content, and a file that appears later is found.
func TestProcFileRereads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "value")
	f := NewFile(path)
	buf := GetBuf()
	defer PutBuf(buf)
	if _, err := f.Read(buf); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: got %v", err)
	}
	for _, content := range []string{"first value\n", "2\n"} {
		// Rewritten in place, as the kernel regenerates a /proc file on every read.
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := f.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != content {
			t.Errorf("read %q, want %q", got, content)
		}
	}
}

// TestRealProcRereads: a kept /proc/net/snmp descriptor shows counters moving with loopback traffic.
func TestRealProcRereads(t *testing.T) {
	f := NewFile("/proc/net/snmp")
	segs := func() uint64 {
		t.Helper()
		buf := GetBuf()
		defer PutBuf(buf)
		got, err := parseNetstatFile("snmp", mustRead(t, f, buf))
		if err != nil {
			t.Fatal(err)
		}
		return got["Tcp InSegs"]
	}
	before := segs()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if after := segs(); after <= before {
		t.Errorf("Tcp InSegs %d after a loopback connection, %d before", after, before)
	}
}

func mustRead(t *testing.T, f *File, buf *[]byte) []byte {
	t.Helper()
	b, err := f.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

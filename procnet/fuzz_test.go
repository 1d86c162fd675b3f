package procnet

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The fuzz targets feed every parser arbitrary bytes: it must return an error or a reading that keeps the
// parser's promises, never panic or loop. `make fuzz` runs each for a few seconds; run one longer with
// `go test -run '^$' -fuzz '^FuzzParseSoftnet$' -fuzztime 10m ./procnet`.

// seed adds every fixture whose name contains one of the keys: the recorded files of this kernel and the
// hand-made broken ones.
func seed(f *testing.F, keys ...string) {
	f.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "*", "*"))
	if err != nil {
		f.Fatal(err)
	}
	more, _ := filepath.Glob(filepath.Join("testdata", "*", "net", "*"))
	n := 0
	for _, p := range append(paths, more...) {
		for _, k := range keys {
			if strings.Contains(filepath.Base(p), k) {
				data, err := os.ReadFile(p)
				if err != nil {
					continue // a directory
				}
				f.Add(data)
				n++
				break
			}
		}
	}
	if n == 0 {
		f.Fatalf("no fixtures named %v", keys)
	}
}

func fuzzNetstat(f *testing.F, file string) {
	f.Fuzz(func(t *testing.T, data []byte) {
		var n Netstat
		if err := ParseNetstat(file, data, &n); err != nil {
			return
		}
		// A counter can only come from a field of its name on a line of its protocol.
		for c := range NumCounters {
			if _, ok := n.Get(c); ok && (c.File() != file || !strings.Contains(string(data), c.Proto()+":") ||
				!strings.Contains(string(data), c.Name())) {
				t.Errorf("%s %s parsed from %q", c.Proto(), c.Name(), data)
			}
		}
	})
}

func FuzzParseNetstat(f *testing.F) {
	seed(f, "netstat")
	fuzzNetstat(f, "netstat")
}

func FuzzParseSnmp(f *testing.F) {
	seed(f, "snmp")
	fuzzNetstat(f, "snmp")
}

func FuzzParseSockstat(f *testing.F) {
	seed(f, "sockstat")
	f.Fuzz(func(t *testing.T, data []byte) {
		var s Sockstat
		if err := ParseSockstat(data, &s); err != nil {
			return
		}
		if !strings.Contains(string(data), "TCP:") {
			t.Errorf("parsed without a TCP line: %q", data)
		}
	})
}

func FuzzParseSysctl(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join("testdata", "parse", "sysctl-*"))
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		for s := range NumSysctls {
			f.Add(uint8(s), data)
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		s := Sysctl(which % uint8(NumSysctls))
		v, err := ParseSysctl(s, data)
		if err != nil {
			if v.OK {
				t.Errorf("error %v with a value marked OK", err)
			}
			return
		}
		if !v.OK {
			t.Error("no error and no value")
		}
		for _, x := range v.Values[:s.Len()] {
			if x < 0 && !sysctlInfo[s].signed {
				t.Errorf("%s: negative value %d accepted", s.Path(), x)
			}
		}
	})
}

func FuzzParseSoftnet(f *testing.F) {
	seed(f, "softnet")
	f.Fuzz(func(t *testing.T, data []byte) {
		const maxCPUs = 64
		rows, last := 0, -1
		err := ParseSoftnet(data, maxCPUs, func(r SoftnetRow) {
			rows++
			if r.CPU <= last || r.CPU >= maxCPUs {
				t.Errorf("cpu %d after %d, bound %d", r.CPU, last, maxCPUs)
			}
			last = r.CPU
		})
		if err == nil && rows == 0 {
			t.Error("success without a row")
		}
		if rows > maxCPUs {
			t.Errorf("%d rows passed a bound of %d", rows, maxCPUs)
		}
	})
}

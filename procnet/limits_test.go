package procnet

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// TestReadLimitExact: a file of exactly MaxFileSize bytes is read whole, one byte more is ErrTooLarge, and
// the buffer never grows much beyond the limit, whatever the file's size.
func TestReadLimitExact(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		size    int
		wantErr bool
	}{
		{"at the limit", MaxFileSize, false},
		{"one byte over", MaxFileSize + 1, true},
		{"six times over", 6 * MaxFileSize, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprint(tc.size))
			if err := os.WriteFile(path, make([]byte, tc.size), 0o644); err != nil {
				t.Fatal(err)
			}
			var buf []byte
			got, err := NewFile(path).Read(&buf)
			switch {
			case tc.wantErr && !errors.Is(err, ErrTooLarge):
				t.Fatalf("got %d bytes, err %v; want an error matching ErrTooLarge", len(got), err)
			case !tc.wantErr && err != nil:
				t.Fatal(err)
			case !tc.wantErr && len(got) != tc.size:
				t.Errorf("read %d bytes, want %d", len(got), tc.size)
			}
			if err != nil && !strings.Contains(err.Error(), fmt.Sprintf("more than %d bytes", MaxFileSize)) {
				t.Errorf("error %q does not state the limit", err)
			}
			// slices.Grow rounds up to a size class; anything beyond that is reading past the limit.
			if cap(buf) > MaxFileSize+MaxFileSize/8 {
				t.Errorf("buffer grew to %d bytes for a limit of %d", cap(buf), MaxFileSize)
			}
		})
	}
}

// TestReadEndlessFile: a procfs tree whose file is a link to /dev/urandom (or /dev/zero) is cut at the limit
// instead of being read for ever.
func TestReadEndlessFile(t *testing.T) {
	for _, dev := range []string{"/dev/urandom", "/dev/zero"} {
		var buf []byte
		_, err := NewFile(dev).Read(&buf)
		if !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s: got %v, want an error matching ErrTooLarge", dev, err)
		}
	}
}

// TestPoolDropsGrownBuffers: a buffer grown by an oversized file is not kept in the pool.
func TestPoolDropsGrownBuffers(t *testing.T) {
	big := make([]byte, 0, 2*maxPooledBuf)
	PutBuf(&big)
	for range 4 {
		b := GetBuf()
		if cap(*b) > maxPooledBuf {
			t.Fatalf("the pool gave back a buffer of %d bytes, above %d", cap(*b), maxPooledBuf)
		}
	}
}

// TestParallelEndlessReadsMemory: twenty readers of a /dev/urandom link at once do not leave their buffers
// behind: after one garbage collection (which a sync.Pool survives, in its victim cache) the heap is back
// near where it was.
func TestParallelEndlessReadsMemory(t *testing.T) {
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "net"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/urandom", filepath.Join(root, "net", "netstat")); err != nil {
		t.Fatal(err)
	}
	fs := NewFS(root)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Go(func() {
			var n Netstat
			errs[i] = fs.Netstat(&n)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("got %v, want an error matching ErrTooLarge", err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap %d KiB before, %d KiB after 20 parallel reads of /dev/urandom (limit %d KiB each)",
		before.HeapAlloc>>10, after.HeapAlloc>>10, MaxFileSize>>10)
	if grew > MaxFileSize {
		t.Errorf("heap grew by %d KiB and stayed", grew>>10)
	}
}

func TestSoftnetRowsBounded(t *testing.T) {
	row := func(cpu int) string {
		return fmt.Sprintf("%s%08x 00000000 00000000\n", strings.Repeat("00000001 ", 12), cpu)
	}
	for _, tc := range []struct {
		name    string
		data    string
		maxCPUs int
		wantErr string
	}{
		{"as many rows as CPUs", row(0) + row(1), 2, ""},
		{"a row more", row(0) + row(1) + row(2), 2, "more than 2 rows, one per possible CPU"},
		{"cpu column out of range", row(0) + row(7), 4, "row 2: cpu 7 out of range, 4 CPUs are possible"},
		{"a million rows", strings.Repeat("00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000\n", 1e6), MaxCPUs,
			"more than 8192 rows"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			err := ParseSoftnet([]byte(tc.data), tc.maxCPUs, func(SoftnetRow) { n++ })
			checkErr(t, err, tc.wantErr)
		})
	}
}

func TestPossibleCPUs(t *testing.T) {
	for _, tc := range []struct {
		data    string
		want    int
		wantErr string
	}{
		{"0\n", 1, ""},
		{"0-7\n", 8, ""},
		{"0,2-5,9\n", 10, ""},
		{"0-8191\n", 8192, ""},
		{"0-8192\n", 0, "cpu 8192 beyond 8192"},
		{"0-3", 0, "truncated"},
		{"\n", 0, "no CPUs"},
		{"0-x\n", 0, "not a number"},
	} {
		got, err := parseCPUList([]byte(tc.data))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: got %d, %v; want an error containing %q", tc.data, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: got %d, %v; want %d", tc.data, got, err, tc.want)
		}
	}
	// This host's, through the sibling sysfs of /proc.
	n, err := PossibleCPUs("/sys/devices/system/cpu/possible")
	if err != nil {
		t.Fatal(err)
	}
	if n < runtime.NumCPU() {
		t.Errorf("%d possible CPUs, fewer than the %d Go sees", n, runtime.NumCPU())
	}
	if got := possibleCPUs("/proc"); got != n {
		t.Errorf("possibleCPUs(/proc) = %d, want %d", got, n)
	}
	if got := possibleCPUs(t.TempDir()); got != MaxCPUs {
		t.Errorf("possibleCPUs of a tree without sysfs = %d, want MaxCPUs", got)
	}
}

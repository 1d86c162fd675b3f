package sockiter

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"strings"
	"testing"
)

// TestGeneratedUpToDate fails when the C source or vmlinux.h changed since `go generate` last compiled
// them: sources.sha256, written by the same go:generate run that writes the objects, must match them.
func TestGeneratedUpToDate(t *testing.T) {
	f, err := os.Open("sources.sha256")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := map[string]bool{"sockiter.bpf.c": false, "../include/vmlinux.h": false}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("sources.sha256: malformed line %q", sc.Text())
		}
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		got := sha256.Sum256(b)
		if hex.EncodeToString(got[:]) != sum {
			t.Errorf("%s changed since the BPF objects were generated: run `go generate ./bpf/sockiter` and commit", name)
		}
		if _, listed := want[name]; listed {
			want[name] = true
		}
	}
	for name, seen := range want {
		if !seen {
			t.Errorf("sources.sha256 does not cover %s", name)
		}
	}
	for _, obj := range []string{"sockiter_bpfel.o", "sockiter_bpfel.go"} {
		if _, err := os.Stat(obj); err != nil {
			t.Errorf("generated %s missing: %v", obj, err)
		}
	}
}

package sockiter

import (
	"os"
	"testing"

	"github.com/sockbuf/sockbuf_exporter/bpf/internal/srchash"
)

// TestGeneratedUpToDate fails when the C source or vmlinux.h changed since `go generate` last compiled
// them: sources.sha256, written by the same go:generate run that writes the objects, must match them.
func TestGeneratedUpToDate(t *testing.T) {
	if err := srchash.Verify("sources.sha256", "sockiter.bpf.c", "../include/vmlinux.h"); err != nil {
		t.Errorf("%v: run `go generate ./bpf/sockiter` and commit", err)
	}
	for _, obj := range []string{"sockiter_bpfel.o", "sockiter_bpfel.go"} {
		if _, err := os.Stat(obj); err != nil {
			t.Errorf("generated %s missing: %v", obj, err)
		}
	}
}

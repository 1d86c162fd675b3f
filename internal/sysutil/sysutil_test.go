package sysutil

import (
	"errors"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestLookPathFallsBack(t *testing.T) {
	// A PATH with nothing on it: sh must still be found in one of the fallback directories.
	t.Setenv("PATH", t.TempDir())
	p, err := LookPath("sh")
	if err != nil {
		t.Fatalf("LookPath(sh) with an empty PATH: %v", err)
	}
	if !filepath.IsAbs(p) {
		t.Errorf("LookPath(sh) = %q, want an absolute path", p)
	}
	if _, err := LookPath("sockbuf-no-such-binary"); !errors.Is(err, exec.ErrNotFound) {
		t.Errorf("LookPath of a missing binary: %v, want exec.ErrNotFound", err)
	}
}

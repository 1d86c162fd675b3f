package deploy

import (
	"path/filepath"
	"testing"

	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

// TestGenerated fails when a generated manifest no longer matches its sources (regenerate with
// `go generate ./deploy`). A source that does not exist yet skips the test, or fails it in CI, where everything
// must be there.
func TestGenerated(t *testing.T) {
	files, missing, err := Manifests(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range files {
		testenv.Golden(t, filepath.Join(repoRoot, path), want, false, "go generate ./deploy")
	}
	if len(missing) > 0 {
		testenv.Missing(t, "sources of generated manifests not written yet: %v", missing)
	}
}

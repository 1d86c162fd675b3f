package srchash

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestVerify(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.c", "int a;\n")
	write("gen.go", "package x\n")
	sums, err := Sum(dir, "a.c", "gen.go")
	if err != nil {
		t.Fatal(err)
	}
	record := filepath.Join(dir, "sources.sha256")
	write("sources.sha256", sums)
	if err := Verify(record, "a.c", "gen.go"); err != nil {
		t.Errorf("fresh record: %v", err)
	}
	if err := Verify(record, "a.c", "b.h"); err == nil || !strings.Contains(err.Error(), "does not cover b.h") {
		t.Errorf("record without b.h: %v, want an error naming b.h", err)
	}
	write("a.c", "int a, b;\n")
	if err := Verify(record, "a.c"); err == nil || !strings.Contains(err.Error(), "a.c changed") || strings.Contains(err.Error(), "gen.go") {
		t.Errorf("a.c edited: %v, want an error naming a.c only", err)
	}
	write("sources.sha256", "no two spaces here\n")
	if err := Verify(record); err == nil {
		t.Error("malformed record accepted")
	}
	if err := Verify(filepath.Join(dir, "none")); err == nil {
		t.Error("missing record accepted")
	}
}

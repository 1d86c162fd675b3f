package drops

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/sockbuf/sockbuf_exporter/bpf/internal/srchash"
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

// TestGeneratedUpToDate fails when a source of the committed BPF object (the C file, vmlinux.h, or the
// generate lines with the compiler flags) changed since `make generate` last built it.
func TestGeneratedUpToDate(t *testing.T) {
	if err := srchash.Verify("sources.sha256", "gen.go", "drops.bpf.c", "../include/vmlinux.h"); err != nil {
		t.Errorf("drops_bpfel.o and drops_bpfel.go: %v; run make generate", err)
	}
}

// TestGenerateReproduces rebuilds the object with the same go:generate lines in a scratch copy of the
// package and checks that the generated Go bindings are the committed ones (the object's bytes depend on the
// clang version, the bindings only on the sources). It needs clang.
func TestGenerateReproduces(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles the BPF program")
	}
	if _, err := exec.LookPath("clang"); err != nil {
		testenv.Missing(t, "clang not on PATH (apt-get install -y clang llvm)")
	}
	dir := t.TempDir()
	pkg := filepath.Join(dir, "bpf", "drops")
	for _, d := range []string{pkg, filepath.Join(dir, "bpf", "include")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"gen.go", "doc.go", "drops.bpf.c", "../include/vmlinux.h"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(pkg, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// bpf2go alone (the first go:generate line), built inside this module so that it is the same cilium/ebpf
	// version, and run in the copy with the same relative paths, which the object's BTF line info records.
	bpf2go := filepath.Join(dir, "bpf2go")
	if out, err := exec.Command("go", "build", "-o", bpf2go, "github.com/cilium/ebpf/cmd/bpf2go").CombinedOutput(); err != nil {
		t.Fatalf("building bpf2go: %v\n%s", err, out)
	}
	cmd := exec.Command(bpf2go, "-cc", "clang", "-cflags", "-O2 -g -Wall -Werror", "-target", "bpfel",
		"-type", "drop_key", "-type", "grow_key", "-type", "limit_key", "-type", "listen_key",
		"drops", "drops.bpf.c", "--", "-I../include")
	cmd.Dir = pkg
	cmd.Env = append(os.Environ(), "GOPACKAGE=drops")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bpf2go: %v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(pkg, "drops_bpfel.go"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("drops_bpfel.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("regenerated drops_bpfel.go differs from the committed one; run make generate")
	}
	gotObj, err := os.ReadFile(filepath.Join(pkg, "drops_bpfel.o"))
	if err != nil {
		t.Fatal(err)
	}
	wantObj, err := os.ReadFile("drops_bpfel.o")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gotObj, wantObj) {
		t.Errorf("regenerated drops_bpfel.o differs from the committed one: sources changed, or clang is not the Debian clang it was built with (%s)", clangVersion())
	}
}

func clangVersion() string {
	out, _ := exec.Command("clang", "--version").Output()
	line, _, _ := bytes.Cut(out, []byte("\n"))
	return string(line)
}

package deploy

import (
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

// imageConfig is the part of `podman image inspect` output the test checks.
type imageConfig struct {
	Config struct {
		User         string
		Entrypoint   []string
		Cmd          []string
		ExposedPorts map[string]struct{}
		Labels       map[string]string
	}
}

// TestDockerfile builds the top-level Dockerfile as `make image` does, but on `scratch` since no registry can
// be reached from the test, and checks what a container runtime will do with the image.
func TestDockerfile(t *testing.T) {
	podman := testenv.RequireBinary(t, "podman", "podman")
	bin := exporterBinary(t)
	port := defaultPort(t)

	// The build context holds only what the Dockerfile needs, laid out as `make build` leaves it.
	ctx := t.TempDir()
	dockerfile, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), dockerfile, 0o644); err != nil {
		t.Fatal(err)
	}
	binDir := filepath.Join(ctx, ".build", "linux-"+runtime.GOARCH)
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, bin, filepath.Join(binDir, "sockbuf_exporter"), 0o755)

	tag := fmt.Sprintf("localhost/sockbuf-exporter-test:%d-%d", os.Getpid(), time.Now().UnixNano())
	build := exec.Command(podman, "build", "--pull=never", "--layers=false",
		"--build-arg", "BASE=scratch", "--build-arg", "ARCH="+runtime.GOARCH, "--build-arg", "OS=linux",
		"--build-arg", "VERSION=0.0.0-test", "--build-arg", "REVISION=deadbeef",
		"-t", tag, ctx)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("podman build: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(podman, "rmi", "--force", tag).CombinedOutput(); err != nil {
			t.Errorf("podman rmi %s: %v\n%s", tag, err, out)
		}
	})

	out, err := exec.Command(podman, "image", "inspect", "--format", "json", tag).Output()
	if err != nil {
		t.Fatalf("podman image inspect: %v", err)
	}
	var images []imageConfig
	if err := json.Unmarshal(out, &images); err != nil || len(images) != 1 {
		t.Fatalf("podman image inspect: want one image, got %d (%v):\n%s", len(images), err, out)
	}
	cfg := images[0].Config

	// A numeric user works on bases without /etc/passwd, and must not be root.
	if cfg.User != "65534:65534" {
		t.Errorf("image user = %q, want 65534:65534 (nobody, numeric)", cfg.User)
	}
	if want := []string{"/bin/sockbuf_exporter"}; strings.Join(cfg.Entrypoint, " ") != strings.Join(want, " ") {
		t.Errorf("entrypoint = %q, want %q", cfg.Entrypoint, want)
	}
	if len(cfg.Cmd) != 0 {
		t.Errorf("cmd = %q, want none: arguments given to `run` must go to the exporter as flags", cfg.Cmd)
	}
	if _, ok := cfg.ExposedPorts[port+"/tcp"]; !ok || len(cfg.ExposedPorts) != 1 {
		t.Errorf("exposed ports = %v, want only %s/tcp, the exporter's default", cfg.ExposedPorts, port)
	}
	for label, want := range map[string]string{
		"org.opencontainers.image.title":    "sockbuf_exporter",
		"org.opencontainers.image.source":   "https://github.com/sockbuf/sockbuf_exporter",
		"org.opencontainers.image.version":  "0.0.0-test",
		"org.opencontainers.image.revision": "deadbeef",
	} {
		if got := cfg.Labels[label]; got != want {
			t.Errorf("label %s = %q, want %q", label, got, want)
		}
	}
	if cfg.Labels["org.opencontainers.image.description"] == "" {
		t.Error("label org.opencontainers.image.description is empty")
	}

	checkImageBinary(t, podman, tag)
}

// checkImageBinary looks into the image's filesystem: the entrypoint must be there, executable, and static,
// since the scratch and distroless bases have no dynamic loader. Mounting an image needs root.
func checkImageBinary(t *testing.T, podman, tag string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Log("not root: skipping the look into the image's filesystem (podman image mount needs root)")
		return
	}
	out, err := exec.Command(podman, "image", "mount", tag).Output()
	if err != nil {
		t.Fatalf("podman image mount: %v", err)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(podman, "image", "unmount", tag).CombinedOutput(); err != nil {
			t.Errorf("podman image unmount: %v\n%s", err, out)
		}
	})
	path := filepath.Join(strings.TrimSpace(string(out)), "bin", "sockbuf_exporter")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("entrypoint missing from the image: %v", err)
	}
	if fi.Mode().Perm()&0o001 == 0 {
		t.Errorf("/bin/sockbuf_exporter mode %v: not executable by user 65534", fi.Mode())
	}
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("/bin/sockbuf_exporter is not an ELF binary: %v", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("/bin/sockbuf_exporter is dynamically linked (has PT_INTERP): build it with CGO_ENABLED=0")
		}
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, mode); err != nil {
		t.Fatal(err)
	}
}

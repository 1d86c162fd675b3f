package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/sockbuf/sockbuf_exporter/internal/e2e"
	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

// TestSystemdBPFDropIn pins what bpf.conf grants: CAP_BPF and CAP_PERFMON and nothing else, the bpf() system
// call alone on top of the unit's filter, and no user namespace (the kernel checks the capabilities in the
// initial one).
func TestSystemdBPFDropIn(t *testing.T) {
	u := unitSettings(t, filepath.Join(systemdDir, "bpf.conf"))["Service"]
	for key, want := range map[string][]string{
		"CapabilityBoundingSet": {"CAP_BPF", "CAP_PERFMON"},
		"AmbientCapabilities":   {"CAP_BPF", "CAP_PERFMON"},
		"SystemCallFilter":      {"bpf"},
		"PrivateUsers":          {"no"},
	} {
		got := strings.Fields(strings.Join(u[key], " "))
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("bpf.conf %s = %q, want %q", key, got, want)
		}
	}
	args := strings.Fields(u["ExecStart"][0])
	if !slices.Contains(args, "--collector.bpf") {
		t.Errorf("bpf.conf ExecStart %q lacks --collector.bpf", args)
	}
}

// TestPrivilegesBPF runs the exporter with --collector.bpf as uid 65534, once with what bpf.conf grants
// (the collector works) and once with no capability (it logs one line naming what it needs, reports
// success 0 and exports none of its metrics, and every other collector still works).
func TestPrivilegesBPF(t *testing.T) {
	setpriv, bin := setprivExporter(t)
	caps, args := dropInGrants(t, "bpf.conf")
	success := regexp.MustCompile(`(?m)^sockbuf_scrape_collector_success\{collector="([a-z]+)"\} (\S+)$`)
	for _, c := range []struct {
		name    string
		caps    string
		working bool
	}{
		{"bpf-dropin", "-all," + strings.Join(caps, ","), true},
		{"no-capabilities", "-all", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ns := testenv.NewNetNS(t)
			pa := []string{"--reuid=65534", "--regid=65534", "--clear-groups",
				"--inh-caps=" + c.caps, "--ambient-caps=" + c.caps, "--bounding-set=" + c.caps}
			if !c.working {
				pa = append(pa, "--no-new-privs")
			}
			exp := e2e.StartProcess(t, ns, nil, "the exporter", setpriv, append(append(pa, bin), args...)...)
			var body string
			for range 2 { // the second scrape must not log again
				body = scrapeInNetNS(t, ns, "127.0.0.1:"+defaultPort(t))
			}
			results := success.FindAllStringSubmatch(body, -1)
			if len(results) < 6 {
				t.Fatalf("only %d collectors reported:\n%s", len(results), body)
			}
			for _, m := range results {
				want := "1"
				if m[1] == "bpf" && !c.working {
					want = "0"
				}
				if m[2] != want {
					t.Errorf("collector %s success %s, want %s", m[1], m[2], want)
				}
			}
			has := strings.Contains(body, "\nsockbuf_bpf_missed_runs_total ")
			if has != c.working {
				t.Errorf("bpf metrics exported: %v, want %v", has, c.working)
			}
			lines := regexp.MustCompile(`(?m)^.*level=(WARN|ERROR).*$`).FindAllString(exp.Logs(), -1)
			if c.working {
				if len(lines) != 0 {
					t.Errorf("warnings or errors with bpf.conf's capabilities: %q", lines)
				}
				return
			}
			if len(lines) != 1 || !strings.Contains(lines[0], "CAP_BPF and CAP_PERFMON") {
				t.Errorf("want exactly one line naming CAP_BPF and CAP_PERFMON, got %q", lines)
			} else {
				t.Logf("logged: %s", lines[0])
			}
		})
	}
}

// withBPF writes the kustomization docs/deployment.md shows, a variant plus the bpf component, into a
// fresh directory and returns it.
func withBPF(t *testing.T, variant string) string {
	t.Helper()
	dir := t.TempDir()
	// Kustomize takes only relative paths to other kustomizations.
	rel := func(p string) string {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		r, err := filepath.Rel(dir, abs)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	variant, component := rel(variant), rel(filepath.Join(kubernetesDir, "bpf"))
	k := fmt.Sprintf("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - %s\ncomponents:\n  - %s\n",
		variant, component)
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestKubernetesBPF builds both variants with the bpf component and pins what it changes in the DaemonSet:
// the flag, uid 0 with exactly CAP_BPF and CAP_PERFMON (every other capability dropped), and nothing else: no
// privilege, no escalation, the RuntimeDefault seccomp profile, read-only root, the same read-only host paths,
// no hostPID; the other objects are the variant's.
func TestKubernetesBPF(t *testing.T) {
	for _, variant := range []string{kubernetesDir, kubernetesDir + "/podmonitor"} {
		t.Run(filepath.Base(variant), func(t *testing.T) { checkBPFVariant(t, variant) })
	}
}

func checkBPFVariant(t *testing.T, variant string) {
	plain := build(t, variant)
	objs := build(t, withBPF(t, variant))
	if len(objs) != len(plain) {
		t.Errorf("%d objects with the bpf component, %d without", len(objs), len(plain))
	}
	for kind, obj := range plain {
		if kind != "DaemonSet" && !equalJSON(t, obj, objs[kind]) {
			t.Errorf("the bpf component changed the %s", kind)
		}
	}
	base := plain["DaemonSet"].(*appsv1.DaemonSet).Spec.Template.Spec
	pod := objs["DaemonSet"].(*appsv1.DaemonSet).Spec.Template.Spec
	c := pod.Containers[0]
	sc := c.SecurityContext
	switch {
	case sc == nil || sc.Capabilities == nil:
		t.Fatal("container has no securityContext capabilities")
	case !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}):
		t.Errorf("capabilities drop %v, want [ALL]", sc.Capabilities.Drop)
	case !slices.Equal(sc.Capabilities.Add, []corev1.Capability{"BPF", "PERFMON"}):
		t.Errorf("capabilities add %v, want exactly [BPF PERFMON]", sc.Capabilities.Add)
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("allowPrivilegeEscalation must stay false")
	case sc.Privileged != nil && *sc.Privileged:
		t.Error("privileged must stay false")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("readOnlyRootFilesystem must stay true")
	}
	ps := pod.SecurityContext
	if ps == nil || ps.RunAsUser == nil || *ps.RunAsUser != 0 || ps.SeccompProfile == nil ||
		ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext = %+v, want runAsUser 0 (added capabilities reach only uid 0's effective set) and seccomp RuntimeDefault", ps)
	}
	if ps != nil && ps.AppArmorProfile != nil {
		t.Errorf("AppArmor profile changed to %+v: the bpf collector needs no change", ps.AppArmorProfile)
	}
	if pod.HostPID || pod.HostIPC || !pod.HostNetwork {
		t.Error("want hostNetwork and neither hostPID nor hostIPC, as the default variant")
	}
	if !slices.Equal(c.Args, append(slices.Clone(base.Containers[0].Args), "--collector.bpf")) {
		t.Errorf("args %q, want the default variant's plus --collector.bpf", c.Args)
	}
	flags, _ := exporterFlags(t)
	checkArgs(t, "bpf DaemonSet args", c.Args, flags)
	if !equalJSON(t, pod.Volumes, base.Volumes) || !equalJSON(t, c.VolumeMounts, base.Containers[0].VolumeMounts) {
		t.Errorf("volumes or mounts differ from the default variant's: %+v %+v", pod.Volumes, c.VolumeMounts)
	}
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	x, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(x) == string(y)
}

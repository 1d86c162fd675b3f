package deploy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

const kubernetesDir = repoRoot + "/deploy/kubernetes"

// kinds maps every kind the manifests may hold to its API version and official Go type.
var kinds = map[string]struct {
	apiVersion string
	new        func() any
}{
	"DaemonSet":      {"apps/v1", func() any { return &appsv1.DaemonSet{} }},
	"Service":        {"v1", func() any { return &corev1.Service{} }},
	"ConfigMap":      {"v1", func() any { return &corev1.ConfigMap{} }},
	"ServiceMonitor": {"monitoring.coreos.com/v1", func() any { return &monitoringv1.ServiceMonitor{} }},
	"PodMonitor":     {"monitoring.coreos.com/v1", func() any { return &monitoringv1.PodMonitor{} }},
	"PrometheusRule": {"monitoring.coreos.com/v1", func() any { return &monitoringv1.PrometheusRule{} }},
}

// decodeStrict decodes one manifest into its official type the way the API server's strict field validation
// does: duplicate keys, unknown fields and fields in the wrong case ("hostnetwork") are all errors, where
// encoding/json would ignore the first two and accept the third.
func decodeStrict(data []byte) (any, error) {
	var meta struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(data, &meta); err != nil {
		return nil, err
	}
	k, ok := kinds[meta.Kind]
	if !ok {
		return nil, fmt.Errorf("kind %q is not one the deployment should hold", meta.Kind)
	}
	if meta.APIVersion != k.apiVersion {
		return nil, fmt.Errorf("%s: apiVersion %q, want %q", meta.Kind, meta.APIVersion, k.apiVersion)
	}
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, err
	}
	obj := k.new()
	strictErrs, err := kjson.UnmarshalStrict(js, obj, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return nil, err
	}
	if err := errors.Join(strictErrs...); err != nil {
		return nil, fmt.Errorf("%s: %w", meta.Kind, err)
	}
	return obj, nil
}

// kustomization is the part of kustomization.yaml the tests read; decoded strictly, so that any other field
// (patches, generators, images) gets noticed and thought about here.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace,omitempty"`
	Resources  []string `json:"resources"`
	Patches    []struct {
		Target struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
		} `json:"target"`
		Patch string `json:"patch"`
	} `json:"patches,omitempty"`
}

// TestKustomizationsListEveryManifest: every manifest file in deploy/kubernetes is listed by exactly one
// kustomization, every listed file or directory exists, and nothing else lies around.
func TestKustomizationsListEveryManifest(t *testing.T) {
	listed := map[string]int{}
	var manifests []string
	err := filepath.WalkDir(kubernetesDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(kubernetesDir, path)
		switch {
		case d.Name() == "kustomization.yaml":
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			var k kustomization
			if err := yaml.UnmarshalStrict(data, &k); err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
			if (k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization") &&
				(k.APIVersion != "kustomize.config.k8s.io/v1alpha1" || k.Kind != "Component") {
				t.Errorf("%s: apiVersion/kind = %s/%s", rel, k.APIVersion, k.Kind)
			}
			for _, r := range k.Resources {
				target := filepath.Join(filepath.Dir(path), r)
				fi, err := os.Stat(target)
				if err != nil {
					t.Errorf("%s lists %s: %v", rel, r, err)
					continue
				}
				if fi.IsDir() {
					if _, err := os.Stat(filepath.Join(target, "kustomization.yaml")); err != nil {
						t.Errorf("%s lists directory %s, which has no kustomization.yaml", rel, r)
					}
					continue
				}
				targetRel, _ := filepath.Rel(kubernetesDir, target)
				listed[targetRel]++
			}
		case strings.HasSuffix(d.Name(), ".yaml"):
			manifests = append(manifests, rel)
		default:
			t.Errorf("%s: unexpected file in deploy/kubernetes (manifests are .yaml)", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range manifests {
		if n := listed[m]; n != 1 {
			t.Errorf("%s is listed by %d kustomizations, want exactly 1", m, n)
		}
	}
	for l := range listed {
		if !slices.Contains(manifests, l) {
			t.Errorf("a kustomization lists %s, which is not a manifest in deploy/kubernetes", l)
		}
	}
}

// TestManifestsDecodeStrictly decodes every manifest file on its own into the official API types.
func TestManifestsDecodeStrictly(t *testing.T) {
	n := 0
	err := filepath.WalkDir(kubernetesDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == "kustomization.yaml" || !strings.HasSuffix(path, ".yaml") {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.Contains(string(data), "\n---") {
			t.Errorf("%s: one object per file, so that kustomizations list objects", path)
		}
		if _, err := decodeStrict(data); err != nil {
			t.Errorf("%s: %v", path, err)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 6 {
		t.Errorf("decoded only %d manifests", n)
	}
}

// TestStrictDecodeRejectsTypos proves the decoder above would catch what the manifests are checked for.
func TestStrictDecodeRejectsTypos(t *testing.T) {
	good, err := os.ReadFile(filepath.Join(kubernetesDir, "base", "daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodeStrict(good); err != nil {
		t.Fatalf("the real DaemonSet does not decode: %v", err)
	}
	for name, bad := range map[string]string{
		"misspelt field":  strings.Replace(string(good), "hostNetwork:", "hostNetwrok:", 1),
		"wrong case":      strings.Replace(string(good), "readOnlyRootFilesystem:", "readOnlyRootFileSystem:", 1),
		"duplicate field": strings.Replace(string(good), "hostNetwork: true", "hostNetwork: true\n      hostNetwork: false", 1),
		"wrong type":      strings.Replace(string(good), "runAsUser: 65534", "runAsUser: nobody", 1),
	} {
		if bad == string(good) {
			t.Fatalf("%s: the replacement did not apply", name)
		}
		if _, err := decodeStrict([]byte(bad)); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

// build runs kustomize (in process, as `kubectl apply -k` would) and decodes what it produces.
func build(t *testing.T, dir string) map[string]any {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	objs := map[string]any{}
	for _, r := range res.Resources() {
		data, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		obj, err := decodeStrict(data)
		if err != nil {
			t.Errorf("kustomize build %s: %s/%s: %v", dir, r.GetKind(), r.GetName(), err)
			continue
		}
		if r.GetNamespace() != "monitoring" {
			t.Errorf("kustomize build %s: %s/%s in namespace %q, want monitoring", dir, r.GetKind(), r.GetName(), r.GetNamespace())
		}
		if _, dup := objs[r.GetKind()]; dup {
			t.Errorf("kustomize build %s: two objects of kind %s", dir, r.GetKind())
		}
		objs[r.GetKind()] = obj
	}
	return objs
}

// TestKustomizeBuild builds both variants and checks that their objects fit together: the Service and the
// monitors find the DaemonSet's pods and port, and exactly one way of scraping is present.
func TestKustomizeBuild(t *testing.T) {
	for _, c := range []struct {
		dir   string
		kinds []string
	}{
		{kubernetesDir, []string{"ConfigMap", "DaemonSet", "PrometheusRule", "Service", "ServiceMonitor"}},
		{kubernetesDir + "/podmonitor", []string{"ConfigMap", "DaemonSet", "PodMonitor", "PrometheusRule"}},
	} {
		t.Run(filepath.Base(c.dir), func(t *testing.T) {
			objs := build(t, c.dir)
			var got []string
			for k := range objs {
				got = append(got, k)
			}
			slices.Sort(got)
			if !slices.Equal(got, c.kinds) {
				t.Fatalf("kinds = %v, want %v", got, c.kinds)
			}
			ds := objs["DaemonSet"].(*appsv1.DaemonSet)
			podLabels := ds.Spec.Template.Labels
			selects := func(what string, sel map[string]string) {
				t.Helper()
				if len(sel) == 0 {
					t.Errorf("%s has an empty selector", what)
				}
				for k, v := range sel {
					if podLabels[k] != v {
						t.Errorf("%s selects %s=%s, which the DaemonSet's pods do not carry", what, k, v)
					}
				}
			}
			if svc, ok := objs["Service"].(*corev1.Service); ok {
				selects("Service", svc.Spec.Selector)
				if svc.Spec.ClusterIP != corev1.ClusterIPNone {
					t.Errorf("Service clusterIP = %q, want None (headless)", svc.Spec.ClusterIP)
				}
				if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "metrics" ||
					svc.Spec.Ports[0].TargetPort != intstr.FromString("metrics") || strconv.Itoa(int(svc.Spec.Ports[0].Port)) != defaultPort(t) {
					t.Errorf("Service ports = %+v, want one port named metrics, %s, targetPort metrics", svc.Spec.Ports, defaultPort(t))
				}
				sm := objs["ServiceMonitor"].(*monitoringv1.ServiceMonitor)
				for k, v := range sm.Spec.Selector.MatchLabels {
					if svc.Labels[k] != v {
						t.Errorf("ServiceMonitor selects Service label %s=%s, which the Service lacks", k, v)
					}
				}
				if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "metrics" {
					t.Errorf("ServiceMonitor endpoints = %+v, want the port named metrics", sm.Spec.Endpoints)
				}
			}
			if pm, ok := objs["PodMonitor"].(*monitoringv1.PodMonitor); ok {
				selects("PodMonitor", pm.Spec.Selector.MatchLabels)
				if len(pm.Spec.PodMetricsEndpoints) != 1 || pm.Spec.PodMetricsEndpoints[0].Port == nil ||
					*pm.Spec.PodMetricsEndpoints[0].Port != "metrics" {
					t.Errorf("PodMonitor endpoints = %+v, want the port named metrics", pm.Spec.PodMetricsEndpoints)
				}
			}
			cm := objs["ConfigMap"].(*corev1.ConfigMap)
			if cm.Labels["grafana_dashboard"] != "1" {
				t.Errorf("dashboards ConfigMap labels = %v, want grafana_dashboard: \"1\" for the Grafana sidecar", cm.Labels)
			}
			size := 0
			for _, v := range cm.Data {
				size += len(v)
			}
			// `kubectl apply` (client side) keeps a copy in an annotation limited to 256 KiB.
			if size > 200<<10 {
				t.Errorf("dashboards ConfigMap holds %d bytes: split it, `kubectl apply` stores a copy in a 256 KiB annotation", size)
			}
			rule := objs["PrometheusRule"].(*monitoringv1.PrometheusRule)
			if len(rule.Spec.Groups) == 0 {
				t.Log("PrometheusRule has no groups yet (placeholder)")
			}
		})
	}
}

// TestDaemonSet pins what makes the DaemonSet both useful and safe: the host's network and /proc, read-only,
// nothing else from the host, no privilege, and flags the exporter accepts.
func TestDaemonSet(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(kubernetesDir, "base", "daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	obj, err := decodeStrict(data)
	if err != nil {
		t.Fatal(err)
	}
	pod := obj.(*appsv1.DaemonSet).Spec.Template.Spec

	if !pod.HostNetwork {
		t.Error("hostNetwork must be true: the kernel counters and inet_diag are per network namespace")
	}
	if pod.HostPID || pod.HostIPC {
		t.Error("hostPID/hostIPC must stay false: the host's /proc mount is enough")
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken must be false: the exporter never talks to the API server")
	}
	if sc := pod.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser != 65534 {
		t.Errorf("pod securityContext = %+v, want runAsNonRoot and runAsUser 65534", sc)
	}
	if !slices.ContainsFunc(pod.Tolerations, func(tol corev1.Toleration) bool {
		return tol.Operator == corev1.TolerationOpExists && tol.Key == "" && tol.Effect == ""
	}) {
		t.Errorf("tolerations = %+v, want one {operator: Exists} so that every node runs the exporter", pod.Tolerations)
	}
	if len(pod.Containers) != 1 || len(pod.InitContainers) != 0 {
		t.Fatalf("want one container, got %d (+%d init)", len(pod.Containers), len(pod.InitContainers))
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("container has no securityContext")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("allowPrivilegeEscalation must be false")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("readOnlyRootFilesystem must be true")
	case sc.Privileged != nil && *sc.Privileged:
		t.Error("privileged must be false")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0:
		t.Errorf("capabilities = %+v, want drop [ALL] and add nothing", sc.Capabilities)
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[r]; !ok {
			t.Errorf("no %s request", r)
		}
		if _, ok := c.Resources.Limits[r]; !ok {
			t.Errorf("no %s limit", r)
		}
	}

	port := defaultPort(t)
	if len(c.Ports) != 1 || c.Ports[0].Name != "metrics" || strconv.Itoa(int(c.Ports[0].ContainerPort)) != port {
		t.Errorf("ports = %+v, want one named metrics on %s", c.Ports, port)
	}
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/" || p.HTTPGet.Port != intstr.FromString("metrics") {
			t.Errorf("%s probe = %+v, want GET / on port metrics", name, p)
		}
	}

	// Every host path is mounted read-only, and the exporter is told where.
	flags, _ := exporterFlags(t)
	checkArgs(t, "DaemonSet args", c.Args, flags)
	if len(c.Command) != 0 {
		t.Errorf("command = %q: leave the image's entrypoint alone", c.Command)
	}
	hostPaths := map[string]string{} // volume name -> host path
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	mounted := map[string]string{} // host path -> mount path
	for _, m := range c.VolumeMounts {
		if hp, ok := hostPaths[m.Name]; ok {
			if !m.ReadOnly {
				t.Errorf("host path %s mounted read-write at %s", hp, m.MountPath)
			}
			mounted[hp] = m.MountPath
		}
	}
	for hostPath, flag := range map[string]string{"/proc": "--path.procfs", "/sys/fs/cgroup": "--collector.sockets.cgroup-root"} {
		at, ok := mounted[hostPath]
		if !ok {
			t.Errorf("host %s is not mounted", hostPath)
			continue
		}
		if !slices.Contains(c.Args, flag+"="+at) {
			t.Errorf("host %s is mounted at %s but args %q lack %s=%s", hostPath, at, c.Args, flag, at)
		}
	}
	if len(hostPaths) != 2 {
		t.Errorf("host paths %v: want only /proc and /sys/fs/cgroup", hostPaths)
	}
}

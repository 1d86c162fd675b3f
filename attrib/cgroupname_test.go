package attrib

import "testing"

func TestCgroupName(t *testing.T) {
	for _, tc := range []struct{ path, stable, leaf string }{
		{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0a1b_2c3d.slice/cri-containerd-aa.scope", "kubepods-burstable-pod0a1b_2c3d.slice", "cri-containerd-aa.scope"},
		{"/kubepods.slice/kubepods-pod0a1b_2c3d.slice/cri-containerd-aa.scope", "kubepods-pod0a1b_2c3d.slice", "cri-containerd-aa.scope"},
		{"/kubepods.slice/kubepods-besteffort.slice", "kubepods-besteffort.slice", "kubepods-besteffort.slice"},
		{"/kubepods/besteffort/pod0a1b-2c3d/0123abcd", "pod0a1b-2c3d", "0123abcd"},
		{"/../../kubepods/pod0a1b-2c3d/0123abcd", "pod0a1b-2c3d", "0123abcd"},
		{"/system.slice/docker-0123abcd.scope", "docker-0123abcd.scope", "docker-0123abcd.scope"},
		{"/system.slice/pod-manager.service", "pod-manager.service", "pod-manager.service"},
		{"/system.slice/foo.service/worker", "foo.service", "worker"},
		{"/user.slice/user-1000.slice/user@1000.service/app.slice/app-x.service", "app-x.service", "app-x.service"},
		{"/machine.slice/libpod-0123.scope/container", "container", "container"},
		{"/system.slice/x\xff", `x\xff`, `x\xff`},
		{"/", "/", "/"},
		{"", "/", "/"},
		{"/..", "/", "/"},
	} {
		if got := CgroupName(tc.path, CgroupStable); got != tc.stable {
			t.Errorf("CgroupName(%q, stable) = %q, want %q", tc.path, got, tc.stable)
		}
		if got := CgroupName(tc.path, CgroupLeaf); got != tc.leaf {
			t.Errorf("CgroupName(%q, leaf) = %q, want %q", tc.path, got, tc.leaf)
		}
	}
}

func TestParseCgroupPolicy(t *testing.T) {
	for in, want := range map[string]CgroupPolicy{"": CgroupStable, "stable": CgroupStable, "leaf": CgroupLeaf} {
		if got, err := ParseCgroupPolicy(in); err != nil || got != want {
			t.Errorf("ParseCgroupPolicy(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseCgroupPolicy("pod"); err == nil {
		t.Error("ParseCgroupPolicy(pod): no error")
	}
}

package containerdshim

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestCgroupLocation(t *testing.T) {
	for _, tc := range []struct {
		path         string
		parent, name string
		err          string
	}{
		{path: "", parent: CgroupParent, name: "ns-id"},
		{path: "/arrowtest/id", parent: "arrowtest", name: "id"},
		{path: "/kubepods/burstable/pod123/abc", parent: "kubepods/burstable/pod123", name: "abc"},
		{path: "relative/x", parent: "relative", name: "x"},
		{path: "/id", parent: CgroupParent, name: "id"},
		{path: "kubepods-burstable-pod1.slice:cri-containerd:abc",
			parent: "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice", name: "cri-containerd-abc.scope"},
		{path: "system.slice::abc", parent: "system.slice", name: "abc.scope"},
		{path: "-.slice:p:abc", err: "root slice"},
		{path: "a--b.slice:p:abc", err: "single dashes"},
		{path: "a/b.slice:p:abc", err: "single dashes"},
		{path: "nodots:p:abc", err: "NAME.slice"},
		{path: "/a/../../etc", err: `".." is not allowed`},
		{path: "/a/b/..", err: `".." is not allowed`},
		{path: "/a/./b", err: `"." is not allowed`},
		{path: "/a/b/", err: "no group name"},
		{path: "/" + strings.Repeat("a", 5000), err: "bytes"},
	} {
		spec := &specs.Spec{Linux: &specs.Linux{CgroupsPath: tc.path}}
		parent, name, err := cgroupLocation(spec, "ns", "id")
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: %q %q %v, want an error with %q", tc.path, parent, name, err, tc.err)
			}
			continue
		}
		if err != nil || parent != tc.parent || name != tc.name {
			t.Errorf("%q: %q %q %v, want %q %q", tc.path, parent, name, err, tc.parent, tc.name)
		}
	}
	if p, n, err := cgroupLocation(nil, "ns", "id"); err != nil || p != CgroupParent || n != "ns-id" {
		t.Errorf("no spec: %q %q %v", p, n, err)
	}
}

// FuzzCgroupLocation: whatever the spec says, the group stays inside
// the hierarchy.
func FuzzCgroupLocation(f *testing.F) {
	for _, s := range []string{"", "/a/b", "a-b.slice:p:n", "/../x", "a:b:c", "/a//b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, cp string) {
		parent, name, err := cgroupLocation(&specs.Spec{Linux: &specs.Linux{CgroupsPath: cp}}, "ns", "id")
		if err != nil {
			return
		}
		if name == "" || strings.Contains(name, "/") {
			t.Fatalf("%q: name %q", cp, name)
		}
		for _, e := range strings.Split(parent+"/"+name, "/") {
			if e == ".." || e == "." {
				t.Fatalf("%q: %q/%q escapes", cp, parent, name)
			}
		}
	})
}

package dataroot

import (
	"path/filepath"
	"testing"
)

// TestLayout pins every location, relative to the root: existing data
// roots keep working only as long as these stay the same.
func TestLayout(t *testing.T) {
	for _, root := range []string{"/var/lib/arrow", "/home/u/.local/share/arrow/", "rel/root"} {
		r := Root(root)
		for _, tc := range []struct {
			name, got, want string
		}{
			{"Images", r.Images(), "images"},
			{"RootDisks", r.RootDisks(), "rootfs"},
			{"DirDisks", r.DirDisks(), "rootfs/dirs"},
			{"Closures", r.Closures(), "rootfs/closures"},
			{"Initramfs", r.Initramfs(), "initramfs"},
			{"Accounts", r.Accounts(), "initramfs/accounts"},
			{"Kernels", r.Kernels(), "kernels"},
			{"Templates", r.Templates(), "templates"},
			{"TemplateMemory", r.TemplateMemory(), "templates/.mem"},
			{"TemplateMemo", r.TemplateMemo(), "templates/.memo"},
			{"Arrows", r.Arrows(), "arrows"},
			{"Arrow", r.Arrow("0123abcd"), "arrows/0123abcd"},
			{"Spares", r.Spares(), "spares"},
			{"Volumes", r.Volumes(), "volumes"},
			{"AptBuilds", r.AptBuilds(), "apt"},
			{"Spare", r.Spare("s1"), "spares/s1"},
			{"DB", r.DB(), "arrowd.db"},
			{"Networks", r.Networks(), "networks.db"},
			{"DaemonLog", r.DaemonLog(), "arrowd.log"},
		} {
			rel, err := filepath.Rel(root, tc.got)
			if err != nil {
				t.Errorf("Root(%q).%s() = %q, not under the root: %v", root, tc.name, tc.got, err)
				continue
			}
			if rel != tc.want {
				t.Errorf("Root(%q).%s() = %q, %q relative to the root; want %q", root, tc.name, tc.got, rel, tc.want)
			}
			if tc.got != filepath.Clean(tc.got) {
				t.Errorf("Root(%q).%s() = %q, not clean", root, tc.name, tc.got)
			}
		}
	}
}

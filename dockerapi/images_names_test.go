package dockerapi

import (
	"errors"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/arrowsys/arrow/image/store"
)

func TestImgFamiliar(t *testing.T) {
	hex64 := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"busybox", "busybox:latest", true},
		{"busybox:1.36", "busybox:1.36", true},
		{"docker.io/library/busybox", "busybox:latest", true},
		{"index.docker.io/library/busybox:latest", "busybox:latest", true},
		{"docker.io/user/app", "user/app:latest", true},
		{"user/app:2", "user/app:2", true},
		{"registry.example:5000/app:1", "registry.example:5000/app:1", true},
		{"localhost/app", "localhost/app:latest", true},
		{"busybox@sha256:" + hex64, "busybox@sha256:" + hex64, true},
		{"BusyBox", "", false},
		{"sha256:" + hex64, "", false},
		{hex64, "", false},
		{hex64 + ":1", "", false},
		{"docker-archive:/tmp/x.tar", "", false},
		{"", "", false},
		{"a b", "", false},
	} {
		got, ok := imgFamiliar(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("imgFamiliar(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestImgFind(t *testing.T) {
	a := store.Image{ID: "aaaa1111" + strings.Repeat("0", 56), Names: []string{"busybox:latest", "busybox:1"}}
	b := store.Image{ID: "aaaa2222" + strings.Repeat("0", 56), Names: []string{"index.docker.io/library/alpine:3"}}
	c := store.Image{ID: "cccc3333" + strings.Repeat("0", 56)}
	imgs := []store.Image{a, b, c}
	for _, tc := range []struct {
		ref    string
		want   string
		how    imgMatch
		errStr error
	}{
		{"busybox", a.ID, byName, nil},
		{"busybox:latest", a.ID, byName, nil},
		{"docker.io/library/busybox:1", a.ID, byName, nil},
		{"alpine:3", b.ID, byName, nil},
		{"docker.io/alpine:3", b.ID, byName, nil},
		{"alpine", "", 0, store.ErrNotFound},
		{"sha256:" + c.ID, c.ID, byID, nil},
		{c.ID, c.ID, byID, nil},
		{"cccc", c.ID, byID, nil},
		{"aaaa", "", 0, store.ErrAmbiguous},
		{"busybox:2", "", 0, store.ErrNotFound},
	} {
		img, how, err := imgFind(imgs, tc.ref)
		if !errors.Is(err, tc.errStr) || (err == nil) != (tc.errStr == nil) || img.ID != tc.want || how != tc.how {
			t.Errorf("imgFind(%q) = %.8s, %v, %v; want %.8s, %v, %v", tc.ref, img.ID, how, err, tc.want, tc.how, tc.errStr)
		}
	}
	if _, _, err := imgFind(imgs, "nope"); err == nil || !strings.Contains(err.Error(), "No such image: nope") {
		t.Errorf("not found: %v, want dockerd's message", err)
	}
}

func TestImgTags(t *testing.T) {
	img := store.Image{Names: []string{"busybox:latest", "index.docker.io/library/busybox:latest", "app@sha256:" + strings.Repeat("1", 64), "docker-archive:/x.tar"}}
	tags, digests := imgTags(img)
	if strings.Join(tags, " ") != "busybox:latest docker-archive:/x.tar" || len(digests) != 1 {
		t.Errorf("imgTags = %q, %q", tags, digests)
	}
	tags, digests = imgTags(store.Image{})
	if tags == nil || digests == nil || len(tags)+len(digests) != 0 {
		t.Errorf("no names: %q %q, want empty lists", tags, digests)
	}
}

func TestRefMatches(t *testing.T) {
	for _, tc := range []struct {
		pattern, tag string
		want         bool
	}{
		{"busybox", "busybox:latest", true},
		{"busybox", "busybox:1", true},
		{"busybox:1", "busybox:latest", false},
		{"busybox:*", "busybox:1", true},
		{"busy*", "busybox:latest", true},
		{"docker.io/library/busybox", "busybox:1", true},
		{"docker.io/library/busybox:1", "busybox:1", true},
		{"user/*", "user/app:1", true},
		{"user/*", "busybox:1", false},
		{"localhost:5000/app", "localhost:5000/app:2", true},
	} {
		if got := refMatches(tc.pattern, tc.tag); got != tc.want {
			t.Errorf("refMatches(%q, %q) = %v, want %v", tc.pattern, tc.tag, got, tc.want)
		}
	}
}

func TestPullRef(t *testing.T) {
	for _, tc := range []struct {
		from, tag, want string
		ok              bool
	}{
		{"busybox", "", "index.docker.io/library/busybox:latest", true},
		{"busybox", "1.36", "index.docker.io/library/busybox:1.36", true},
		{"busybox:1", "", "index.docker.io/library/busybox:1", true},
		{"busybox", "sha256:" + strings.Repeat("a", 64), "index.docker.io/library/busybox@sha256:" + strings.Repeat("a", 64), true},
		{"registry.example:5000/app", "2", "registry.example:5000/app:2", true},
		{"", "", "", false},
		{"Bad", "", "", false},
		{strings.Repeat("ab", 32), "", "", false},
	} {
		r, err := pullRef(tc.from, tc.tag)
		if (err == nil) != tc.ok || err == nil && r.Name() != tc.want {
			t.Errorf("pullRef(%q, %q) = %v, %v; want %q", tc.from, tc.tag, r, err, tc.want)
		}
	}
}

func TestImgPulledDigest(t *testing.T) {
	m := digest.Digest("sha256:" + strings.Repeat("1", 64))
	for _, tc := range []struct{ source, want string }{
		{"index.docker.io/library/busybox:latest", "busybox@" + m.String()},
		{"registry.example:5000/team/app:1", "registry.example:5000/team/app@" + m.String()},
		{"localhost/app@sha256:" + strings.Repeat("2", 64), "localhost/app@" + m.String()},
		{"docker-archive:/tmp/x.tar", ""},
		{"oci:busybox-oci", ""},
		{"oci-archive:/x.tar:1", ""},
		{"apt:bookworm/hello,curl", ""},
		{"busybox", ""},
		{"", ""},
	} {
		if got := imgPulledDigest(store.Image{Source: tc.source, Manifest: m}); got != tc.want {
			t.Errorf("imgPulledDigest(%q) = %q, want %q", tc.source, got, tc.want)
		}
	}
}

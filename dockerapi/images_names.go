package dockerapi

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/arrowsys/arrow/image/store"
)

// Image names. The store names an image by any string (store.ValidateName);
// Docker by a reference that it normalises: "busybox", "busybox:latest",
// "docker.io/library/busybox:latest" and "index.docker.io/library/busybox"
// are one name. The Docker API stores every name it gives (load, pull,
// tag) in Docker's familiar form, "busybox:latest", "user/app:1",
// "registry.example:5000/app:1", the form `docker images` shows, and
// compares names by that form, so that an image `arrow image pull` named
// index.docker.io/library/busybox:latest is also busybox.

// errBadReference marks a name that is no Docker reference: 400.
var errBadReference = errors.New("invalid reference format")

// imgFamiliar returns ref in Docker's familiar form, with the tag
// "latest" when it names neither tag nor digest. ok is false when ref is
// no valid reference (an ID, a path, a name with capitals).
func imgFamiliar(ref string) (string, bool) {
	if ref == "" || len(ref) > 512 || isHexID(strings.TrimPrefix(ref, "sha256:")) && len(strings.TrimPrefix(ref, "sha256:")) == 64 {
		return "", false
	}
	r, err := name.ParseReference(ref)
	if err != nil || !validRegistry(r.Context().RegistryStr()) {
		return "", false
	}
	repo := r.Context().RepositoryStr()
	base := r.Context().RegistryStr() + "/" + repo
	if r.Context().RegistryStr() == name.DefaultRegistry {
		base = strings.TrimPrefix(repo, "library/")
		if strings.Contains(base, "/") && strings.HasPrefix(repo, "library/") {
			base = repo // library/a/b keeps its namespace
		}
	}
	if isHexID(base) && len(base) == 64 {
		return "", false // an image ID, which Docker refuses as a name
	}
	switch r := r.(type) {
	case name.Tag:
		return base + ":" + r.TagStr(), true
	case name.Digest:
		return base + "@" + r.DigestStr(), true
	}
	return "", false
}

// validRegistry checks a registry as Docker's reference grammar does and
// go-containerregistry's parser does not: a port is digits
// ("docker-archive:/x.tar" names no registry).
func validRegistry(reg string) bool {
	host, port, hasPort := strings.Cut(reg, ":")
	if !hasPort {
		return host != ""
	}
	return host != "" && port != "" && strings.Trim(port, "0123456789") == ""
}

// imgFullRef is ref as a registry reference: docker.io/library/busybox:latest.
func imgFullRef(ref string) (name.Reference, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %w", errBadReference, ref, err)
	}
	if !validRegistry(r.Context().RegistryStr()) {
		return nil, fmt.Errorf("%w: %q: registry %q", errBadReference, ref, r.Context().RegistryStr())
	}
	return r, nil
}

// isHexID reports whether s is lower-case hex, as image IDs are.
func isHexID(s string) bool {
	return s != "" && strings.Trim(s, "0123456789abcdef") == ""
}

// imgTags are the names Docker shows for img (RepoTags): its store names
// in the familiar form, each once; a name that is no reference (one
// `arrow image import` took from a path) as it is, so that it stays
// visible and removable. Names by digest are RepoDigests.
func imgTags(img store.Image) (tags, digests []string) {
	tags, digests = []string{}, []string{}
	for _, n := range img.Names {
		f, ok := imgFamiliar(n)
		if !ok {
			f = n
		}
		if strings.Contains(f, "@") {
			if !slices.Contains(digests, f) {
				digests = append(digests, f)
			}
			continue
		}
		if !slices.Contains(tags, f) {
			tags = append(tags, f)
		}
	}
	if d := imgPulledDigest(img); d != "" && !slices.Contains(digests, d) {
		digests = append(digests, d)
	}
	return tags, digests
}

// imgPulledDigest is the repository digest of an image last imported
// from a registry (its Source is then a whole reference, whose first
// component is the registry's host): repo@sha256:<manifest>, as dockerd
// lists a pulled image. "" for an image from an archive, a layout or
// apt, whose sources are transport:path.
func imgPulledDigest(img store.Image) string {
	host, _, ok := strings.Cut(img.Source, "/")
	if !ok || !strings.ContainsAny(host, ".:") && host != "localhost" || img.Manifest == "" {
		return ""
	}
	f, ok := imgFamiliar(img.Source)
	if !ok {
		return ""
	}
	repo := f
	if i := strings.LastIndexByte(f, '@'); i >= 0 {
		repo = f[:i]
	} else if i := strings.LastIndexByte(f, ':'); i > strings.LastIndexByte(f, '/') {
		repo = f[:i]
	}
	return repo + "@" + img.Manifest.String()
}

// imgSameName reports whether the store name n is the Docker name ref.
func imgSameName(n, ref string) bool {
	if n == ref {
		return true
	}
	a, ok1 := imgFamiliar(n)
	b, ok2 := imgFamiliar(ref)
	return ok1 && ok2 && a == b
}

// imgMatch says how a reference found an image.
type imgMatch int

const (
	// byName: ref is one of the image's names.
	byName imgMatch = iota + 1
	// byID: ref is the image's ID, "sha256:" ID or a unique prefix of it.
	byID
)

// imgFind finds ref among imgs as dockerd does: a name (exact, then as
// Docker normalises it), else an ID or a unique ID prefix. The error
// wraps store.ErrNotFound ("No such image", 404: the docker CLI then
// pulls) or store.ErrAmbiguous.
func imgFind(imgs []store.Image, ref string) (store.Image, imgMatch, error) {
	for _, img := range imgs {
		if slices.Contains(img.Names, ref) {
			return img, byName, nil
		}
	}
	if f, ok := imgFamiliar(ref); ok {
		for _, img := range imgs {
			if slices.ContainsFunc(img.Names, func(n string) bool { return imgSameName(n, ref) }) {
				return img, byName, nil
			}
		}
		// repo@sha256:... of a pulled image: its repository digest,
		// which finds it as an ID does (it is no name of the image).
		for _, img := range imgs {
			if strings.Contains(f, "@") && imgPulledDigest(img) == f {
				return img, byID, nil
			}
		}
	}
	id := strings.TrimPrefix(ref, "sha256:")
	if isHexID(id) && len(id) <= 64 {
		var found []store.Image
		for _, img := range imgs {
			if strings.HasPrefix(img.ID, id) {
				found = append(found, img)
			}
		}
		switch {
		case len(found) == 1:
			return found[0], byID, nil
		case len(found) > 1:
			return store.Image{}, 0, fmt.Errorf("%w: %s matches %d images", store.ErrAmbiguous, ref, len(found))
		}
	}
	return store.Image{}, 0, fmt.Errorf("%w: No such image: %s", store.ErrNotFound, ref)
}

// imgNamesFor returns the store names of img that are the Docker name
// ref (several when `arrow image` and the Docker API named it apart).
func imgNamesFor(img store.Image, ref string) []string {
	var out []string
	for _, n := range img.Names {
		if imgSameName(n, ref) {
			out = append(out, n)
		}
	}
	return out
}

// imgStoreName is the name the Docker API stores for the reference ref:
// its familiar form. A digest reference or an invalid one is refused.
func imgStoreName(ref string) (string, error) {
	f, ok := imgFamiliar(ref)
	if !ok {
		return "", fmt.Errorf("%w: %q is not a valid repository:tag", errBadReference, ref)
	}
	if strings.Contains(f, "@") {
		return "", fmt.Errorf("%w: %q: refusing to name an image by digest", errBadReference, ref)
	}
	return f, nil
}

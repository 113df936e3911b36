package dockerapi

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/arrowsys/arrow/image/oci"
)

// imagePull answers POST /images/create?fromImage=&tag= (docker pull)
// with the registry code of `arrow image pull` (image/oci), streaming
// Docker's JSON messages once the registry has answered (an import that
// fails then is an error in the stream). Arrow reports no per-layer
// progress: the store imports an image whole. The image is named in
// Docker's familiar form (busybox:latest); by digest, it gets that name
// (busybox@sha256:...), which Docker lists among RepoDigests.
func (s *Server) imagePull(w http.ResponseWriter, r *http.Request) {
	if err := s.b.MayChangeImages(r.Context()); err != nil {
		writeErr(w, err)
		return
	}
	q := r.URL.Query()
	if q.Get("fromSrc") != "" {
		lacks(w, "docker import (POST /images/create?fromSrc): Arrow imports images from docker save or OCI archives (docker load) and from registries (docker pull)")
		return
	}
	if q.Get("repo") != "" && q.Get("fromImage") == "" {
		lacks(w, "docker import (POST /images/create?repo): Arrow imports images from docker save or OCI archives (docker load) and from registries (docker pull)")
		return
	}
	if pl := q.Get("platform"); pl != "" && !isArrowPlatform(pl) {
		lacks(w, fmt.Sprintf("pulling for platform %q: Arrow's guests are linux/amd64", pl))
		return
	}
	ref, err := pullRef(q.Get("fromImage"), q.Get("tag"))
	if err != nil {
		imgWriteErr(w, err)
		return
	}
	kc, err := registryAuth(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	st, ok := s.openStore(w)
	if !ok {
		return
	}
	familiar, _ := imgFamiliar(ref.String())
	ctx := r.Context()
	// What the name meant before, to say whether the pull changed it.
	var before string
	if imgs, err := st.List(ctx); err == nil {
		if img, how, err := imgFind(imgs, familiar); err == nil && how == byName {
			before = img.ID
		}
	}
	// The registry is asked for the manifest before the stream starts,
	// as dockerd does: a registry that cannot be reached or lacks the
	// image is an error answer (docker pull prints it, docker-py raises
	// it), not a stream that ends in one.
	src, err := oci.FromRegistry(ctx, ref.Name(), oci.Options{Keychain: kc})
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, oci.ErrNotFound) {
			code = http.StatusNotFound
		}
		writeError(w, code, err.Error())
		return
	}
	defer src.Close()
	p := newProgressStream(w)
	p.status(ref.Identifier(), "Pulling from "+familiarRepo(ref))
	rec, err := st.Import(ctx, src, familiar)
	if err != nil {
		p.fail(http.StatusInternalServerError, err)
		return
	}
	if err := imgClaim(ctx, st, rec.ID, familiar); err != nil {
		p.fail(http.StatusInternalServerError, err)
		return
	}
	p.status("", "Digest: "+rec.Manifest.String())
	if before == rec.ID {
		p.status("", "Status: Image is up to date for "+familiar)
	} else {
		p.status("", "Status: Downloaded newer image for "+familiar)
	}
}

// pullRef is the reference fromImage and tag name: tag may be a tag or a
// digest, or empty for the one fromImage carries (else latest).
func pullRef(fromImage, tag string) (name.Reference, error) {
	if fromImage == "" {
		return nil, fmt.Errorf("%w: fromImage is empty: name the image to pull", errBadReference)
	}
	ref := fromImage
	switch {
	case tag == "":
	case strings.HasPrefix(tag, "sha256:"):
		ref += "@" + tag
	default:
		ref += ":" + tag
	}
	r, err := imgFullRef(ref)
	if err != nil {
		return nil, err
	}
	if repo := strings.TrimPrefix(r.Context().RepositoryStr(), "library/"); isHexID(repo) && len(repo) == 64 {
		return nil, fmt.Errorf("%w: %q: a 64-character hexadecimal repository is an image ID, not a name", errBadReference, ref)
	}
	return r, nil
}

// familiarRepo is ref's repository as docker pull names it: library/busybox.
func familiarRepo(ref name.Reference) string {
	if ref.Context().RegistryStr() == name.DefaultRegistry {
		return ref.Context().RepositoryStr()
	}
	return ref.Context().Name()
}

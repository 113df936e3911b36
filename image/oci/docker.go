package oci

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// Bounds on a `docker save` tarball, which is user input. The archive
// library that reads it loads manifest.json and the config whole, so
// checkDockerArchive holds them to maxJSONBytes before it is let near
// them.
const (
	// maxDockerImages bounds the images of one tarball.
	maxDockerImages = 256
	// maxDockerLayers bounds one image's layers (Docker itself stops at
	// 125).
	maxDockerLayers = 1024
	// maxTarMembers bounds the members scanned.
	maxTarMembers = 100000
	// maxTarLinks bounds the links followed to find a member.
	maxTarLinks = 16
)

// dockerImage is one entry of a docker-save manifest.json.
type dockerImage struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// parseDockerManifest decodes a docker-save manifest.json and checks its
// shape: a bounded number of images, each naming its config and a bounded
// number of layers by archive member names that stay inside the archive.
func parseDockerManifest(raw []byte) ([]dockerImage, error) {
	if len(raw) > maxJSONBytes {
		return nil, fmt.Errorf("manifest.json: %w", errTooLarge)
	}
	var m []dockerImage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("manifest.json: %w", err)
	}
	switch {
	case len(m) == 0:
		return nil, errors.New("manifest.json lists no image")
	case len(m) > maxDockerImages:
		return nil, fmt.Errorf("manifest.json lists %d images, more than %d", len(m), maxDockerImages)
	}
	for i, img := range m {
		if err := checkMemberName(img.Config); err != nil {
			return nil, fmt.Errorf("manifest.json: image %d: config: %w", i, err)
		}
		if len(img.Layers) > maxDockerLayers {
			return nil, fmt.Errorf("manifest.json: image %d has %d layers, more than %d", i, len(img.Layers), maxDockerLayers)
		}
		for _, l := range img.Layers {
			if err := checkMemberName(l); err != nil {
				return nil, fmt.Errorf("manifest.json: image %d: layer: %w", i, err)
			}
		}
	}
	return m, nil
}

// checkMemberName checks a name manifest.json gives for an archive member.
func checkMemberName(n string) error {
	c := path.Clean(n)
	switch {
	case n == "":
		return errors.New("empty member name")
	case len(n) > 4096 || strings.ContainsRune(n, 0):
		return fmt.Errorf("bad member name %q", n)
	case path.IsAbs(n) || c == ".." || strings.HasPrefix(c, "../"):
		return fmt.Errorf("member name %q leaves the archive", n)
	}
	return nil
}

// tarMember is what the scan of an archive keeps of a member.
type tarMember struct {
	typ  byte
	size int64
	link string
}

// checkDockerArchive reads the docker-save tarball r, as the archive
// library will, and checks that manifest.json and the configs it names
// are within maxJSONBytes and that every layer it names is there, so
// that a hostile tarball fails here with a clear error instead of making
// the library read a huge document whole.
func checkDockerArchive(ctx context.Context, r io.Reader) error {
	tr := tar.NewReader(r)
	members := map[string]tarMember{}
	var manifest []byte
	for n := 0; ; n++ {
		if n >= maxTarMembers {
			return fmt.Errorf("more than %d archive members", maxTarMembers)
		}
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		name := path.Clean(h.Name)
		if _, dup := members[name]; dup {
			continue // the library takes the first of the name
		}
		members[name] = tarMember{typ: h.Typeflag, size: h.Size, link: h.Linkname}
		if name == "manifest.json" && h.Typeflag == tar.TypeReg {
			if h.Size > maxJSONBytes {
				return fmt.Errorf("manifest.json: %w", errTooLarge)
			}
			if manifest, err = io.ReadAll(tr); err != nil {
				return fmt.Errorf("manifest.json: %w", err)
			}
		}
	}
	mf, err := resolveMember(members, "manifest.json")
	if err != nil {
		return err
	}
	if mf != "manifest.json" {
		return errors.New("manifest.json is a link")
	}
	images, err := parseDockerManifest(manifest)
	if err != nil {
		return err
	}
	for i, img := range images {
		c, err := resolveMember(members, img.Config)
		if err != nil {
			return fmt.Errorf("image %d: config: %w", i, err)
		}
		if members[c].size > maxJSONBytes {
			return fmt.Errorf("image %d: config %s: %w", i, img.Config, errTooLarge)
		}
		for _, l := range img.Layers {
			if _, err := resolveMember(members, l); err != nil {
				return fmt.Errorf("image %d: layer: %w", i, err)
			}
		}
	}
	return nil
}

// resolveMember follows links from the member named n as the archive
// library does (a link's target taken relative to the link's directory)
// to a regular file, and returns that file's name.
func resolveMember(members map[string]tarMember, n string) (string, error) {
	name := path.Clean(n)
	for range maxTarLinks {
		m, ok := members[name]
		switch {
		case !ok:
			return "", fmt.Errorf("%s: not in the archive", n)
		case m.typ == tar.TypeReg:
			return name, nil
		case m.typ == tar.TypeSymlink || m.typ == tar.TypeLink:
			name = path.Join(path.Dir(name), path.Clean(m.link))
		default:
			return "", fmt.Errorf("%s: not a regular file", n)
		}
	}
	return "", fmt.Errorf("%s: more than %d links", n, maxTarLinks)
}

// checkDockerFile is checkDockerArchive on the file p.
func checkDockerFile(ctx context.Context, p string) error {
	f, err := openRegular(p, true)
	if err != nil {
		return err
	}
	defer f.Close()
	return checkDockerArchive(ctx, f)
}

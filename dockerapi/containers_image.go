package dockerapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/arrowsys/arrow/image/store"
)

// imageCandidates are the names the store may know ref by: Docker
// normalises "busybox" to docker.io/library/busybox:latest, while a
// docker-save archive names it busybox:latest and `arrow image pull` by
// the full reference. The first that the store has wins.
func imageCandidates(ref string) []string {
	if strings.HasPrefix(ref, "sha256:") {
		return []string{ref}
	}
	name, suffix := ref, ""
	if i := strings.IndexByte(name, '@'); i >= 0 {
		name, suffix = name[:i], name[i:]
	} else if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		name, suffix = name[:i], name[i:]
	}
	bases := []string{name}
	short := name
	for _, p := range []string{"docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/"} {
		if s, ok := strings.CutPrefix(name, p); ok {
			short = s
			break
		}
	}
	bases = append(bases, short)
	if !strings.Contains(short, "/") {
		bases = append(bases, "docker.io/library/"+short)
	} else if first, _, _ := strings.Cut(short, "/"); !strings.ContainsAny(first, ".:") && first != "localhost" {
		bases = append(bases, "docker.io/"+short)
	}
	out := []string{ref}
	for _, b := range bases {
		cs := []string{b + suffix}
		if suffix == "" {
			cs = append(cs, b+":latest")
		}
		for _, c := range cs {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	return out
}

// lookupImage finds ref in the image store as Docker would name it; its
// error wraps daemon.ErrNotFound (404, "No such image", which makes the
// docker CLI pull and create again) when the store lacks it.
func (s *Server) lookupImage(ctx context.Context, ref string) (imageInfo, error) {
	if s.opts.Images == nil {
		// No store to ask (a daemon without images): the daemon
		// resolves the name itself.
		return imageInfo{Ref: ref}, nil
	}
	st, err := s.opts.Images()
	if err != nil {
		return imageInfo{}, fmt.Errorf("image store: %w", err)
	}
	for _, c := range imageCandidates(ref) {
		img, err := st.Get(ctx, c)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return imageInfo{}, invalidf("image %s: %v", ref, err)
		}
		info := imageInfo{ID: img.ID, Ref: c}
		if strings.HasPrefix(c, "sha256:") || !slices.Contains(img.Names, c) {
			info.Ref = img.ID // an ID (prefix): pin it
		}
		for p := range img.Config.ExposedPorts {
			if !strings.Contains(p, "/") {
				p += "/tcp"
			}
			info.Exposed = append(info.Exposed, p)
		}
		slices.Sort(info.Exposed)
		return info, nil
	}
	full := ref
	if !strings.ContainsAny(ref, "@") && strings.LastIndexByte(ref, ':') <= strings.LastIndexByte(ref, '/') {
		full += ":latest"
	}
	return imageInfo{}, notFoundf("No such image: %s", full)
}

// imageOf finds the image a container runs, for inspect and list: its ID
// ("sha256:..."), or "" when the store has it no more.
func (s *Server) imageOf(ctx context.Context, st *store.Store, ref string) (id string, exposed []string) {
	if st == nil || ref == "" {
		return "", nil
	}
	img, err := st.Get(ctx, ref)
	if err != nil {
		return "", nil
	}
	for p := range img.Config.ExposedPorts {
		if !strings.Contains(p, "/") {
			p += "/tcp"
		}
		exposed = append(exposed, p)
	}
	return "sha256:" + img.ID, exposed
}

// openImages opens the image store for a request, or nil when there is
// none.
func (s *Server) openImages() *store.Store {
	if s.opts.Images == nil {
		return nil
	}
	st, err := s.opts.Images()
	if err != nil {
		return nil
	}
	return st
}

// freePorts picks n distinct free host ports of proto on ip, within
// [lo, hi] when lo > 0, as dockerd does for a binding without a host
// port: each is bound, then all are released together, so that one
// request never gets a port twice. (Another process may take one before
// the arrow binds it; the start then fails and says which.)
func freePorts(proto, ip string, lo, hi, n int) ([]int, error) {
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	bind := func(port int) (int, error) {
		addr := net.JoinHostPort(ip, strconv.Itoa(port))
		if proto == "udp" {
			c, err := net.ListenPacket("udp", addr)
			if err != nil {
				return 0, err
			}
			closers = append(closers, func() { c.Close() })
			return c.LocalAddr().(*net.UDPAddr).Port, nil
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return 0, err
		}
		closers = append(closers, func() { l.Close() })
		return l.Addr().(*net.TCPAddr).Port, nil
	}
	var out []int
	if lo == 0 {
		for range n {
			p, err := bind(0)
			if err != nil {
				return nil, err
			}
			out = append(out, p)
		}
		return out, nil
	}
	for p := lo; p <= hi && len(out) < n; p++ {
		if _, err := bind(p); err == nil {
			out = append(out, p)
		}
	}
	if len(out) < n {
		return nil, fmt.Errorf("no free %s port in %d-%d on %q", proto, lo, hi, ip)
	}
	return out, nil
}

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

// lookupImage finds ref in the image store as Docker names images (see
// imgFind: busybox is busybox:latest and docker.io/library/busybox); its
// error wraps daemon.ErrNotFound (404, "No such image", on which the
// docker CLI pulls and creates again) when the store lacks it. The
// daemon is handed the store's own name for it (or its ID, when the
// reference was one), which it resolves exactly.
func (s *Server) lookupImage(ctx context.Context, ref string) (imageInfo, error) {
	if s.opts.Images == nil {
		// No store to ask: the daemon resolves the name itself.
		return imageInfo{Ref: ref}, nil
	}
	st, err := s.opts.Images()
	if err != nil {
		return imageInfo{}, fmt.Errorf("image store: %w", err)
	}
	imgs, err := st.List(ctx)
	if err != nil {
		return imageInfo{}, fmt.Errorf("image store: %w", err)
	}
	img, how, err := imgFind(imgs, ref)
	switch {
	case errors.Is(err, store.ErrNotFound):
		full := ref
		if f, ok := imgFamiliar(ref); ok {
			full = f
		}
		return imageInfo{}, notFoundf("No such image: %s", full)
	case err != nil:
		return imageInfo{}, invalidf("image %s: %v", ref, err)
	}
	info := imageInfo{ID: img.ID, Ref: img.ID}
	if how == byName {
		if names := imgNamesFor(img, ref); len(names) > 0 {
			info.Ref = names[0]
		} else if slices.Contains(img.Names, ref) {
			info.Ref = ref
		}
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

// imageOf finds the image a container runs (ref, as the daemon was given
// it: a store name or an ID), for inspect and list; the zero value when
// the store has it no more.
func (s *Server) imageOf(ctx context.Context, st *store.Store, ref string) imageDefaults {
	if st == nil || ref == "" {
		return imageDefaults{}
	}
	img, err := st.Get(ctx, ref)
	if err != nil {
		return imageDefaults{}
	}
	return imageDefaults{ID: "sha256:" + img.ID, Config: img.Config}
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

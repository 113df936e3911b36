package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"
)

// Listen listens on the API socket at path: mode 0660, group "arrow" when
// that group exists, so that its members may drive arrowd without being
// root. They are not root through it: the host paths they may name are
// limited (see [HostPathPolicy]), and Serve tells them from root by their
// credentials. A socket file left by a dead daemon is replaced; a live
// daemon's is not.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("socket directory: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("%s: %w", path, errLocked)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("socket mode: %w", err)
	}
	if g, err := user.LookupGroup("arrow"); err == nil {
		if gid, err := strconv.Atoi(g.Gid); err == nil {
			_ = os.Chown(path, -1, gid)
		}
	}
	return ln, nil
}

// Serve serves the API on ln until ctx ends, then stops accepting and
// waits briefly for requests in flight. Streams (logs -f, events, attach)
// are cut.
func (d *Daemon) Serve(ctx context.Context, ln net.Listener) error {
	return d.ServeHandler(ctx, ln, d.Handler())
}

// ServeHandler serves h on ln as Serve serves the daemon's API: with the
// peer's credentials in every request's context, so that the same
// authorization rules hold (the Docker Engine API of package dockerapi is
// served this way on its own socket).
func (d *Daemon) ServeHandler(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return d.ctx },
		// Who is asking decides which host paths a request may name.
		ConnContext: connContext,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	d.cancel() // ends streams, whose handlers watch the daemon's context
	_ = srv.Shutdown(sctx)
	return nil
}

// ListenTLS listens on a TCP address for the API with mutual TLS: the
// daemon presents certFile/keyFile and accepts only clients whose
// certificate caFile signed. The API can start VMs that read host files,
// so it is never offered over TCP without client authentication.
func ListenTLS(addr, certFile, keyFile, caFile string) (net.Listener, error) {
	if certFile == "" || keyFile == "" || caFile == "" {
		return nil, errors.New("a TCP listener needs a certificate, its key and a client CA (mutual TLS)")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate: %w", err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("client CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("client CA %s: no PEM certificate", caFile)
	}
	return tls.Listen("tcp", addr, &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	})
}

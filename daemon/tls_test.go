package daemon

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/arrowsys/arrow/api/client"
)

// testCert issues a certificate signed by parent (self-signed when nil).
func testCert(t *testing.T, name string, isCA bool, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, []byte, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  isCA,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	kb, _ := x509.MarshalECPrivateKey(key)
	return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

func TestTLSListenerRequiresClientCertificate(t *testing.T) {
	dir := t.TempDir()
	ca, caKey, caPEM, _ := testCert(t, "arrow test CA", true, nil, nil)
	_, _, srvPEM, srvKey := testCert(t, "arrowd", false, ca, caKey)
	_, _, cliPEM, cliKey := testCert(t, "client", false, ca, caKey)
	_, _, strangerPEM, strangerKey := testCert(t, "stranger", false, nil, nil)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ln, err := ListenTLS("127.0.0.1:0", write("srv.pem", srvPEM), write("srv.key", srvKey), write("ca.pem", caPEM))
	if err != nil {
		t.Fatal(err)
	}
	run, err := os.MkdirTemp("", "ad")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(run)
	d, err := New(Config{Root: t.TempDir(), RunDir: run, Exe: "/nonexistent"})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = d.Serve(ctx, ln) }()

	roots := x509.NewCertPool()
	roots.AddCert(ca)
	pair := func(c, k []byte) []tls.Certificate {
		kp, err := tls.X509KeyPair(c, k)
		if err != nil {
			t.Fatal(err)
		}
		return []tls.Certificate{kp}
	}
	addr := ln.Addr().String()
	for _, tc := range []struct {
		name  string
		certs []tls.Certificate
		ok    bool
	}{
		{"client signed by the CA", pair(cliPEM, cliKey), true},
		{"no client certificate", nil, false},
		{"certificate of another CA", pair(strangerPEM, strangerKey), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := client.NewTLS(addr, &tls.Config{RootCAs: roots, Certificates: tc.certs, ServerName: "127.0.0.1"})
			cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer ccancel()
			_, err := c.Info(cctx)
			if (err == nil) != tc.ok {
				t.Fatalf("Info: %v, want success %v", err, tc.ok)
			}
			if !tc.ok {
				return
			}
			// Attach, which takes over the connection, goes over TLS
			// too: the daemon answers that there is no such arrow.
			if _, _, err := c.Attach(cctx, "nope"); !client.IsNotFound(err) {
				t.Fatalf("Attach over TLS: %v, want the daemon's 404", err)
			}
		})
	}
	if _, err := ListenTLS("127.0.0.1:0", "", "", ""); err == nil {
		t.Error("a TCP listener without certificates was allowed")
	}
}

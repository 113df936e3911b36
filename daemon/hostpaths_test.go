package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/api/client"
)

// The uid and gid the tests play an unprivileged socket-group member with.
const (
	nobodyUID = 65534
	nobodyGID = 65534
	// otherGID is a group nobody is not in unless the test says so.
	otherGID = 64999
)

var (
	tlsPeer    = &Peer{}
	rootPeer   = &Peer{Local: true}
	nobodyPeer = &Peer{Local: true, UID: nobodyUID, GID: nobodyGID}
)

// hostTree is a directory tree the policy tests name paths in. Its top is
// searchable by everyone, so that an unprivileged peer gets as far as the
// modes under test.
type hostTree struct{ top string }

func newHostTree(t testing.TB) hostTree {
	t.Helper()
	top, err := os.MkdirTemp("", "hostpaths")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	if err := os.Chmod(top, 0o755); err != nil {
		t.Fatal(err)
	}
	top, err = filepath.EvalSymlinks(top)
	if err != nil {
		t.Fatal(err)
	}
	h := hostTree{top}
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{
		{"data", 0o755},
		{"data/pub", 0o755},
		{"data/pub/sub", 0o755},
		{"data/writable", 0o777},
		{"data/private", 0o700},
		{"data/group", 0o770},
		{"data2", 0o755},
		{"secret", 0o755},
		{"data/incl", 0o755},
	} {
		if err := os.Mkdir(h.p(d.path), d.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(h.p(d.path), d.mode); err != nil { // past the umask
			t.Fatal(err)
		}
	}
	if err := os.Chown(h.p("data/group"), 0, otherGID); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{
		{"data/pub/file", 0o644},
		{"data/pub/private-file", 0o600},
		{"secret/shadow", 0o600},
		{"secret/public", 0o644},
		{"data/incl/ok", 0o644},
	} {
		if err := os.WriteFile(h.p(f.path), []byte(f.path), f.mode); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range []struct{ path, target string }{
		{"data/link-out", h.p("secret")},
		{"data/link-out-file", h.p("secret/shadow")},
		{"data/link-in", "pub/sub"},
		{"data/dotdot-out", "../secret"},
		{"alias", "data"},
		{"data/incl/shadow-link", h.p("secret/shadow")},
	} {
		if err := os.Symlink(l.target, h.p(l.path)); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

func (h hostTree) p(rel string) string { return filepath.Join(h.top, rel) }

func (h hostTree) policy() HostPathPolicy {
	return HostPathPolicy{Allow: []string{h.p("data")}, Setting: "the test's allow list"}
}

func TestWithin(t *testing.T) {
	for _, tc := range []struct {
		p, dir string
		want   bool
	}{
		{"/data", "/data", true},
		{"/data/x", "/data", true},
		{"/data/x/y", "/data", true},
		{"/data2", "/data", false},
		{"/data2/x", "/data", false},
		{"/dat", "/data", false},
		{"/", "/data", false},
		{"/etc", "/", true},
		{"/", "/", true},
	} {
		if got := within(tc.p, tc.dir); got != tc.want {
			t.Errorf("within(%q, %q) = %v, want %v", tc.p, tc.dir, got, tc.want)
		}
	}
}

// TestHostPathMatcher names paths as a client would, against an allow list
// of one directory: written inside or outside it, with "..", through
// symlinks that stay in or lead out.
func TestHostPathMatcher(t *testing.T) {
	h := newHostTree(t)
	pol := h.policy()
	for _, tc := range []struct {
		name     string
		path     string
		resolved string // "" when refused
		why      string // in the refusal
	}{
		{"the allowed directory", h.p("data"), h.p("data"), ""},
		{"below it", h.p("data/pub/sub"), h.p("data/pub/sub"), ""},
		{"a file below it", h.p("data/pub/file"), h.p("data/pub/file"), ""},
		{"trailing slash", h.p("data/pub") + "/", "", "not a clean path"},
		{"double slashes", h.top + "//data//pub", "", "not a clean path"},
		{"dot-dot staying inside", h.top + "/data/pub/sub/../sub", "", "not a clean path"},
		{"dot-dot after a symlink out", h.top + "/data/link-out/..", "", "not a clean path"},
		{"a dot component", h.top + "/data/./pub", "", "not a clean path"},
		{"symlink staying inside", h.p("data/link-in"), h.p("data/pub/sub"), ""},
		{"a sibling with the same prefix", h.p("data2"), "", "outside the allowed host paths"},
		{"the parent", h.top, "", "outside the allowed host paths"},
		{"dot-dot out", h.top + "/data/../secret", "", "not a clean path"},
		{"dot-dot out, deeper", h.top + "/data/pub/sub/../../../secret/shadow", "", "not a clean path"},
		{"symlink out", h.p("data/link-out"), "", "resolves to " + h.p("secret")},
		{"through a symlink out", h.p("data/link-out/shadow"), "", "resolves to " + h.p("secret/shadow")},
		{"symlink to a file out", h.p("data/link-out-file"), "", "outside the allowed host paths"},
		{"relative symlink with dot-dot out", h.p("data/dotdot-out/public"), "", "outside the allowed host paths"},
		{"symlink to the list from outside", h.p("alias/pub"), "", "outside the allowed host paths"},
		{"relative", "data/pub", "", "not an absolute path"},
		{"dot", ".", "", "not an absolute path"},
		{"empty", "", "", "not an absolute path"},
		{"NUL", h.p("data/pub") + "\x00", "", "not an absolute path"},
		{"missing", h.p("data/nope"), "", "cannot be checked"},
		{"system file", "/etc/shadow", "", "outside the allowed host paths"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := pol.resolve(tlsPeer, "volume source", tc.path)
			if tc.resolved != "" {
				if err != nil || r != tc.resolved {
					t.Fatalf("resolve(%q) = %q, %v; want %q", tc.path, r, err, tc.resolved)
				}
				return
			}
			if err == nil {
				t.Fatalf("resolve(%q) = %q: allowed, want refused", tc.path, r)
			}
			if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), tc.why) || !strings.Contains(err.Error(), "the test's allow list") {
				t.Fatalf("resolve(%q): %v; want ErrForbidden saying %q and naming the setting", tc.path, err, tc.why)
			}
		})
	}
}

// TestHostPathAllowEntries: an allow entry that is a symlink allows what it
// leads to, one that does not exist allows nothing, "/" allows everything.
func TestHostPathAllowEntries(t *testing.T) {
	h := newHostTree(t)
	alias := HostPathPolicy{Allow: []string{h.p("alias")}}
	if r, err := alias.resolve(tlsPeer, "include", h.p("alias/pub/file")); err != nil || r != h.p("data/pub/file") {
		t.Errorf("through an allowed symlink: %q, %v", r, err)
	}
	missing := HostPathPolicy{Allow: []string{h.p("gone")}}
	if err := os.Symlink(h.p("secret"), h.p("gone-link")); err != nil {
		t.Fatal(err)
	}
	if _, err := missing.resolve(tlsPeer, "include", h.p("gone")); err == nil {
		t.Error("a missing allow entry allowed itself")
	}
	all := HostPathPolicy{Allow: []string{"/"}}
	if _, err := all.resolve(tlsPeer, "include", h.p("secret/shadow")); err != nil {
		t.Errorf("allow list /: %v", err)
	}
	var none HostPathPolicy
	if _, err := none.resolve(tlsPeer, "include", h.p("data/pub/file")); !errors.Is(err, ErrForbidden) {
		t.Errorf("empty policy: %v, want refused", err)
	}
}

// TestHostPathCheckFields: every field of a config that names a host path
// is checked, and root (or the daemon's own user) is not limited.
func TestHostPathCheckFields(t *testing.T) {
	h := newHostTree(t)
	pol := h.policy()
	out := h.p("secret/public")
	outDir := h.p("secret")
	in := h.p("data/pub/file")
	inDir := h.p("data/pub")
	img := func(ref string) api.Config { return api.Config{Image: ref} }
	for _, tc := range []struct {
		name    string
		cfg     api.Config
		allowed bool
		field   string
	}{
		{"volume inside", api.Config{Image: "busybox", Volumes: []api.Volume{{Source: inDir, Target: "/x", ReadOnly: true}}}, true, ""},
		{"volume outside", api.Config{Image: "busybox", Volumes: []api.Volume{{Source: inDir, Target: "/x"}, {Source: outDir, Target: "/y"}}}, false, "volume source"},
		{"rootfs inside", api.Config{RootFS: inDir, Program: "/bin/sh"}, true, ""},
		{"rootfs outside", api.Config{RootFS: outDir, Program: "/bin/sh"}, false, "rootfs"},
		{"kernel inside", api.Config{Image: "busybox", Kernel: in}, true, ""},
		{"kernel outside", api.Config{Image: "busybox", Kernel: out}, false, "kernel"},
		{"registry image", img("busybox:latest"), true, ""},
		{"image path inside", img(inDir), true, ""},
		{"image path outside", img(outDir), false, "image"},
		{"image relative path", img("./layout"), false, "image"},
		{"oci layout inside", img("oci:" + inDir), true, ""},
		{"oci layout inside with tag", img("oci:" + inDir + ":v1"), true, ""},
		{"oci layout outside", img("oci:" + outDir), false, "image"},
		{"oci layout outside behind a tag", img("oci:" + outDir + ":" + inDir), false, "image"},
		{"oci layout through a symlink and dot-dot behind a tag", img("oci:" + h.top + "/data/link-out/..:" + inDir), false, "image"},
		{"oci archive outside", img("oci-archive:" + out), false, "image"},
		{"docker archive outside", img("docker-archive:" + out + ":app:1"), false, "image"},
		{"docker archive inside", img("docker-archive:" + in), true, ""},
		{"include outside", api.Config{Program: "/bin/true", Includes: []string{out}}, false, "include"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := pol.Check(context.Background(), tlsPeer, 1000, &tc.cfg)
			if tc.allowed != (err == nil) {
				t.Fatalf("TLS client: %v, want allowed %v", err, tc.allowed)
			}
			if err != nil && (!errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), tc.field)) {
				t.Fatalf("TLS client: %v, want ErrForbidden naming %s", err, tc.field)
			}
			if err := pol.Check(context.Background(), rootPeer, 1000, &tc.cfg); err != nil {
				t.Fatalf("root: %v, want allowed", err)
			}
			self := &Peer{Local: true, UID: 1000, GID: 1000}
			if err := pol.Check(context.Background(), self, 1000, &tc.cfg); err != nil {
				t.Fatalf("the daemon's own user: %v, want allowed", err)
			}
			if err := pol.Check(context.Background(), nil, 1000, &tc.cfg); tc.allowed != (err == nil) {
				t.Fatalf("unidentified client: %v, want allowed %v", err, tc.allowed)
			}
		})
	}
}

// TestHostPathPeerAccess plays a member of the socket's group (nobody):
// beyond the allow list, it may name only what it could use itself.
func TestHostPathPeerAccess(t *testing.T) {
	h := newHostTree(t)
	pol := h.policy()
	inGroup := &Peer{Local: true, UID: nobodyUID, GID: nobodyGID, Groups: []uint32{otherGID}}
	vol := func(src string, ro bool) api.Config {
		return api.Config{Image: "busybox", Volumes: []api.Volume{{Source: src, Target: "/v", ReadOnly: ro}}}
	}
	for _, tc := range []struct {
		name    string
		who     *Peer
		cfg     api.Config
		allowed bool
		why     string
	}{
		{"read-only volume of a public directory", nobodyPeer, vol(h.p("data/pub"), true), true, ""},
		{"read-write volume of a directory it cannot write", nobodyPeer, vol(h.p("data/pub"), false), false, "not readable and searchable and writable by uid 65534"},
		{"read-write volume of a directory it can write", nobodyPeer, vol(h.p("data/writable"), false), true, ""},
		{"volume of a private directory", nobodyPeer, vol(h.p("data/private"), true), false, "not readable and searchable by uid 65534"},
		{"volume of a group directory, not in the group", nobodyPeer, vol(h.p("data/group"), false), false, "by uid 65534"},
		{"volume of a group directory, in the group", inGroup, vol(h.p("data/group"), false), true, ""},
		{"kernel it can read", nobodyPeer, api.Config{Image: "x", Kernel: h.p("data/pub/file")}, true, ""},
		{"kernel it cannot read", nobodyPeer, api.Config{Image: "x", Kernel: h.p("data/pub/private-file")}, false, "not readable by uid 65534"},
		{"outside the list, though readable", nobodyPeer, vol(h.p("secret"), true), false, "outside the allowed host paths"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := pol.Check(context.Background(), tc.who, 0, &tc.cfg)
			if tc.allowed != (err == nil) {
				t.Fatalf("%v, want allowed %v", err, tc.allowed)
			}
			if err != nil && (!errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), tc.why)) {
				t.Fatalf("%v, want ErrForbidden saying %q", err, tc.why)
			}
		})
	}
	// The checks ran on threads with nobody's credentials; none of them
	// may be back in the runtime's pool. Every thread the daemon's
	// goroutines run on still has root's.
	const n = 32
	errc := make(chan error, n)
	for range n {
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			uid, _ := unix.SetfsuidRetUid(-1)
			if uid != 0 {
				errc <- fmt.Errorf("a thread with fsuid %d", uid)
				return
			}
			_, err := os.ReadFile(h.p("secret/shadow"))
			errc <- err
		}()
	}
	for range n {
		if err := <-errc; err != nil {
			t.Fatalf("after the checks: %v", err)
		}
	}
}

// TestHostPathProgram: a program run copies host files into the guest,
// the program's closure and included directories' contents. None may be
// a file the client could not read.
func TestHostPathProgram(t *testing.T) {
	h := newHostTree(t)
	pol := h.policy()
	truePath, err := filepath.EvalSymlinks("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(truePath)
	if err != nil {
		t.Fatal(err)
	}
	// A program root keeps to itself: searchable directory, file 0700.
	if err := os.WriteFile(h.p("secret/prog"), b, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		who     *Peer
		cfg     api.Config
		allowed bool
		why     string
	}{
		{"system program, TLS client", tlsPeer, api.Config{Program: "/bin/true"}, true, ""},
		{"system program, socket peer", nobodyPeer, api.Config{Program: "/bin/true"}, true, ""},
		{"system program by name", nobodyPeer, api.Config{Program: "true"}, true, ""},
		{"root's private program, TLS client", tlsPeer, api.Config{Program: h.p("secret/prog")}, false, "not readable by every user"},
		{"root's private program, socket peer", nobodyPeer, api.Config{Program: h.p("secret/prog")}, false, "not readable by uid 65534"},
		{"root's private program, root", rootPeer, api.Config{Program: h.p("secret/prog")}, true, ""},
		{"relative program", nobodyPeer, api.Config{Program: "bin/true"}, false, "not an absolute path"},
		{"included directory, TLS client", tlsPeer, api.Config{Program: "/bin/true", Includes: []string{h.p("data/pub")}}, true, ""},
		{"included directory with a file it cannot read", nobodyPeer, api.Config{Program: "/bin/true", Includes: []string{h.p("data/pub")}}, false, "private-file"},
		{"included directory linking to a secret", nobodyPeer, api.Config{Program: "/bin/true", Includes: []string{h.p("data/incl")}}, false, "not readable by uid 65534"},
		{"included directory linking to a secret, TLS client", tlsPeer, api.Config{Program: "/bin/true", Includes: []string{h.p("data/incl")}}, false, "not readable by every user"},
		{"program in a rootfs is not a host path", nobodyPeer, api.Config{RootFS: h.p("data/pub"), Program: "/secret/prog"}, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := pol.Check(context.Background(), tc.who, 4242, &tc.cfg)
			if tc.allowed != (err == nil) {
				t.Fatalf("%v, want allowed %v", err, tc.allowed)
			}
			if err != nil && (!errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), tc.why)) {
				t.Fatalf("%v, want ErrForbidden saying %q", err, tc.why)
			}
		})
	}
}

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want []string
		err  string
	}{
		{"empty object", `{}`, nil, ""},
		{"two paths", `{"allow_host_paths": ["/srv/arrow", "/home/shared"]}`, []string{"/srv/arrow", "/home/shared"}, ""},
		{"unknown field", `{"allow_host_path": ["/srv"]}`, nil, "unknown field"},
		{"relative path", `{"allow_host_paths": ["srv"]}`, nil, "want an absolute path"},
		{"empty path", `{"allow_host_paths": [""]}`, nil, "want an absolute path"},
		{"NUL", `{"allow_host_paths": ["/srv\u0000"]}`, nil, "want an absolute path"},
		{"two values", `{} {}`, nil, "more than one"},
		{"not JSON", `allow_host_paths: [/srv]`, nil, "malformed"},
		{"empty file", ``, nil, "malformed"},
		{"wrong type", `{"allow_host_paths": "/srv"}`, nil, "malformed"},
		{"too long", `{"allow_host_paths": ["/` + strings.Repeat("a", maxConfigBytes) + `"]}`, nil, "longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseConfig: %v, want an error saying %q", err, tc.err)
				}
				return
			}
			if err != nil || fmt.Sprint(c.AllowHostPaths) != fmt.Sprint(tc.want) {
				t.Fatalf("ParseConfig = %v, %v; want %v", c.AllowHostPaths, err, tc.want)
			}
		})
	}
	dir := t.TempDir()
	if c, err := LoadConfigFile(filepath.Join(dir, "none.json"), false); err != nil || len(c.AllowHostPaths) != 0 {
		t.Errorf("missing default file: %v, %v; want an empty configuration", c, err)
	}
	if _, err := LoadConfigFile(filepath.Join(dir, "none.json"), true); err == nil {
		t.Error("a missing file named explicitly was accepted")
	}
}

// dialAs connects to the Unix socket at path from a thread running with
// uid and gid (and no supplementary groups), as a process of that user
// would: SO_PEERCRED records the credentials of the thread that connects.
// The thread is left to die with its goroutine.
func dialAs(t *testing.T, path string, uid, gid int) net.Conn {
	t.Helper()
	type result struct {
		c   net.Conn
		err error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		// No unlock: the thread must not serve other goroutines.
		fail := func(what string, err error) { res <- result{nil, fmt.Errorf("%s: %w", what, err)} }
		if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, 0, 0, 0); e != 0 {
			fail("setgroups", e)
			return
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(gid), uintptr(gid), uintptr(gid)); e != 0 {
			fail("setresgid", e)
			return
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)); e != 0 {
			fail("setresuid", e)
			return
		}
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			fail("socket", err)
			return
		}
		if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
			unix.Close(fd)
			fail("connect", err)
			return
		}
		f := os.NewFile(uintptr(fd), "api")
		c, err := net.FileConn(f)
		f.Close()
		res <- result{c, err}
	}()
	r := <-res
	if r.err != nil {
		t.Fatalf("connect as uid %d: %v", uid, r.err)
	}
	return r.c
}

// createOver sends a create request over conn and returns the status and
// the error message (if any).
func createOver(t *testing.T, conn net.Conn, req api.CreateRequest) (int, string) {
	t.Helper()
	used := false
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			if used {
				return nil, errors.New("one connection only")
			}
			used = true
			return conn, nil
		},
	}}
	b, _ := json.Marshal(req)
	resp, err := hc.Post("http://arrowd/v1/arrows", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var e api.Error
	_ = json.Unmarshal(body, &e)
	return resp.StatusCode, e.Message
}

// TestHostPathsOverTheSocket serves the API on a real socket and connects
// as root and as nobody: root may mount anything, nobody only within the
// allow list, and what is refused is refused with 403 before anything is
// created. A TLS client is held to the list too.
func TestHostPathsOverTheSocket(t *testing.T) {
	h := newHostTree(t)
	runDir, err := os.MkdirTemp("", "ad")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(runDir)
	if err := os.Chmod(runDir, 0o755); err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{Root: t.TempDir(), RunDir: runDir, Exe: "/nonexistent", HostPaths: h.policy()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	sock := filepath.Join(runDir, "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = d.Serve(ctx, ln) }()

	vol := func(name, src string) api.CreateRequest {
		return api.CreateRequest{Name: name, Config: api.Config{Image: "busybox", Volumes: []api.Volume{{Source: src, Target: "/v", ReadOnly: true}}}}
	}
	for _, tc := range []struct {
		name string
		uid  int
		req  api.CreateRequest
		code int
		msg  string
	}{
		{"root, outside the list", 0, vol("root-out", h.p("secret")), http.StatusCreated, ""},
		{"nobody, outside the list", nobodyUID, vol("nobody-out", h.p("secret")), http.StatusForbidden, "outside the allowed host paths"},
		{"nobody, symlink out of the list", nobodyUID, vol("nobody-link", h.p("data/link-out")), http.StatusForbidden, "resolves to"},
		{"nobody, /etc", nobodyUID, api.CreateRequest{Name: "nobody-etc", Config: api.Config{Program: "/bin/true", Includes: []string{"/etc/shadow"}}}, http.StatusForbidden, "include /etc/shadow"},
		{"nobody, inside the list", nobodyUID, vol("nobody-in", h.p("data/pub")), http.StatusCreated, ""},
		{"nobody, inside the list but private", nobodyUID, vol("nobody-private", h.p("data/private")), http.StatusForbidden, "not readable and searchable by uid 65534"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, msg := createOver(t, dialAs(t, sock, tc.uid, tc.uid), tc.req)
			if code != tc.code || !strings.Contains(msg, tc.msg) {
				t.Fatalf("status %d %q, want %d %q", code, msg, tc.code, tc.msg)
			}
			_, err := d.Get(tc.req.Name)
			if created := err == nil; created != (code == http.StatusCreated) {
				t.Fatalf("status %d, but the arrow exists: %v", code, created)
			}
		})
	}

	// The owner is recorded, and a later start checks with its authority:
	// the directory nobody mounted has since become a symlink out.
	a, err := d.Get("nobody-in")
	if err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	owner := d.arrows[a.ID].rec.Owner
	d.mu.Unlock()
	if owner == nil || !owner.Local || owner.UID != nobodyUID {
		t.Fatalf("recorded owner %+v, want uid %d", owner, nobodyUID)
	}
	if err := os.Rename(h.p("data/pub"), h.p("data/pub-moved")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(h.p("secret"), h.p("data/pub")); err != nil {
		t.Fatal(err)
	}
	if _, err := d.StartExisting(context.Background(), "nobody-in"); !errors.Is(err, ErrForbidden) {
		t.Fatalf("start after the swap: %v, want refused", err)
	}
	if a, _ := d.Get("nobody-in"); !strings.Contains(a.Error, "resolves to "+h.p("secret")) {
		t.Fatalf("the arrow's error %q does not say why", a.Error)
	}

	t.Run("TLS client", func(t *testing.T) {
		dir := t.TempDir()
		ca, caKey, caPEM, _ := testCert(t, "arrow test CA", true, nil, nil)
		_, _, srvPEM, srvKey := testCert(t, "arrowd", false, ca, caKey)
		_, _, cliPEM, cliKey := testCert(t, "client", false, ca, caKey)
		write := func(name string, b []byte) string {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}
		tln, err := ListenTLS("127.0.0.1:0", write("srv.pem", srvPEM), write("srv.key", srvKey), write("ca.pem", caPEM))
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = d.Serve(ctx, tln) }()
		roots := x509.NewCertPool()
		roots.AddCert(ca)
		kp, err := tls.X509KeyPair(cliPEM, cliKey)
		if err != nil {
			t.Fatal(err)
		}
		c := client.NewTLS(tln.Addr().String(), &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{kp}, ServerName: "127.0.0.1"})
		req := vol("tls-out", h.p("secret"))
		_, err = c.Create(ctx, &req)
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Status != http.StatusForbidden || !strings.Contains(ce.Message, "a TLS client may name host paths only within") {
			t.Fatalf("TLS create outside the list: %v, want 403", err)
		}
		req = vol("tls-in", h.p("data/pub-moved"))
		if _, err := c.Create(ctx, &req); err != nil {
			t.Fatalf("TLS create inside the list: %v", err)
		}
	})
}

// FuzzHostPathPolicy names arbitrary paths and image references ($T stands
// for the test tree's top) as a TLS client. Whatever is allowed must be, on
// the host, within the allowed directory; whatever is refused is refused
// as forbidden.
func FuzzHostPathPolicy(f *testing.F) {
	for _, s := range []string{
		"$T/data/pub", "$T/data", "$T/data2", "$T/data/../secret", "$T/data/pub/sub/../../../secret/shadow",
		"$T/data/link-out/shadow", "$T/data/link-in", "$T/data/dotdot-out/public", "$T/alias/pub", "$T//data/./pub/",
		"/etc/shadow", "data/pub", "", ".", "..", "/", "$T/data/pub\x00", "$T/data/0/..", "$T/data/link-out/..", "oci:$T/data/pub:v1", "oci:$T/secret:$T/data",
		"oci-archive:$T/data/pub/file", "docker-archive:$T/data/link-out-file:x:y", "./x", "busybox:latest", "docker://alpine",
	} {
		f.Add(s)
	}
	h := newHostTree(f)
	pol := h.policy()
	allowed, err := filepath.EvalSymlinks(h.p("data"))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p := strings.ReplaceAll(s, "$T", h.top)
		r, err := pol.resolve(tlsPeer, "volume source", p)
		if err != nil {
			if !errors.Is(err, ErrForbidden) {
				t.Fatalf("resolve(%q): %v, not ErrForbidden", p, err)
			}
		} else {
			onHost, herr := filepath.EvalSymlinks(p)
			if !filepath.IsAbs(p) || herr != nil || onHost != r || !within(r, allowed) || !within(filepath.Clean(p), h.p("data")) {
				t.Fatalf("resolve(%q) allowed %q (on the host %q, %v), outside %s", p, r, onHost, herr, allowed)
			}
		}
		cfg := api.Config{Image: p}
		err = pol.Check(context.Background(), tlsPeer, 4242, &cfg)
		if err != nil && !errors.Is(err, ErrForbidden) {
			t.Fatalf("image %q: %v, not ErrForbidden", p, err)
		}
		if path, _, isPath := imageHostPath(p); err == nil && isPath {
			onHost, herr := filepath.EvalSymlinks(path)
			if herr != nil || !within(onHost, allowed) {
				t.Fatalf("image %q allowed: it reads %q (on the host %q, %v), outside %s", p, path, onHost, herr, allowed)
			}
		}
	})
}

// FuzzParseConfig: whatever the configuration file holds, parsing ends
// with an error or with absolute allowed paths only.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{`{}`, `{"allow_host_paths": ["/srv"]}`, `{"allow_host_paths": ["srv"]}`, `{"x": 1}`, `{} {}`, ``, `[]`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			return
		}
		for _, p := range c.AllowHostPaths {
			if !filepath.IsAbs(p) || strings.IndexByte(p, 0) >= 0 {
				t.Fatalf("ParseConfig(%q) allowed %q", b, p)
			}
		}
	})
}

// TestNoJailNeedsRoot: an unjailed VM is as strong as arrowd, and one
// with host access reaches root's loopback services, so only a client
// that is root (or arrowd's own user) may ask for either.
func TestNoJailNeedsRoot(t *testing.T) {
	pol := &HostPathPolicy{}
	for _, c := range []*api.Config{{Image: "busybox", NoJail: true}, {Image: "busybox", HostAccess: true}} {
		testRootOnly(t, pol, c)
	}
}

// TestHostServiceNeedsRoot: a host unit's files are read as arrowd, some
// of them root's alone (redis.conf is 0640), so only root may run one;
// anyone may run a unit from an image.
func TestHostServiceNeedsRoot(t *testing.T) {
	pol := &HostPathPolicy{}
	testRootOnly(t, pol, &api.Config{Service: "redis-server"})
	if err := pol.Check(context.Background(), nobodyPeer, 0, &api.Config{Service: "redis-server", Image: "redis"}); err != nil {
		t.Errorf("a service from an image: %v", err)
	}
}

func testRootOnly(t *testing.T, pol *HostPathPolicy, c *api.Config) {
	t.Helper()
	for _, tt := range []struct {
		name string
		who  *Peer
		ok   bool
	}{
		{"root", rootPeer, true},
		{"nobody", nobodyPeer, false},
		{"a TLS client", tlsPeer, false},
	} {
		err := pol.Check(context.Background(), tt.who, 0, c)
		if tt.ok != (err == nil) || (err != nil && !errors.Is(err, ErrForbidden)) {
			t.Errorf("%s asking for %+v: %v", tt.name, c, err)
		}
	}
}

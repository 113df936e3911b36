package spec

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/arrowsys/arrow/api"
)

// fullYAML is the package documentation's example, with relative paths.
const fullYAML = `version: 1
name: web
image: busybox:latest
entrypoint: ["/bin/sh"]
args: ["-c", "httpd -f -p 80 -h /www"]
env:
  GREETING: hello
  DEBUG: "1"
workdir: /www
user: "1000:1000"
include: [./index.html, /etc/ssl/certs]
volumes:
  - ./data:/data
  - source: ../conf
    target: /etc/app/
    readonly: true
ports:
  - "8080:80"
  - "127.0.0.1:5353:53/udp"
cpus: 2
memory: 1.5G
restart: on-failure:5
labels: {team: infra, com.example.tier: web}
read_only: true
stdin: true
tty: false
kernel: kernels/vmlinux
`

// fullJSON is fullYAML in JSON, tab-indented, with JSON's own escapes.
const fullJSON = "{\n" +
	"\t\"version\": 1,\n" +
	"\t\"name\": \"web\",\n" +
	"\t\"image\": \"busybox:latest\",\n" +
	"\t\"entrypoint\": [\"\\/bin\\/sh\"],\n" +
	"\t\"args\": [\"-c\", \"httpd -f -p 80 -h \\u002fwww\"],\n" +
	"\t\"env\": {\"GREETING\": \"hello\", \"DEBUG\": \"1\"},\n" +
	"\t\"workdir\": \"/www\",\n" +
	"\t\"user\": \"1000:1000\",\n" +
	"\t\"include\": [\"./index.html\", \"/etc/ssl/certs\"],\n" +
	"\t\"volumes\": [\"./data:/data\", {\"source\": \"../conf\", \"target\": \"/etc/app/\", \"readonly\": true}],\n" +
	"\t\"ports\": [\"8080:80\", \"127.0.0.1:5353:53/udp\"],\n" +
	"\t\"cpus\": 2,\n" +
	"\t\"memory\": \"1.5G\",\n" +
	"\t\"restart\": \"on-failure:5\",\n" +
	"\t\"labels\": {\"team\": \"infra\", \"com.example.tier\": \"web\"},\n" +
	"\t\"read_only\": true,\n" +
	"\t\"stdin\": true,\n" +
	"\t\"tty\": false,\n" +
	"\t\"kernel\": \"kernels/vmlinux\"\n" +
	"}\n"

func fullSpec() *Spec {
	return &Spec{
		Version: 1,
		Dir:     "/srv/app",
		Name:    "web",
		Config: api.Config{
			Image:      "busybox:latest",
			Entrypoint: []string{"/bin/sh"},
			Args:       []string{"-c", "httpd -f -p 80 -h /www"},
			Env:        []string{"GREETING=hello", "DEBUG=1"},
			Dir:        "/www",
			User:       "1000:1000",
			Includes:   []string{"/srv/app/index.html", "/etc/ssl/certs"},
			Volumes: []api.Volume{
				{Source: "/srv/app/data", Target: "/data"},
				{Source: "/srv/conf", Target: "/etc/app", ReadOnly: true},
			},
			Ports: []api.Port{
				{HostPort: 8080, GuestPort: 80, Proto: "tcp"},
				{HostIP: "127.0.0.1", HostPort: 5353, GuestPort: 53, Proto: "udp"},
			},
			CPUs:      2,
			MemoryMiB: 1536,
			Restart:   api.RestartPolicy{Name: "on-failure", MaxRetries: 5},
			Labels:    map[string]string{"team": "infra", "com.example.tier": "web"},
			ReadOnly:  true,
			Stdin:     true,
			Kernel:    "/srv/app/kernels/vmlinux",
		},
	}
}

// minimal returns the smallest spec for what runs, with fields changed by
// edit.
func minimal(edit func(*Spec)) *Spec {
	s := &Spec{Version: 1, Dir: "/srv/app", Config: api.Config{Restart: api.RestartPolicy{Name: "no"}}}
	edit(s)
	return s
}

func TestParseValid(t *testing.T) {
	tests := []struct {
		name, in string
		want     *Spec
	}{
		{"full YAML", fullYAML, fullSpec()},
		{"full JSON", fullJSON, fullSpec()},
		{"JSON with a byte order mark", "\ufeff" + fullJSON, fullSpec()},
		{"YAML flow mapping, not JSON", "{version: 1, image: alpine}", minimal(func(s *Spec) { s.Config.Image = "alpine" })},
		{"named volumes, not paths", "version: 1\nimage: pg\nvolumes: [pgdata:/var/lib/postgresql, {source: conf.v1, target: /etc/x, readonly: true}, ./pgdata:/local]\n",
			minimal(func(s *Spec) {
				s.Config.Image = "pg"
				s.Config.Volumes = []api.Volume{{Source: "pgdata", Target: "/var/lib/postgresql"},
					{Source: "conf.v1", Target: "/etc/x", ReadOnly: true}, {Source: "/srv/app/pgdata", Target: "/local"}}
			})},
		{"host program by name", "version: 1\nprogram: python3\nargs: [-c, 'print(1)']\n",
			minimal(func(s *Spec) { s.Config.Program, s.Config.Args = "python3", []string{"-c", "print(1)"} })},
		{"host program by relative path", "version: 1\nprogram: bin/app\n",
			minimal(func(s *Spec) { s.Config.Program = "/srv/app/bin/app" })},
		{"rootfs with program", "version: 1\nrootfs: ./root\nprogram: /usr/bin/env\n",
			minimal(func(s *Spec) { s.Config.RootFS, s.Config.Program = "/srv/app/root", "/usr/bin/env" })},
		{"rootfs with args only", "version: 1\nrootfs: /srv/root\nargs: [ls, /]\n",
			minimal(func(s *Spec) { s.Config.RootFS, s.Config.Args = "/srv/root", []string{"ls", "/"} })},
		{"image paths and transports", "version: 1\nimage: oci:./layout:v1\n",
			minimal(func(s *Spec) { s.Config.Image = "oci:/srv/app/layout:v1" })},
		{"image archive path", "version: 1\nimage: ../images/app.tar\n",
			minimal(func(s *Spec) { s.Config.Image = "/srv/images/app.tar" })},
		{"empty lists clear the image's", "version: 1\nimage: alpine\nentrypoint: []\nargs: []\n",
			minimal(func(s *Spec) { s.Config.Image, s.Config.Entrypoint, s.Config.Args = "alpine", []string{}, []string{} })},
		{"null is absent", "version: 1\nimage: alpine\nname:\nargs: ~\nmemory: null\n",
			minimal(func(s *Spec) { s.Config.Image = "alpine" })},
		{"env list, scalars as strings", "version: 1\nimage: alpine\nenv: [A=1, B=, C=x=y]\nuser: 0\nargs: [1, 1.50, true]\n",
			minimal(func(s *Spec) {
				s.Config.Image, s.Config.Env, s.Config.User, s.Config.Args = "alpine", []string{"A=1", "B=", "C=x=y"}, "0", []string{"1", "1.50", "true"}
			})},
		{"network none", "version: 1\nimage: alpine\nnetwork: none\n", minimal(func(s *Spec) { s.Config.Image, s.Config.Network = "alpine", "none" })},
		{"network by name", "version: 1\nimage: alpine\nnetwork: my_net.1\n", minimal(func(s *Spec) { s.Config.Image, s.Config.Network = "alpine", "my_net.1" })},
		{"memory as a plain number, restart no", "version: 1\nimage: alpine\nmemory: 512\nrestart: no\ncpus: 0x10\n",
			minimal(func(s *Spec) { s.Config.Image, s.Config.MemoryMiB, s.Config.CPUs = "alpine", 512, 16 })},
		{"ports on different addresses", "version: 1\nimage: alpine\nports: ['127.0.0.1:80:80', '127.0.0.2:80:80', '80:80/udp', '[::1]:81:81']\n",
			minimal(func(s *Spec) {
				s.Config.Image = "alpine"
				s.Config.Ports = []api.Port{
					{HostIP: "127.0.0.1", HostPort: 80, GuestPort: 80, Proto: "tcp"},
					{HostIP: "127.0.0.2", HostPort: 80, GuestPort: 80, Proto: "tcp"},
					{HostPort: 80, GuestPort: 80, Proto: "udp"},
					{HostIP: "::1", HostPort: 81, GuestPort: 81, Proto: "tcp"},
				}
			})},
		{"anchors without aliases, comments, document markers", "---\n# app\nversion: 1 # format\nimage: &img alpine\n...\n",
			minimal(func(s *Spec) { s.Config.Image = "alpine" })},
		{"trailing empty document", "version: 1\nimage: alpine\n---\n",
			minimal(func(s *Spec) { s.Config.Image = "alpine" })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.in), "/srv/app/arrow.yaml")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse:\n got %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

// head is what the invalid specs start with: lines 1 and 2.
const head = "version: 1\nimage: alpine\n"

func TestParseInvalid(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string // every error, exactly
	}{
		// The document.
		{"empty", "", []string{
			"arrow.yaml:1: the spec is empty: want a mapping with version and one of image, program or rootfs"}},
		{"comments only", "# nothing\n", []string{
			"arrow.yaml:1: the spec is empty: want a mapping with version and one of image, program or rootfs"}},
		{"not a mapping", "- version: 1\n", []string{
			"arrow.yaml:1: want a mapping, got a list"}},
		{"two documents", head + "---\nimage: busybox\n", []string{
			"arrow.yaml:4: a second YAML document: a spec file holds one"}},
		{"YAML syntax, scanner", head + "cpus: 1\nname: a: b\n", []string{
			"arrow.yaml:4: invalid YAML: mapping values are not allowed in this context"}},
		{"YAML syntax, parser", head + "args:\n  - a\n - b\n", []string{
			"arrow.yaml:5: invalid YAML: did not find expected key"}},
		{"YAML syntax, first line", "version: 1: 2\n", []string{
			"arrow.yaml:1: invalid YAML: mapping values are not allowed in this context"}},
		{"tab indentation", head + "env:\n\tA: b\n", []string{
			"arrow.yaml:4: invalid YAML: found character that cannot start any token"}},
		{"control character", head + "name: a\x01b\n", []string{
			"arrow.yaml:3: character U+0001 is not allowed (use an escape in a double-quoted string)"}},
		{"invalid UTF-8", head + "\n\nname: \xff\n", []string{
			"arrow.yaml:5: invalid UTF-8 (byte 0xff)"}},
		{"syntax error at the end of the last line", "!0 {", []string{
			"arrow.yaml:1: invalid YAML: did not find expected node content"}},
		{"CRLF line ends", "version: 1\r\nimage: alpine\r\n\r\ncpus: 0\r\n", []string{
			"arrow.yaml:4: cpus: 0 is out of range (1 to 255)"}},
		{"CR line ends", "version: 1\rimage: alpine\r\rcpus: 0\r", []string{
			"arrow.yaml:4: cpus: 0 is out of range (1 to 255)"}},
		{"line separator", head + "name: a\u2028b\n", []string{
			"arrow.yaml:3: character U+2028 is not allowed (use an escape in a double-quoted string)"}},
		{"unknown anchor", head + "args: *nope\n", []string{
			"arrow.yaml:3: invalid YAML: unknown anchor 'nope' referenced"}},

		// Fields and keys.
		{"unknown fields", head + "imgae: x\nreadOnly: true\ncommand: [x]\n", []string{
			`arrow.yaml:3: unknown field "imgae" (did you mean "image"?)`,
			`arrow.yaml:4: unknown field "readOnly" (did you mean "read_only"?)`,
			`arrow.yaml:5: unknown field "command"`}},
		{"duplicate field", head + "cpus: 1\ncpus: 2\n", []string{
			`arrow.yaml:4: duplicate key "cpus" (first at line 3)`}},
		{"alias", head + "labels: &l {a: b}\nenv: *l\n", []string{
			"arrow.yaml:4: env: aliases (*l) are not supported"}},
		{"merge key", head + "<<: {cpus: 1}\n", []string{
			"arrow.yaml:3: merge keys (<<) are not supported"}},
		{"custom tag", head + "name: !secret web\n", []string{
			`arrow.yaml:3: name: unsupported tag "!secret"`}},
		{"non-string key", head + "[a]: b\n", []string{
			"arrow.yaml:3: want a string key, got a list"}},

		// version.
		{"version missing", "image: alpine\n", []string{
			`arrow.yaml:1: version: required (this is format version 1: write "version: 1")`}},
		{"version unsupported hides the rest", "image: alpine\nversion: 2\nbogus: 1\n", []string{
			"arrow.yaml:2: version: unsupported version 2 (this Arrow reads version 1)"}},
		{"version not an integer", "version: \"1\"\nimage: alpine\n", []string{
			`arrow.yaml:1: version: want an integer, got the string "1"`}},

		// What runs.
		{"nothing to run", "version: 1\nname: web\n", []string{
			"arrow.yaml:1: one of image, program or rootfs is required"}},
		{"image and program", head + "program: /bin/sh\nrootfs: ./r\n", []string{
			"arrow.yaml:3: program: cannot be used with image (use entrypoint and args to say what runs in an image)",
			"arrow.yaml:4: rootfs: cannot be used with image (use entrypoint and args to say what runs in an image)"}},
		{"rootfs alone", "version: 1\nrootfs: ./root\n", []string{
			"arrow.yaml:2: rootfs: needs program, entrypoint or args: a root file system does not say what to run"}},
		{"program with entrypoint", "version: 1\nprogram: sh\nentrypoint: [sh]\n", []string{
			"arrow.yaml:3: entrypoint: cannot be used with program (the program's arguments go in args)"}},
		{"relative program in rootfs", "version: 1\nrootfs: ./root\nprogram: bin/sh\n", []string{
			`arrow.yaml:3: program: "bin/sh": with rootfs, program is in the root file system: an absolute path, or a name looked up in its PATH`}},
		{"bad image reference", "version: 1\nimage: Alpine:3\n", []string{
			`arrow.yaml:2: image: "Alpine:3" is not an image reference (want NAME[:TAG] or NAME@DIGEST, in lowercase, or a path starting with /, ./ or ../)`}},
		{"image transport without path", "version: 1\nimage: 'oci::v1'\n", []string{
			`arrow.yaml:2: image: "oci::v1": want oci:PATH[:TAG]`}},

		// Scalars.
		{"name", head + "name: -web\n", []string{
			`arrow.yaml:3: name: "-web": want 1 to 63 lowercase letters, digits and '-', not starting or ending with '-'`}},
		{"name too long", head + "name: " + strings.Repeat("a", 64) + "\n", []string{
			`arrow.yaml:3: name: "` + strings.Repeat("a", 64) + `": want 1 to 63 lowercase letters, digits and '-', not starting or ending with '-'`}},
		{"args not a list", head + "args: echo hi\n", []string{
			`arrow.yaml:3: args: want a list, got the string "echo hi"`}},
		{"args item", head + "args:\n  - ok\n  - [nested]\n  - \"a\\0b\"\n", []string{
			"arrow.yaml:5: args[1]: want a string, got a list",
			`arrow.yaml:6: args[2]: "a\x00b" contains a NUL byte`}},
		{"workdir", head + "workdir: app\n", []string{
			`arrow.yaml:3: workdir: "app" is not an absolute path`}},
		{"user", head + "user: 'no body'\n", []string{
			`arrow.yaml:3: user: "no body": user name "no body": only printable ASCII other than ':', '/' and spaces (want NAME|UID[:GROUP|GID])`}},
		{"user gid", head + "user: '1000:'\n", []string{
			`arrow.yaml:3: user: "1000:": group is empty (want NAME|UID[:GROUP|GID])`}},
		{"user range", head + "user: 4294967295\n", []string{
			`arrow.yaml:3: user: "4294967295": user ID 4294967295 is out of range (0 to 4294967294) (want NAME|UID[:GROUP|GID])`}},
		{"include item", head + "include:\n  - ./a\n  - ''\n", []string{
			`arrow.yaml:5: include[1]: "" is not a path`}},
		{"cpus range", head + "cpus: 256\n", []string{
			"arrow.yaml:3: cpus: 256 is out of range (1 to 255)"}},
		{"cpus float", head + "cpus: 1.5\n", []string{
			`arrow.yaml:3: cpus: want an integer, got the number "1.5"`}},
		{"memory", head + "memory: 16M\n", []string{
			`arrow.yaml:3: memory: "16M" is out of range (32M to 1T)`}},
		{"memory unit", head + "memory: 1X\n", []string{
			`arrow.yaml:3: memory: "1X" is not a size (want a number of MiB, or a number with K, M, G or T such as 256M or 1G)`}},
		{"restart", head + "restart: on-failure:-1\n", []string{
			`arrow.yaml:3: restart: "on-failure:-1": want a retry count from 0 to 1000000`}},
		{"restart count on always", head + "restart: always:3\n", []string{
			`arrow.yaml:3: restart: "always:3": only on-failure takes a retry count`}},
		{"booleans", head + "tty: yes\nstdin: 1\nread_only: 'true'\n", []string{
			`arrow.yaml:3: tty: want true or false, got the string "yes"`,
			`arrow.yaml:4: stdin: want true or false, got the number "1"`,
			`arrow.yaml:5: read_only: want true or false, got the string "true"`}},
		{"kernel", head + "kernel: [a]\n", []string{
			"arrow.yaml:3: kernel: want a string, got a list"}},

		// env and labels.
		{"env map", head + "env:\n  A: 1\n  B:\n  C=D: x\n  \"\": y\n  E: {x: 1}\n", []string{
			`arrow.yaml:5: env.B: want a string (write "" for an empty value), got null`,
			`arrow.yaml:6: env["C=D"]: variable name "C=D" contains '='`,
			"arrow.yaml:7: env: empty variable name",
			`arrow.yaml:8: env.E: want a string (write "" for an empty value), got a mapping`}},
		{"env list", head + "env:\n  - A=1\n  - B\n  - =x\n  - A=2\n", []string{
			`arrow.yaml:5: env[1]: "B": want KEY=value (host variables are not passed through)`,
			`arrow.yaml:6: env[2]: "=x": empty variable name`,
			`arrow.yaml:7: env[3]: "A" is already set by env[0]`}},
		{"env duplicate key", head + "env:\n  A: 1\n  A: 2\n", []string{
			`arrow.yaml:5: env: duplicate key "A" (first at line 4)`}},
		{"env scalar", head + "env: A=1\n", []string{
			`arrow.yaml:3: env: want a mapping or a list of KEY=value, got the string "A=1"`}},
		{"labels", head + "labels:\n  '': x\n  a.b: [1]\n", []string{
			"arrow.yaml:4: labels: empty label name",
			`arrow.yaml:5: labels["a.b"]: want a string, got a list`}},

		// volumes.
		{"volume target", head + "volumes:\n  - ./data:/data\n  - {source: ./conf, target: etc/app, readonly: true}\n", []string{
			`arrow.yaml:5: volumes[1].target: "etc/app" is not an absolute path`}},
		{"volume short forms", head + "volumes:\n  - d@ta:/data\n  - ./a:/\n  - ./a:/b:rx\n  - ./a\n  - ./a:/proc/x\n  - ./a:/x/../y\n", []string{
			`arrow.yaml:4: volumes[0]: source "d@ta": a volume name must match [a-zA-Z0-9][a-zA-Z0-9_.-]+ (a host path starts with /, ./ or ../)`,
			`arrow.yaml:5: volumes[1]: target "/" would hide the guest's root file system`,
			`arrow.yaml:6: volumes[2]: mode "rx": want ro or rw`,
			`arrow.yaml:7: volumes[3]: "./a" is not SOURCE:TARGET[:ro|rw]`,
			`arrow.yaml:8: volumes[4]: target "/proc/x" is inside /proc, which the guest kernel owns`,
			`arrow.yaml:9: volumes[5]: target "/x/../y" contains ".."`}},
		{"volume long form", head + "volumes:\n  - source: x\n    target: /a\n    readnoly: true\n  - target: /b\n    readonly: 1\n  - [x]\n", []string{
			`arrow.yaml:4: volumes[0].source: "x": a volume name must match [a-zA-Z0-9][a-zA-Z0-9_.-]+ (a host path starts with /, ./ or ../)`,
			`arrow.yaml:6: volumes[0]: unknown field "readnoly" (did you mean "readonly"?)`,
			"arrow.yaml:7: volumes[1].source: required",
			`arrow.yaml:8: volumes[1].readonly: want true or false, got the number "1"`,
			"arrow.yaml:9: volumes[2]: want SOURCE:TARGET[:ro|rw] or a mapping, got a list"}},
		{"duplicate volume targets", head + "volumes:\n  - ./a:/data\n  - {source: ./b, target: /data/}\n  - /c:/data:ro\n", []string{
			`arrow.yaml:5: volumes[1].target: "/data" is already the target of volumes[0]`,
			`arrow.yaml:6: volumes[2]: "/data" is already the target of volumes[0]`}},

		// ports.
		{"ports", head + "ports:\n  - '0:80'\n  - 80\n  - '1.2.3.4::80'\n  - '80:70000'\n  - '80:80/sctp'\n  - 'localhost:80:80'\n  - '::1:80:80'\n  - {a: b}\n", []string{
			`arrow.yaml:4: ports[0]: host port "0": want a number from 1 to 65535`,
			`arrow.yaml:5: ports[1]: "80" is not [IP:]HOST:GUEST[/tcp|udp] (the host port is required)`,
			`arrow.yaml:6: ports[2]: host port "": want a number from 1 to 65535`,
			`arrow.yaml:7: ports[3]: guest port "70000": want a number from 1 to 65535`,
			`arrow.yaml:8: ports[4]: protocol "sctp": want tcp or udp`,
			`arrow.yaml:9: ports[5]: host IP "localhost" is not an IP address`,
			`arrow.yaml:10: ports[6]: "::1:80:80" is not [IP:]HOST:GUEST[/tcp|udp] (put IPv6 addresses in brackets)`,
			"arrow.yaml:11: ports[7]: want [IP:]HOST:GUEST[/tcp|udp], got a mapping"}},
		{"port conflicts", head + "ports:\n  - '8080:80'\n  - '127.0.0.1:8080:81'\n  - '8080:82/udp'\n  - '0.0.0.0:8080:83/udp'\n", []string{
			"arrow.yaml:5: ports[1]: host port 8080/tcp is already published by ports[0]",
			"arrow.yaml:7: ports[3]: host port 8080/udp is already published by ports[2]"}},
		{"network", head + "network: -x\n", []string{
			`arrow.yaml:3: network: network "-x": want user, none, or a network's name (1 to 32 letters, digits, '_', '.' and '-', starting with a letter or digit)`}},

		// Limits.
		{"too many items", head + "args: [" + strings.Repeat("a,", MaxItems) + "a]\n", []string{
			"arrow.yaml:3: args: 4097 items, at most 4096"}},
		{"too long a path", head + "kernel: /" + strings.Repeat("k", 4096) + "\n", []string{
			`arrow.yaml:3: kernel: "/` + strings.Repeat("k", 63) + `"... is longer than 4096 bytes`}},

		// Every problem, in line order.
		{"several", "image: alpine\nvolumes: [{source: ./a, target: a}]\nversion: 1\ncpus: 0\nimgae: b\n", []string{
			`arrow.yaml:2: volumes[0].target: "a" is not an absolute path`,
			"arrow.yaml:4: cpus: 0 is out of range (1 to 255)",
			`arrow.yaml:5: unknown field "imgae" (did you mean "image"?)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse([]byte(tt.in), "arrow.yaml")
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", s)
			}
			if s != nil {
				t.Errorf("Parse returned a spec with an error")
			}
			if got, want := err.Error(), strings.Join(tt.want, "\n"); got != want {
				t.Errorf("Parse error:\n%s\nwant:\n%s", got, want)
			}
			var list ErrorList
			if !errors.As(err, &list) || len(list) != len(tt.want) {
				t.Fatalf("error is not an ErrorList of %d: %#v", len(tt.want), err)
			}
			for _, e := range list {
				if e.File != "arrow.yaml" || e.Line < 1 {
					t.Errorf("error without file or line: %#v", e)
				}
			}
		})
	}
}

// TestParseJSONErrors checks that errors in JSON name the right line and
// column, for syntax errors as for invalid values.
func TestParseJSONErrors(t *testing.T) {
	tests := []struct {
		name, in  string
		want      string
		line, col int
	}{
		{"trailing comma, not YAML either", "{\n  \"version\": 1,\n  \"image\": \"a\\/b\",\n}\n",
			"app.json:4: invalid JSON: invalid character '}' looking for beginning of object key string", 4, 1},
		{"missing colon", "{\n  \"version\": 1,\n  \"image\"  \"x\"\n}",
			"app.json:3: invalid JSON: invalid character '\"' after object key", 3, 12},
		{"bad value after a line break", "{\n  \"version\":\n\n     'bogus\n}",
			"app.json:4: invalid JSON: invalid character '\\'' looking for beginning of value", 4, 6},
		{"unterminated", "{\n  \"version\": 1,\n  \"args\": [\"a\"\n",
			"app.json:4: invalid JSON: unexpected end of input", 4, 1},
		{"data after the object", "{\"version\": 1, \"image\": \"x\\/y\"}\n\n{}\n",
			"app.json:3: invalid JSON: data after the top-level value", 3, 1},
		{"invalid value", "{\n\t\"version\": 1,\n\t\"image\": \"alpine\",\n\t\"volumes\": [\n\t\t{\"source\": \"./a\", \"target\": \"etc/app\"}\n\t]\n}\n",
			`app.json:5: volumes[0].target: "etc/app" is not an absolute path`, 5, 31},
		{"column counts characters", "{\"version\": 1, \"labels\": {\"é\": \"ü\"}, \"image\": \"x\", \"cpus\": 1.0}",
			`app.json:1: cpus: want an integer, got the number "1.0"`, 1, 60}, // 62 in bytes
		{"CRLF and CR line ends", "{\r\n\"version\": 1,\r\n\"image\": \"x\",\r\r\"cpus\": 0}",
			"app.json:5: cpus: 0 is out of range (1 to 255)", 5, 9},
		{"duplicate key", "{\"version\": 1,\n \"image\": \"x\",\n \"image\": \"y\"}",
			`app.json:3: duplicate key "image" (first at line 2)`, 3, 2},
		{"unknown field", "{\"version\": 1, \"image\": \"x\",\n\n \"Image\": \"y\"}",
			`app.json:3: unknown field "Image" (did you mean "image"?)`, 3, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in), "app.json")
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			if err.Error() != tt.want {
				t.Errorf("Parse error:\n%s\nwant:\n%s", err, tt.want)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("no *Error in %#v", err)
			}
			if e.Line != tt.line || e.Column != tt.col {
				t.Errorf("at %d:%d, want %d:%d", e.Line, e.Column, tt.line, tt.col)
			}
		})
	}
}

func TestErrorColumns(t *testing.T) {
	_, err := Parse([]byte(head+"volumes:\n  - {source: ./conf, target: etc/app}\n"), "arrow.yaml")
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("no *Error in %v", err)
	}
	if e.File != "arrow.yaml" || e.Line != 4 || e.Column != 30 || e.Path != "volumes[0].target" {
		t.Errorf("got %s:%d:%d %s, want arrow.yaml:4:30 volumes[0].target", e.File, e.Line, e.Column, e.Path)
	}
}

func TestErrorFormat(t *testing.T) {
	inner := errors.New("bad")
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "a.yaml", Line: 3, Path: "cpus", Err: inner}, "a.yaml:3: cpus: bad"},
		{Error{Line: 3, Path: "cpus", Err: inner}, "line 3: cpus: bad"},
		{Error{File: "a.yaml", Err: inner}, "a.yaml: bad"},
		{Error{File: "a.yaml", Line: 1, Err: inner}, "a.yaml:1: bad"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("%#v: got %q, want %q", tt.e, got, tt.want)
		}
		if !errors.Is(&tt.e, inner) {
			t.Errorf("%#v does not wrap its error", tt.e)
		}
	}
}

func TestTooManyErrors(t *testing.T) {
	var b strings.Builder
	b.WriteString(head)
	for i := range 150 {
		b.WriteString("x" + strings.Repeat("y", i) + ": 1\n")
	}
	_, err := Parse([]byte(b.String()), "arrow.yaml")
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("not an ErrorList: %v", err)
	}
	if len(list) != maxErrors+1 {
		t.Fatalf("%d errors, want %d", len(list), maxErrors+1)
	}
	if got, want := list[maxErrors].Error(), "arrow.yaml:103: 50 more problems not shown"; got != want {
		t.Errorf("last error %q, want %q", got, want)
	}
}

func TestTooLarge(t *testing.T) {
	data := []byte(head + "# " + strings.Repeat("x", MaxFileSize) + "\n")
	_, err := Parse(data, "big.yaml")
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Parse: %v, want ErrTooLarge", err)
	}
	if got, want := err.Error(), "big.yaml: spec file too large: larger than 1048576 bytes"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sub", "arrow.yaml")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("version: 1\nprogram: ./app\nvolumes: [../data:/data]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Relative paths are the spec file's, wherever Arrow runs.
	t.Chdir(t.TempDir())
	s, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "sub", "app"); s.Config.Program != want {
		t.Errorf("Program = %q, want %q", s.Config.Program, want)
	}
	if want := filepath.Join(dir, "data"); s.Config.Volumes[0].Source != want {
		t.Errorf("volume source = %q, want %q", s.Config.Volumes[0].Source, want)
	}
	if s.Dir != filepath.Join(dir, "sub") {
		t.Errorf("Dir = %q", s.Dir)
	}

	// A relative file name is relative to the current directory.
	if err := os.WriteFile("arrow.yaml", []byte("version: 1\nrootfs: r\nargs: [x]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if s, err := Load("arrow.yaml"); err != nil || s.Config.RootFS != filepath.Join(wd, "r") {
		t.Errorf("Load(arrow.yaml) = %+v, %v; want rootfs in %s", s, err, wd)
	}

	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want ErrNotExist", err)
	}

	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, make([]byte, MaxFileSize+10), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Load(big) = %v, want ErrTooLarge", err)
	}
}

// TestDocExamples parses the examples in the package documentation.
func TestDocExamples(t *testing.T) {
	src, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	var examples []string
	var cur strings.Builder
	for _, line := range strings.Split(string(src), "\n") {
		code, ok := strings.CutPrefix(line, "//\t")
		if ok && !strings.HasPrefix(code, "arrow.yaml:") && !strings.HasPrefix(code, "name ") {
			cur.WriteString(code + "\n")
			continue
		}
		if cur.Len() > 0 {
			examples = append(examples, cur.String())
			cur.Reset()
		}
	}
	if len(examples) < 2 {
		t.Fatalf("found %d examples in doc.go", len(examples))
	}
	for i, ex := range examples[:2] {
		s, err := Parse([]byte(ex), "/srv/app/arrow.yaml")
		if err != nil {
			t.Errorf("example does not parse: %v\n%s", err, ex)
			continue
		}
		if s.Config.Image != "busybox:latest" || i == 0 && (len(s.Config.Volumes) != 2 || len(s.Config.Ports) != 2 || s.Config.Kernel == "" || s.Config.MemoryMiB != 256) {
			t.Errorf("example parsed to %+v", s)
		}
	}
}

// Package spec reads Arrow's spec files: what `arrow run -f arrow.yaml`
// asks the Arrow System to run, in YAML or JSON.
//
// # Example
//
//	version: 1                  # required: the format's version
//	name: web                   # optional: a DNS label
//	image: busybox:latest       # what runs: exactly one of image, program, rootfs
//	entrypoint: ["/bin/sh"]     # replaces the image's Entrypoint
//	args: ["-c", "httpd -f -p 80 -h /www"]   # replaces the image's Cmd
//	env:                        # a mapping, or a list of KEY=value
//	  GREETING: hello
//	  DEBUG: "1"
//	workdir: /www
//	user: "1000:1000"           # NAME|UID[:GROUP|GID], names from the image's /etc/passwd
//	include: [./index.html]     # host files put into the guest at their host paths
//	volumes:
//	  - ./data:/data            # SOURCE:TARGET[:ro|rw]
//	  - source: ./conf          # or the long form
//	    target: /etc/app
//	    readonly: true
//	ports:                      # [IP:]HOST:GUEST[/tcp|udp]
//	  - "8080:80"
//	  - "127.0.0.1:5353:53/udp"
//	network: user               # user (the default), none, or a network's name
//	cpus: 2
//	memory: 256M
//	restart: on-failure:5       # no | on-failure[:N] | always | unless-stopped
//	labels: {team: infra}
//	read_only: false
//	stdin: false
//	tty: false
//	kernel: /boot/vmlinuz-6.1.0-57-cloud-amd64   # optional: boot this kernel instead of Arrow's
//
// The same in JSON:
//
//	{"version": 1, "image": "busybox:latest", "args": ["echo", "hi"], "memory": 256}
//
// # Fields
//
// version (required) is 1. A file of another version is rejected with that
// one error, since its other fields may mean something else.
//
// What runs is given by exactly one of:
//
//   - image: an OCI image. A registry reference (busybox:latest,
//     ghcr.io/org/app@sha256:...), docker://REF, oci:DIR[:TAG],
//     oci-archive:FILE[:TAG], docker-archive:FILE[:TAG], or the path of
//     an image layout directory or archive, which must start with /, ./
//     or ../ (anything else is a reference). entrypoint and args replace
//     the image's Entrypoint and Cmd; an empty list clears them. When
//     Arrow runs the spec, a name the image store has is that image; a
//     path is imported into the store (cheap when it is there already);
//     another reference is pulled from its registry.
//   - program: a host program, as `arrow run PROGRAM` takes it: a name
//     looked up in the host's PATH, or a path. Arrow puts it and what it
//     needs into the guest. args are its arguments; entrypoint is not
//     allowed.
//   - rootfs: a host directory that is the guest's root file system,
//     with program (an absolute path in it, or a name looked up in its
//     PATH), entrypoint, or args to say what runs there: the command is
//     program or entrypoint, followed by args.
//
// The other fields:
//
//	name        string          1 to 63 of a-z, 0-9 and '-', not starting or ending with '-'
//	args        list of strings
//	entrypoint  list of strings image and rootfs only
//	env         mapping or list a mapping of NAME: value, or a list of "NAME=value";
//	                            names are not empty and hold no '='; every variable
//	                            has a value (host variables are not passed through)
//	workdir     string          an absolute guest path
//	user        string          NAME|UID[:GROUP|GID]: a number is an ID, anything
//	                            else a name, looked up in the image's (or rootfs's)
//	                            /etc/passwd and /etc/group when the application starts
//	include     list of paths   host files and directories
//	volumes     list            SOURCE:TARGET[:ro|rw], or {source, target, readonly}
//	ports       list of strings [IP:]HOST:GUEST[/tcp|udp]
//	network     string          user (QEMU's user-mode network, the default), none
//	                            (loopback only), or the name of a network arrowd runs
//	cpus        integer         1 to 255
//	memory      size            a number of MiB (512), or a number with K, M, G or T,
//	                            optionally followed by B or iB (256M, 1.5G, 1GiB):
//	                            binary units, a whole number of MiB, 32M to 1T
//	restart     string          no (the default), on-failure, on-failure:N (at most N
//	                            restarts; 0 is no limit), always, unless-stopped
//	labels      mapping         names are not empty; values are strings
//	read_only   boolean         mount the root file system read-only
//	stdin       boolean         forward standard input
//	tty         boolean         run on a terminal
//	kernel      path            a guest kernel (vmlinux or bzImage) to boot
//
// Fields left out, or set to null, take Arrow's defaults. Strings may be
// written as numbers or booleans (user: 1000 is "1000"); integers and
// booleans must be integers and true or false.
//
// A volume's SOURCE is a host path starting with /, ./ or ../, or the name
// of a named volume ([a-zA-Z0-9][a-zA-Z0-9_.-]+, docker's rule: a source
// without "/" is a name); its TARGET is an absolute guest path
// other than /, outside /proc, /sys and /dev, without "..", and no two
// volumes share one. Ports publish a guest port on a host port: both are
// 1 to 65535 (no random host ports, no ranges), IP is optional (IPv6 in
// brackets: [::1]:8443:443), and no two ports bind the same host port and
// protocol on overlapping addresses. In the user-mode network QEMU listens
// on the host port, on IPv4 only; with network none there is nothing to
// publish.
//
// # Paths
//
// Relative host paths (image paths, program when it holds a '/', rootfs,
// include, volume sources, kernel) are relative to the directory of the
// spec file, not to the current directory, so a spec means the same
// wherever it is run from. [Parse] returns them absolute and lexically
// cleaned. Guest paths (workdir, volume targets, a program in a rootfs)
// must be absolute.
//
// # Syntax
//
// A spec file is one YAML document whose top level is a mapping, or one
// JSON object. JSON is read as JSON (escapes such as \/ included). Unknown
// fields and duplicate keys are errors, so that a misspelt field is not
// silently ignored. Anchors are allowed but aliases (*name) and merge keys
// (<<) are not, which rules out alias-expansion bombs; custom tags are
// rejected.
//
// The file is untrusted input: it is at most [MaxFileSize] (1 MiB) of
// UTF-8 text, no list or mapping holds more than [MaxItems] entries, paths
// are at most 4096 bytes and no string holds a NUL byte.
//
// # Errors
//
// [Parse] and [Load] report every problem they find, up to 100, as an
// [ErrorList] in line order; each is an [*Error] naming the file, line
// and field path:
//
//	arrow.yaml:3: unknown field "imgae" (did you mean "image"?)
//	arrow.yaml:7: volumes[1].target: "etc/app" is not an absolute path
//	arrow.yaml:9: ports[0]: host port "0": want a number from 1 to 65535
//
// [ParseMemory], [ParseVolume], [ParsePort] and [ParseRestart] are the
// parsers behind memory, volumes, ports and restart; the command line's
// --memory, --volume, --publish and --restart use them too, so a value
// means the same, and fails the same way, in both places.
package spec

// Package dataroot is the one description of the layout of Arrow's data
// root: the directory named by `arrow --root` ($ARROW_ROOT; /var/lib/arrow
// as root, else ~/.local/share/arrow), which holds every cache and every
// arrow's state. Code that needs a path under the root asks a [Root] for
// it instead of joining names of its own, so that the layout cannot drift
// apart between the packages that share it.
//
// The root itself is mode 0700 (cmd/arrow's privateRoot, arrowd): it holds
// every user's images, included files, logs and VM state, and no one else
// may even enter it. Under it, relative to the root:
//
//	images/            the content-addressed image store (image/store; 0700):
//	                   blobs/sha256, files/sha256, images, tmp within,
//	                   laid out by image/store.
//	rootfs/            erofs root disks of images, keyed by image (run,
//	                   image/rootfs; 0700 via image/cachefile), pruned by
//	                   the images they belong to.
//	rootfs/dirs/       root disks of --rootfs directories (run).
//	rootfs/closures/   erofs images of host programs' closures (run).
//	initramfs/         cached initramfs archives (image/initramfs, written
//	                   for run and template; 0700).
//	initramfs/accounts/ the /etc/passwd and /etc/group of host programs'
//	                   guests, named by their content (run; 0700).
//	kernels/           kernels Arrow built, one directory per key, and
//	                   source-version.json (kernel; 0700).
//	templates/         pre-booted VM templates, one directory per key,
//	                   and their .lock-<key> files (template; 0700).
//	templates/.mem/    the templates' memory files (template, as named by
//	                   run; 0700), so that templates go with their root.
//	templates/.memo/   the hashes of the templates' inputs (template).
//	arrows/<id>/       one directory per arrow arrowd keeps (daemon, 0700):
//	                   the shim's launch.json, exit.json, output.log,
//	                   shim.lock and shim.log (package shim names those).
//	spares/<id>/       one directory per spare VM of arrowd's pool (daemon,
//	                   0700): spare.json and the spare shim's shim.log.
//	volumes/<name>/    one directory per named volume (volume; 0700):
//	                   volume.json, lock, refs/<arrow id>, and _data/,
//	                   the content a VM mounts; .lock and .build-* (being
//	                   created or removed) beside them.
//	apt/               the cache of `arrow image build --apt`: one
//	                   <key>.json per suite and package list, naming the
//	                   image built (image/apt; 0700), and .apt-build-*,
//	                   builds under way.
//	arrowd.db          arrowd's state (daemon; bbolt, 0600).
//	networks.db        the bridge networks and endpoints (network, opened
//	                   by daemon; bbolt, 0600).
//	arrowd.log         the output of an arrowd that `arrow` started itself
//	                   (cmd/arrow; 0600).
//	.materialize-*     scratch trees of images being materialized (run).
//	.closure-*         scratch trees of closures being built (run).
//	.docker-load-*     archives `docker load` is receiving and unpacking
//	                   (dockerapi; 0700), removed after a day when a
//	                   killed arrowd left them.
//
// The runtime directory (arrowd's sockets, /run/arrow as root) and the
// jail's directory are not under the data root and not described here.
//
// Every path here must stay byte-identical across releases: existing data
// roots keep working only as long as their layout does.
package dataroot

import "path/filepath"

// Root is the path of a data root. Its methods name the locations in it;
// none of them touches the file system.
type Root string

func (r Root) join(elem ...string) string {
	return filepath.Join(append([]string{string(r)}, elem...)...)
}

// Images is the image store.
func (r Root) Images() string { return r.join("images") }

// RootDisks is the cache of images' root disks.
func (r Root) RootDisks() string { return r.join("rootfs") }

// DirDisks is the cache of --rootfs directories' root disks: apart from
// the images' disks, which are pruned by the images they belong to.
func (r Root) DirDisks() string { return r.join("rootfs", "dirs") }

// Closures is the cache of erofs images of host programs' closures.
func (r Root) Closures() string { return r.join("rootfs", "closures") }

// Initramfs is the cache of initramfs archives.
func (r Root) Initramfs() string { return r.join("initramfs") }

// Accounts holds the /etc/passwd and /etc/group files made for host
// programs' guests, each named by its content.
func (r Root) Accounts() string { return r.join("initramfs", "accounts") }

// Kernels holds the kernels Arrow built.
func (r Root) Kernels() string { return r.join("kernels") }

// Templates holds the VM templates, one directory per key.
func (r Root) Templates() string { return r.join("templates") }

// TemplateMemory holds the templates' memory files.
func (r Root) TemplateMemory() string { return r.join("templates", ".mem") }

// TemplateMemo holds the memo of the templates' inputs' hashes.
func (r Root) TemplateMemo() string { return r.join("templates", ".memo") }

// Snapshots holds the application snapshots (package template, app.go).
func (r Root) Snapshots() string { return r.join("snapshots") }

// Functions holds the functions' definitions and logs (package function).
func (r Root) Functions() string { return r.join("functions") }

// Arrows holds the directories of the arrows arrowd keeps.
func (r Root) Arrows() string { return r.join("arrows") }

// Arrow is the directory of the arrow id.
func (r Root) Arrow(id string) string { return r.join("arrows", id) }

// Spares holds the directories of the spare VMs of arrowd's pool.
func (r Root) Spares() string { return r.join("spares") }

// Spare is the directory of the spare id.
func (r Root) Spare(id string) string { return r.join("spares", id) }

// Volumes holds the named volumes, one directory per name.
func (r Root) Volumes() string { return r.join("volumes") }

// AptBuilds is the cache of images built of Debian packages, and where
// they are built.
func (r Root) AptBuilds() string { return r.join("apt") }

// DB is arrowd's state database.
func (r Root) DB() string { return r.join("arrowd.db") }

// Networks is the state database of the bridge networks.
func (r Root) Networks() string { return r.join("networks.db") }

// DaemonLog is the log of an arrowd that `arrow` started itself.
func (r Root) DaemonLog() string { return r.join("arrowd.log") }

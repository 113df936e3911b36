#!/usr/bin/env bash
# Arrow's setup on a fresh Debian 12 machine, as root: installs what Arrow
# needs, builds and installs it, builds the guest kernel (about 4 minutes
# on 2 cores, once) and installs it system-wide, and runs a real
# application in a microVM.
set -euo pipefail
cd "$(dirname "$0")"

if [ "$(id -u)" -ne 0 ]; then
	echo "setup.sh: run as root (it installs packages)" >&2
	exit 1
fi

packages=(
	qemu-system-x86                       # the hypervisor (microvm machine)
	linux-source-6.1                      # the guest kernel's source
	linux-image-cloud-amd64               # a stock kernel: tests boot it with --kernel
	build-essential bison flex bc libelf-dev libssl-dev  # to build it
	erofs-utils                           # mkfs.erofs: images become read-only guest disks
	python3 perl                          # examples and tests run them in VMs
	busybox-static                        # a static binary for tests
	runc                                  # the benchmark's container baseline
	wrk                                   # the network benchmark's load generator
	debootstrap                           # the Debian root file system of image tests and benchmark
	mmdebstrap                            # arrow image build --apt: images of Debian packages
	nftables iproute2                     # nft and ip: tests inspect bridge networks' rules and links
	redis-server redis-tools              # --service tests and bench -apps: Debian's redis unit, redis-cli, redis-benchmark
	memcached libmemcached-tools          # --service tests: Debian's memcached unit and its clients
	nginx                                 # --service and closure tests: Debian's forking nginx unit, its welcome page
	postgresql                            # closure tests (initdb), psql and pgbench for the --apt PostgreSQL test, bench -apps
	curl                                  # tests' HTTP client
	docker-compose                        # Docker API tests: Debian's docker-compose 1.29.2 drives arrowd's docker.sock
	containerd                            # containerd and CRI tests: a private containerd 1.6 and ctr drive containerd-shim-arrow-v1
	containernetworking-plugins           # CRI tests: CNI's bridge, host-local and loopback plugins, in /usr/lib/cni
	runsc                                 # bench -gvisor: gVisor's runsc, the peer Arrow's starts are measured against
	git ca-certificates
)
echo "==> installing packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null

GO=$(command -v go || true)
[ -n "$GO" ] || GO=/usr/local/go/bin/go
if ! "$GO" version >/dev/null 2>&1; then
	echo "setup.sh: Go 1.26 or newer is needed at /usr/local/go or in PATH" >&2
	exit 1
fi

# crictl, the CRI client of the CRI tests (e2e/cri_test.go), which find
# it in PATH: Debian 12 has no package of it, so it is built from its Go
# module, once (kept while the installed one is that version).
crictl_version=v1.37.0
if ! "$GO" version -m /usr/local/bin/crictl 2>/dev/null | grep -q "mod[[:space:]]*sigs.k8s.io/cri-tools[[:space:]]*$crictl_version"; then
	echo "==> building crictl $crictl_version into /usr/local/bin"
	GOBIN=/usr/local/bin "$GO" install "sigs.k8s.io/cri-tools/cmd/crictl@$crictl_version"
fi

echo "==> building Arrow"
make GO="$GO" install >/dev/null

echo "==> building the guest kernel into /usr/local/lib/arrow/kernels, for every user (cached after the first time)"
arrow kernel build

echo "==> arrow version"
arrow version

echo "==> arrow run /bin/echo hello from a microVM"
arrow run /bin/echo hello from a microVM

echo "==> arrow run /usr/bin/python3 ... (exit status 3 expected)"
set +e
arrow run /usr/bin/python3 -c 'import sys, platform; print("python", sys.version.split()[0], "in", platform.uname().release); sys.exit(3)'
status=$?
set -e
echo "    arrow exited $status"
[ "$status" -eq 3 ]
echo "==> done: Arrow is installed. Try: arrow run -it /bin/bash"

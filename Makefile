# Arrow's build. `make` builds the binaries into bin/; `make test` runs every
# test, including the ones that boot real VMs (they need the guest kernel:
# `make kernel`, which setup.sh runs).

SHELL    := /bin/bash
GO       ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
PREFIX   ?= /usr/local
LDFLAGS  := -s -w -X main.version=$(VERSION)

.PHONY: all arrow arrow-init arrow-jailer containerd-shim-arrow-v1 install install-systemd kernel test unit lint bench clean

all: arrow arrow-init arrow-jailer containerd-shim-arrow-v1

arrow:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/arrow ./cmd/arrow

# arrow-init is the guest's PID 1: static, no libc, nothing to resolve.
arrow-init:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o bin/arrow-init ./cmd/arrow-init

# arrow-jailer sets up each VM process's jail (package jail): static, so
# that it needs nothing from the host's libraries.
arrow-jailer:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o bin/arrow-jailer ./cmd/arrow-jailer

# containerd's runtime v2 shim (runtime io.containerd.arrow.v1, package
# containerdshim): containerd finds it by name in its PATH, and it finds
# arrow-init and arrow-jailer beside it or in ../libexec/arrow.
containerd-shim-arrow-v1:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/containerd-shim-arrow-v1 ./cmd/containerd-shim-arrow-v1

install: all
	install -D -m 0755 bin/arrow $(DESTDIR)$(PREFIX)/bin/arrow
	install -D -m 0755 bin/arrow-init $(DESTDIR)$(PREFIX)/libexec/arrow/arrow-init
	install -D -m 0755 bin/arrow-jailer $(DESTDIR)$(PREFIX)/libexec/arrow/arrow-jailer
	install -D -m 0755 bin/containerd-shim-arrow-v1 $(DESTDIR)$(PREFIX)/bin/containerd-shim-arrow-v1

# arrowd as a systemd service (the unit runs $(PREFIX)/bin/arrow daemon).
install-systemd: install
	install -D -m 0644 systemd/arrowd.service $(DESTDIR)/etc/systemd/system/arrowd.service
	-systemctl daemon-reload

kernel: arrow
	bin/arrow kernel build

# The test command (README): unit tests, fuzz seeds and VM integration tests.
# Some tests skip where a tool or root is missing (a developer's laptop);
# here, where setup.sh installed everything, a skip is lost coverage and
# fails the run. e2e/testcontainers is a module of its own (testcontainers-go
# stays out of Arrow's go.mod): its test runs after the main module's,
# whatever their outcome, and either failing fails the run.
test: all kernel
	$(GO) vet ./...
	cd e2e/testcontainers && $(GO) vet ./...
	( $(GO) test -count=1 -timeout 30m -v ./...; s=$$?; \
	  cd e2e/testcontainers && $(GO) test -count=1 -timeout 10m -v ./... || s=1; exit $$s ) > test.log 2>&1; status=$$?; \
	grep -E '^(ok|FAIL|panic|\?)' test.log; \
	if [ $$status -ne 0 ]; then grep -B2 -A15 -E -- '--- FAIL|^panic' test.log; exit $$status; fi; \
	if grep -- '--- SKIP' test.log; then echo 'make test: tests were skipped (see above): install what setup.sh installs, run as root' >&2; exit 1; fi

unit:
	$(GO) test -short ./...

lint:
	$(GO) vet ./...
	test -z "$$(gofmt -l $$(git ls-files '*.go'))"

bench: all kernel
	$(GO) run ./bench

clean:
	rm -rf bin

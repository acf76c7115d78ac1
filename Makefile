# treeport: the two commands a fresh Debian machine needs.
#   make demo   build treeport, build a minbase Debian tree, export it, show the image
#   make test   install the test tools, then fmt, clippy and the whole test suite
# Both install the Debian packages they need when they are missing.

SHELL := /bin/bash
CARGO ?= cargo
MIRROR ?= http://deb.debian.org/debian
SUITE ?= bookworm
DEMO := target/demo

# Debian packages: build dependencies, then the real tools the tests drive.
BUILD_PKGS := build-essential pkg-config libostree-dev libglib2.0-dev
TOOL_PKGS := mmdebstrap ostree skopeo umoci oci-image-tool podman docker-registry \
             apache2-utils openssl zstd tar gzip curl ca-certificates time

.PHONY: all build deps demo test check bench clean-demo

all: build

deps:
	@missing=$$(for p in $(BUILD_PKGS) $(TOOL_PKGS); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing:" $$missing; \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@command -v $(CARGO) >/dev/null || { echo "cargo is missing: install Rust from https://rustup.rs"; exit 1; }

build: deps
	$(CARGO) build --release --locked -p treeport-cli

# The main job on a realistic default: a minbase Debian tree, exported.
demo: build
	@mkdir -p $(DEMO)
	@if [ ! -d $(DEMO)/rootfs ]; then \
	    echo "building a minbase $(SUITE) tree with mmdebstrap"; \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO mmdebstrap --variant=minbase --mode=root --quiet $(SUITE) $(DEMO)/rootfs.tmp $(MIRROR) && \
	    mv $(DEMO)/rootfs.tmp $(DEMO)/rootfs; \
	fi
	SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	$$SUDO target/release/treeport export \
	    --source rootfs:$(DEMO)/rootfs \
	    --sink oci:$(DEMO)/oci:$(SUITE) \
	    --label org.opencontainers.image.title="Debian $(SUITE) minbase" \
	    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	    --cmd /bin/bash
	target/release/treeport inspect oci:$(DEMO)/oci:$(SUITE)
	skopeo inspect oci:$(DEMO)/oci:$(SUITE) | head -20

# Everything CI checks: formatting, lints, then every test against real tools.
test: deps
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(CARGO) build --workspace --all-targets --locked
	$(CARGO) test --workspace --locked

check: test

bench: build
	tests/bench.sh

clean-demo:
	rm -rf $(DEMO)

# treeport: the two commands a fresh Debian machine needs.
#   make demo   build treeport, build a minbase Debian tree, export it, show the image
#   make test   install the test tools, then fmt, clippy and the whole test suite
# Both install the Debian packages they need when they are missing.

SHELL := /bin/bash
CARGO ?= cargo
MIRROR ?= http://deb.debian.org/debian
SUITE ?= bookworm
PYENV := target/pyenv
PY_PKGS := spdx-tools==0.8.5 cyclonedx-python-lib[json-validation]==11.12.0 \
           cryptography==50.0.2 pynacl==1.6.2
DEMO := target/demo

# Debian packages: build dependencies, then the real tools the tests drive.
BUILD_PKGS := build-essential pkg-config libostree-dev libglib2.0-dev libzstd-dev libssl-dev \
              libgpgme-dev
TOOL_PKGS := mmdebstrap ostree skopeo umoci oci-image-tool podman docker-registry \
             apache2-utils openssl zstd tar gzip cpio curl ca-certificates time \
             python3 python3-venv jq gnupg

.PHONY: all build deps lint-tools demo test check bench fuzz clean-demo

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
	@# The SBOM validators and the independent cosign key maker the tests
	@# run (from PyPI, in a virtual environment).
	@[ "$$(cat $(PYENV)/.packages 2>/dev/null)" = "$(PY_PKGS)" ] || { \
	    { [ -x $(PYENV)/bin/pip ] || python3 -m venv $(PYENV); } && \
	    $(PYENV)/bin/pip install -q $(PY_PKGS) && echo "$(PY_PKGS)" > $(PYENV)/.packages; }

# rustfmt and clippy, which `make test` runs first: added with rustup when
# the toolchain lacks them.
lint-tools:
	@for c in fmt:rustfmt clippy:clippy; do \
	    $(CARGO) $${c%%:*} --version >/dev/null 2>&1 && continue; \
	    command -v rustup >/dev/null || { echo "cargo $${c%%:*} is missing and there is no rustup to add $${c##*:}"; exit 1; }; \
	    echo "adding the $${c##*:} component"; rustup component add $${c##*:} || exit 1; \
	done

build: deps
	$(CARGO) build --release --locked -p treeport-cli

# The main job on a realistic default: a minbase Debian tree built by
# mmdebstrap, committed to a local OSTree repository, exported by
# `treeport oci build` to an OCI layout and a docker archive, then inspected.
REF := debian/$(SUITE)/minbase
demo: build
	@mkdir -p $(DEMO)
	@SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	if [ ! -d $(DEMO)/rootfs ]; then \
	    echo "== mmdebstrap: a minbase $(SUITE) tree"; \
	    $$SUDO mmdebstrap --variant=minbase --mode=root --quiet $(SUITE) $(DEMO)/rootfs.tmp $(MIRROR) && \
	    $$SUDO find $(DEMO)/rootfs.tmp/dev -mindepth 1 -delete && \
	    mv $(DEMO)/rootfs.tmp $(DEMO)/rootfs; \
	fi; \
	if [ ! -d $(DEMO)/repo ]; then ostree init --repo=$(DEMO)/repo --mode=archive; fi; \
	echo "== ostree commit: $(REF)"; \
	$$SUDO ostree commit --repo=$(DEMO)/repo --branch=$(REF) --skip-if-unchanged \
	    --subject="Debian $(SUITE) minbase" \
	    --add-metadata-string=version=$$(cat $(DEMO)/rootfs/etc/debian_version) \
	    --tree=dir=$(DEMO)/rootfs; \
	echo "== treeport oci build: OCI layout and docker archive"; \
	target/release/treeport oci build --repo $(DEMO)/repo --source $(REF) \
	    --output $(DEMO)/oci --format oci --tag $(SUITE) \
	    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd /bin/bash && \
	target/release/treeport oci build --repo $(DEMO)/repo --source $(REF) \
	    --output $(DEMO)/$(SUITE).tar --format docker --tag debian-minbase:$(SUITE) \
	    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd /bin/bash
	@echo "== treeport inspect oci:$(DEMO)/oci:$(SUITE)"
	target/release/treeport inspect oci:$(DEMO)/oci:$(SUITE)
	@echo "== treeport inspect docker-archive:$(DEMO)/$(SUITE).tar"
	target/release/treeport inspect docker-archive:$(DEMO)/$(SUITE).tar

# Everything CI checks: formatting, lints, then every test against real tools.
test: deps lint-tools
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(CARGO) build --workspace --all-targets --locked
	$(CARGO) test --workspace --locked

check: test

bench: build
	tests/bench.sh

# Fuzz every parser that reads untrusted input for FUZZ_SECONDS each (needs
# a nightly toolchain). Crashes land in fuzz/artifacts/<target>/: copy each
# into tests/fuzz-regressions/<target>/ once fixed, so `make test` replays it.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := selector www_authenticate manifest tar docker_archive pax index_json
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install --locked cargo-fuzz
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	    mkdir -p corpus/$$t && cp -n ../tests/fuzz-regressions/$$t/* corpus/$$t/ 2>/dev/null; \
	    cargo +nightly fuzz run -s none -O $$t corpus/$$t -- \
	        -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -timeout=10 || exit 1; \
	done

clean-demo:
	rm -rf $(DEMO)

# otpgate: the commands a newcomer needs.
#   make demo           build, enroll a demo user, run a throwaway sshd with the module (no system change)
#   make test           install test deps (as root), build, run every test and lint
#   sudo make install   install build deps, build, install module, CLI, man pages, completions
#   make packages       build the .deb (cargo-deb), the recommended install on Debian/Ubuntu
#   make rpm            build the .rpm (cargo-generate-rpm), for Fedora/RHEL
PREFIX ?= /usr/local
DESTDIR ?=
CARGO ?= cargo

.PHONY: all build test install deps lint packages rpm package-test demo demo-test readme-test bench bench-smoke

all: build

deps:
	./packaging/deps.sh

build:
	./packaging/deps.sh --build-only
	$(CARGO) build --release --workspace

install:
	./packaging/install.sh --prefix "$(PREFIX)" --destdir "$(DESTDIR)"

packages:
	./packaging/build-packages.sh --deb

rpm:
	./packaging/build-packages.sh --rpm

demo:
	./packaging/demo.sh

test:
	./packaging/deps.sh
	$(CARGO) build --workspace --all-targets
	$(CARGO) test --workspace
	$(MAKE) lint
	$(MAKE) package-test
	$(MAKE) bench-smoke
	$(MAKE) demo-test
	$(MAKE) readme-test

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Builds the .deb and .rpm and checks every file, mode and place; lintian.
package-test:
	./packaging/test-packages.sh

# otpgate against pam_google_authenticator, side by side (README, Performance).
bench:
	./benches/run.sh

# A few logins of every benchmark scenario: outcomes, not speed.
bench-smoke:
	./benches/smoke.sh

# The demo, non-interactively: one real ssh login with an oathtool code.
demo-test:
	./packaging/demo.sh --self-test

# Runs every command of the README (see packaging/readme-commands.sh).
readme-test:
	./packaging/readme-commands.sh

# otpgate: the two commands a newcomer needs.
#   sudo make install   install build deps, build, install module and CLI
#   make test           install test deps (as root), build, run every test and lint
PREFIX ?= /usr/local
DESTDIR ?=
CARGO ?= cargo

.PHONY: all build test install deps lint

all: build

deps:
	./packaging/deps.sh

build:
	./packaging/deps.sh --build-only
	$(CARGO) build --release --workspace

install:
	./packaging/install.sh --prefix "$(PREFIX)" --destdir "$(DESTDIR)"

test:
	./packaging/deps.sh
	$(CARGO) build --workspace --all-targets
	$(CARGO) test --workspace
	$(MAKE) lint

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

#!/usr/bin/env bash
# Builds the packages of otpgate into OUT (default: <target>/packages): the
# Debian package (cargo-deb) by default (`make packages`), the RPM
# (cargo-generate-rpm) with --rpm (`make rpm`), both with --deb --rpm (the
# package test). Installs the cargo tool a format needs from crates.io first
# when it is missing (pinned, --locked; cargo-deb about 2 minutes,
# cargo-generate-rpm about 4, once per machine), so a .deb never waits for
# the RPM tool.
#
#   ./packaging/build-packages.sh [--out DIR] [--deb] [--rpm]
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
CARGO_GENERATE_RPM_VERSION=0.21.1

out=
deb=0
rpm=0
while (($#)); do
    case "$1" in
        --out) out=$2; shift 2 ;;
        --deb) deb=1; shift ;;
        --rpm) rpm=1; shift ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "build-packages.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
((deb || rpm)) || deb=1

# The target directory cargo uses here (CARGO_TARGET_DIR, config, or ./target).
target=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[[ -n "$target" ]] || { echo "build-packages.sh: no target directory from cargo metadata" >&2; exit 1; }
out=${out:-$target/packages}
mkdir -p "$out"

cargo_bin=${CARGO_HOME:-$HOME/.cargo}/bin
need_tool() { # subcommand crate version
    if cargo "$1" --version >/dev/null 2>&1; then return 0; fi
    echo "otpgate: installing $2 $3 (cargo install --locked)" >&2
    local start=$SECONDS
    cargo install --quiet --locked --version "$3" "$2" >&2
    echo "otpgate: $2 installed in $((SECONDS - start)) s" >&2
}
export PATH="$cargo_bin:$PATH"
((deb == 0)) || need_tool deb cargo-deb "$CARGO_DEB_VERSION"
((rpm == 0)) || need_tool generate-rpm cargo-generate-rpm "$CARGO_GENERATE_RPM_VERSION"

./packaging/deps.sh --build-only
cargo build --release --locked -p pam-module -p otpgate -p otpgated
./packaging/assets.sh "$target/release/otpgate" "$target/release/assets"

if ((deb)); then
    cargo deb --no-build --locked -p otpgate --output "$out" >/dev/null
fi
if ((rpm)); then
    # cargo-generate-rpm does not strip (cargo-deb does): stripped copies.
    mkdir -p "$target/release/assets/stripped"
    strip --strip-unneeded -o "$target/release/assets/stripped/otpgate" "$target/release/otpgate"
    strip --strip-unneeded -o "$target/release/assets/stripped/otpgated" "$target/release/otpgated"
    strip --strip-unneeded -o "$target/release/assets/stripped/libpam_otpgate.so" "$target/release/libpam_otpgate.so"
    cargo generate-rpm -p cli --target-dir "$target" -o "$out" >/dev/null
fi
ls "$out"/*.deb "$out"/*.rpm 2>/dev/null || true

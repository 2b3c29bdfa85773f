#!/usr/bin/env bash
# Builds the Debian package (cargo-deb) and the RPM (cargo-generate-rpm) of
# otpgate into OUT (default: <target>/packages). Installs the two cargo
# tools from crates.io first when they are missing (pinned, --locked; a few
# minutes once per machine).
#
#   ./packaging/build-packages.sh [--out DIR] [--deb-only]
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
CARGO_GENERATE_RPM_VERSION=0.21.1

out=
rpm=1
while (($#)); do
    case "$1" in
        --out) out=$2; shift 2 ;;
        --deb-only) rpm=0; shift ;;
        -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
        *) echo "build-packages.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

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
need_tool deb cargo-deb "$CARGO_DEB_VERSION"
((rpm == 0)) || need_tool generate-rpm cargo-generate-rpm "$CARGO_GENERATE_RPM_VERSION"

./packaging/deps.sh --build-only
cargo build --release --locked -p pam-module -p otpgate
./packaging/assets.sh "$target/release/otpgate" "$target/release/assets"

cargo deb --no-build --locked -p otpgate --output "$out" >/dev/null
if ((rpm)); then
    # cargo-generate-rpm does not strip (cargo-deb does): stripped copies.
    mkdir -p "$target/release/assets/stripped"
    strip --strip-unneeded -o "$target/release/assets/stripped/otpgate" "$target/release/otpgate"
    strip --strip-unneeded -o "$target/release/assets/stripped/libpam_otpgate.so" "$target/release/libpam_otpgate.so"
    cargo generate-rpm -p cli --target-dir "$target" -o "$out" >/dev/null
fi
ls "$out"/*.deb "$out"/*.rpm 2>/dev/null

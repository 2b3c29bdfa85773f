#!/usr/bin/env bash
# Installs what building and testing otpgate needs on Debian/Ubuntu.
# As root it runs apt-get for whatever is missing; otherwise it names what
# is missing (tests that need it then say SKIP) and carries on.
set -euo pipefail

# libssl-dev: otpgated's TLS to PostgreSQL (openssl-sys links the system's).
BUILD_PKGS=(libpam0g-dev libssl-dev pkg-config gcc)
TEST_PKGS=(pamtester libpam-wrapper libnss-wrapper oathtool expect libpam-google-authenticator
           openssh-client strace binutils
           # sshd unpacked from openssh-server (never installed) needs libwrap0;
           # the package test runs lintian and reads the RPM with rpm.
           libwrap0 lintian dpkg-dev rpm
           # the CLI's tests: local-time display and the man pages' roff.
           tzdata groff-base
           # codes by email: msmtp is the sendmail command of the channel tests.
           msmtp
           # fail2ban-regex checks the shipped filter against the module's
           # lines; the package test checks the jail with fail2ban-client -t.
           fail2ban
           # the package test checks the otpgated unit with systemd-analyze
           # verify (installing the package starts nothing in a container).
           systemd
           # the fleet tests run a throwaway cluster from Debian's binaries
           # (initdb/pg_ctl in a temp dir as nobody; no system service).
           postgresql
           # the fleet TLS test makes its CA and certificates with openssl.
           openssl)

# cargo-deny (bans, licenses, sources of the module's dependency tree; the
# hardening suite runs it offline). Built from crates.io, pinned; about two
# minutes on two cores, once per machine.
CARGO_DENY_VERSION=0.20.2
install_cargo_deny() {
    command -v cargo-deny >/dev/null || [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo-deny" ]] && return 0
    command -v cargo >/dev/null || return 0
    echo "otpgate: installing cargo-deny $CARGO_DENY_VERSION (cargo install --locked)" >&2
    cargo install --quiet --locked --version "$CARGO_DENY_VERSION" cargo-deny >&2 ||
        echo "otpgate: cargo-deny did not install; the supply-chain test will say so" >&2
}
if [[ "${1:-}" != "--build-only" && $(id -u) -eq 0 ]]; then
    install_cargo_deny
fi

want=("${BUILD_PKGS[@]}")
[[ "${1:-}" == "--build-only" ]] || want+=("${TEST_PKGS[@]}")

missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
    exit 0
fi
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    echo "otpgate: missing packages: ${missing[*]}" >&2
    echo "otpgate: install them with: sudo apt-get install ${missing[*]}" >&2
    # Building needs the PAM headers; tests skip what they cannot run.
    for p in "${BUILD_PKGS[@]}"; do
        if [[ " ${missing[*]} " == *" $p "* ]]; then exit 1; fi
    done
    exit 0
fi
echo "otpgate: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null

#!/usr/bin/env bash
# Builds otpgate and installs the PAM module, the CLI and an example config.
# It never edits /etc/pam.d or sshd_config: that step is yours (README,
# "Configure PAM"), with a root shell kept open while you do it.
#
#   sudo ./packaging/install.sh [--prefix /usr/local] [--destdir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=/usr/local
destdir=
while (($#)); do
    case "$1" in
        --prefix) prefix=$2; shift 2 ;;
        --destdir) destdir=$2; shift 2 ;;
        -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

./packaging/deps.sh --build-only
cargo build --release --workspace --locked

# The PAM module directory is where pam_unix.so lives (Debian:
# /usr/lib/x86_64-linux-gnu/security or /lib/x86_64-linux-gnu/security).
pam_dir=$(dirname "$(find /usr/lib /lib /usr/lib64 /lib64 -name pam_unix.so -path '*security*' 2>/dev/null | head -n1)")
if [[ -z "$pam_dir" || "$pam_dir" == "." ]]; then
    pam_dir="$(pkg-config --variable=libdir pam)/security"
fi

install -D -m 0644 target/release/libpam_otpgate.so "$destdir$pam_dir/pam_otpgate.so"
install -D -m 0755 target/release/otpgate "$destdir$prefix/bin/otpgate"
if [[ ! -e "$destdir/etc/otpgate/config.toml" ]]; then
    install -D -m 0644 packaging/config.toml "$destdir/etc/otpgate/config.toml"
fi

cat <<MSG
Installed:
  $destdir$pam_dir/pam_otpgate.so
  $destdir$prefix/bin/otpgate
  $destdir/etc/otpgate/config.toml (kept if it existed)
Next: add 'auth required pam_otpgate.so' to the pam.d file of the service
(see README, "Configure PAM"), keeping a root shell open while you test.
MSG

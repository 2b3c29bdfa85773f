#!/usr/bin/env bash
# Builds otpgate and installs the PAM module, the CLI, its man pages and
# shell completions, an example config and /etc/pam.d/otpgate (the CLI's
# password check; kept if present), and otpgated with its systemd unit (not
# enabled: store.kind = "files", the default, needs no daemon). It never edits an existing file in
# /etc/pam.d nor sshd_config: that step is yours (README, "Configure PAM"),
# with a root shell kept open while you do it.
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
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

./packaging/deps.sh --build-only
cargo build --release --locked -p pam-module -p otpgate -p otpgated
target=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
release="$target/release"
./packaging/assets.sh "$release/otpgate" "$release/assets"

# The PAM module directory is where pam_unix.so lives (Debian:
# /usr/lib/x86_64-linux-gnu/security or /lib/x86_64-linux-gnu/security).
pam_dir=$(dirname "$(find /usr/lib /lib /usr/lib64 /lib64 -name pam_unix.so -path '*security*' 2>/dev/null | head -n1)")
if [[ -z "$pam_dir" || "$pam_dir" == "." ]]; then
    pam_dir="$(pkg-config --variable=libdir pam)/security"
fi

install -D -m 0644 "$release/libpam_otpgate.so" "$destdir$pam_dir/pam_otpgate.so"
install -D -m 0755 "$release/otpgate" "$destdir$prefix/bin/otpgate"
install -D -m 0755 "$release/otpgated" "$destdir$prefix/sbin/otpgated"
# systemd reads units from PREFIX/lib/systemd/system for /usr and /usr/local.
unit="$destdir$prefix/lib/systemd/system/otpgated.service"
install -D -m 0644 packaging/systemd/otpgated.service "$unit"
sed -i "s|/usr/sbin/otpgated|$prefix/sbin/otpgated|" "$unit"
# Man pages and completions under PREFIX/share (bash-completion and zsh's
# vendor-completions read /usr/share; with PREFIX=/usr/local, point your
# shell at /usr/local/share or use PREFIX=/usr).
(cd "$release/assets/share" && find . -type f) | while read -r f; do
    install -D -m 0644 "$release/assets/share/$f" "$destdir$prefix/share/${f#./}"
done
if [[ ! -e "$destdir/etc/otpgate/config.toml" ]]; then
    install -D -m 0644 packaging/config.toml "$destdir/etc/otpgate/config.toml"
fi
if [[ ! -e "$destdir/etc/pam.d/otpgate" ]]; then
    install -D -m 0644 "$release/assets/pam.d/otpgate" "$destdir/etc/pam.d/otpgate"
fi

# The system user the email/SMS command runs as (run_as's default). Only
# on the running system: a --destdir install is for someone else's root.
send_user=otpgate-send
if [[ -z "$destdir" ]] && ! getent passwd "$send_user" >/dev/null; then
    useradd --system --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin --comment "otpgate code sender" "$send_user"
    echo "Created the system user $send_user (the email/SMS command runs as it)."
elif [[ -n "$destdir" ]]; then
    echo "Not creating the system user $send_user (--destdir): create it where this is installed."
fi

cat <<MSG
Installed:
  $destdir$pam_dir/pam_otpgate.so
  $destdir$prefix/bin/otpgate
  $destdir$prefix/sbin/otpgated, $unit (not enabled)
  $destdir$prefix/share/man/man1/otpgate*.1.gz (and man5, man8), shell completions
  $destdir/etc/otpgate/config.toml (kept if it existed)
  $destdir/etc/pam.d/otpgate (the password check of otpgate enroll; kept if it existed)
Next: add 'auth required pam_otpgate.so' to the pam.d file of the service
(see README, "Configure PAM"), keeping a root shell open while you test.
MSG

#!/usr/bin/env bash
# Prints the path of an sshd unpacked from Debian's openssh-server package,
# downloading and unpacking it into CACHE_DIR on first use. The package is
# never installed (that would start a system service): `apt-get download`
# fetches the .deb and `dpkg -x` unpacks it. The tests and the demo run the
# binary through a symlink whose name is the PAM service
# (docs/ARCHITECTURE.md, §7).
#
#   ./packaging/fetch-sshd.sh CACHE_DIR     -> CACHE_DIR/root/usr/sbin/sshd
set -euo pipefail
cache=${1:?usage: fetch-sshd.sh CACHE_DIR}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
sshd="$cache/root/usr/sbin/sshd"
if [[ ! -x "$sshd" ]]; then
    command -v apt-get >/dev/null || { echo "fetch-sshd: apt-get not found (Debian/Ubuntu only)" >&2; exit 1; }
    work=$(mktemp -d "$cache/.fetch.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    # apt's sandbox user must be able to write the download directory.
    chmod 0755 "$work"
    if ! (cd "$work" && apt-get download -q openssh-server >/dev/null 2>"$work/apt.err"); then
        if [[ $(id -u) -eq 0 ]]; then
            apt-get update -q >/dev/null && (cd "$work" && apt-get download -q openssh-server >/dev/null 2>"$work/apt.err") ||
                { cat "$work/apt.err" >&2; exit 1; }
        else
            cat "$work/apt.err" >&2
            exit 1
        fi
    fi
    dpkg -x "$work"/openssh-server_*.deb "$work/root"
    # Another process may have won the race: keep the first one.
    mv -T "$work/root" "$cache/root" 2>/dev/null || true
fi
# sshd's libraries (libwrap0 is not always present without openssh-server).
if missing=$(ldd "$sshd" | grep 'not found'); then
    echo "fetch-sshd: $sshd lacks libraries (apt-get install libwrap0?):" >&2
    echo "$missing" >&2
    exit 1
fi
echo "$sshd"

#!/usr/bin/env bash
# Makes the files the packages and `make install` ship besides the two
# binaries, from the built CLI itself (so they cannot drift from it):
#   OUT/share/man/man1/otpgate*.1.gz      otpgate man --dir
#   OUT/share/man/man{5,8}/*.gz          cli/doc/*.5, cli/doc/*.8 when present
#   OUT/share/bash-completion/completions/otpgate
#   OUT/share/zsh/vendor-completions/_otpgate
#   OUT/share/fish/vendor_completions.d/otpgate.fish
#   OUT/pam.d/otpgate                    cli/doc/pam.d-otpgate (Debian)
#
#   ./packaging/assets.sh PATH/TO/otpgate OUT
set -euo pipefail
cd "$(dirname "$0")/.."
otpgate=${1:?usage: assets.sh OTPGATE_BINARY OUT_DIR}
out=${2:?usage: assets.sh OTPGATE_BINARY OUT_DIR}
rm -rf "$out"
mkdir -p "$out/share/man/man1" "$out/share/bash-completion/completions" \
    "$out/share/zsh/vendor-completions" "$out/share/fish/vendor_completions.d" "$out/pam.d"

"$otpgate" man --dir "$out/share/man/man1"
for section in 5 8; do
    for page in cli/doc/*."$section"; do
        [[ -e "$page" ]] || continue
        mkdir -p "$out/share/man/man$section"
        cp "$page" "$out/share/man/man$section/"
    done
done
# gzip -n: no name or time stamp inside, so the package is reproducible.
find "$out/share/man" -type f -name '*.[0-9]' -exec gzip -9 -n -f {} +

"$otpgate" completions bash >"$out/share/bash-completion/completions/otpgate"
"$otpgate" completions zsh >"$out/share/zsh/vendor-completions/_otpgate"
"$otpgate" completions fish >"$out/share/fish/vendor_completions.d/otpgate.fish"

if [[ -e cli/doc/pam.d-otpgate ]]; then
    cp cli/doc/pam.d-otpgate "$out/pam.d/otpgate"
else
    printf '%s\n' '# /etc/pam.d/otpgate: password check of `otpgate enroll`' \
        '@include common-auth' '@include common-account' >"$out/pam.d/otpgate"
fi
find "$out" -type d -exec chmod 0755 {} +
find "$out" -type f -exec chmod 0644 {} +

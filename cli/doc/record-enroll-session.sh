#!/usr/bin/env bash
# Re-records cli/doc/enroll-session.txt, the terminal capture in the
# README's "Enroll" section: the real `otpgate enroll` in a pseudo-terminal
# (expect), run by the unprivileged test user `otpgate-test` with the default
# user file in its home, the password step answered through PAM (pam_wrapper
# and pam_matrix stand in for /etc/pam.d/otpgate and /etc/shadow, so nothing
# in /etc changes), a wrong code first, then the right one from oathtool.
#
#   sudo cli/doc/record-enroll-session.sh [path/to/otpgate]
set -euo pipefail
cd "$(dirname "$0")/../.."
[[ $(id -u) -eq 0 ]] || { echo "needs root (runs the CLI as otpgate-test)" >&2; exit 2; }
USER_NAME=otpgate-test
BIN=${1:-$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/otpgate}
[[ -x $BIN ]] || cargo build -q -p otpgate
id "$USER_NAME" >/dev/null 2>&1 ||
    useradd --system --user-group --home-dir "/home/$USER_NAME" --shell /usr/sbin/nologin "$USER_NAME"
HOME_DIR=$(getent passwd "$USER_NAME" | cut -d: -f6)
install -d -o "$USER_NAME" -g "$USER_NAME" -m 0700 "$HOME_DIR"
rm -rf "$HOME_DIR/.config/otpgate"

T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
chmod 755 "$T"
echo "$USER_NAME:correct horse battery staple:otpgate" >"$T/passdb"
mkdir "$T/pam.d"
echo "auth required /usr/lib/x86_64-linux-gnu/pam_wrapper/pam_matrix.so passdb=$T/passdb" >"$T/pam.d/otpgate"
echo "account required /usr/lib/x86_64-linux-gnu/pam_wrapper/pam_matrix.so passdb=$T/passdb" >>"$T/pam.d/otpgate"
chmod -R a+rX "$T"
cp "$BIN" "$T/otpgate" && chmod 755 "$T/otpgate"

cat >"$T/enroll.exp" <<EOF
set timeout 20
log_user 0
log_file -a -noappend $T/screen.txt
set env(LD_PRELOAD) libpam_wrapper.so
set env(PAM_WRAPPER) 1
set env(PAM_WRAPPER_SERVICE_DIR) $T/pam.d
spawn -noecho setpriv --reuid=$USER_NAME --regid=$USER_NAME --init-groups env HOME=$HOME_DIR $T/otpgate enroll --issuer example.org
expect {
  "Password: " { send "correct horse battery staple\r" }
  timeout { exit 100 }
}
expect {
  -re {secret=([A-Z2-7]+)&} { set secret \$expect_out(1,string) }
  timeout { exit 101 }
}
expect "Verification code: " { send "123456\r" }
expect "Verification code: " { send "[exec oathtool --totp -b \$secret]\r" }
expect eof
EOF
expect "$T/enroll.exp"
{
    echo "\$ otpgate enroll --issuer example.org"
    # The terminal's CRLF line ends, as a file's LF; pam_wrapper's notice
    # about its missing default service is not part of the session.
    tr -d '\r' <"$T/screen.txt" | grep -v '^PWRAP_'
} >cli/doc/enroll-session.txt
echo "recorded cli/doc/enroll-session.txt" >&2

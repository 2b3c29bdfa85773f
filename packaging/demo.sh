#!/usr/bin/env bash
# See otpgate work before touching your system: builds the module and the
# CLI, enrolls a demo user in a temp dir (QR code on screen), and runs a real
# OpenSSH server (Debian's sshd, unpacked, never installed) on 127.0.0.1
# with the module in its PAM stack. Nothing in /etc changes: PAM reads the
# demo's own service file through pam_wrapper, and the demo user exists only
# for that sshd, through nss_wrapper (it runs as uid 65534, "nobody").
# Ctrl-C stops the server and removes the temp dir.
#
#   sudo ./packaging/demo.sh               (or: sudo make demo)
#   sudo ./packaging/demo.sh --self-test   log in once with an oathtool code, then exit
#
# Needs root (sshd switches to the demo user) and, installed with apt-get
# when missing: libpam-wrapper libnss-wrapper openssh-client libwrap0 oathtool.
set -euo pipefail
cd "$(dirname "$0")/.."

self_test=0
case "${1:-}" in
    --self-test) self_test=1 ;;
    "") ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "demo.sh: unknown option $1" >&2; exit 2 ;;
esac

say() { printf '\033[1m%s\033[0m\n' "$*"; }
[[ -t 1 ]] || say() { printf '%s\n' "$*"; }

if [[ $(id -u) -ne 0 ]]; then
    echo "demo.sh: run it as root (sudo make demo): sshd must switch to the demo user." >&2
    echo "It changes nothing in /etc; it creates /run/sshd if missing (sshd's empty directory)." >&2
    exit 1
fi

pkgs=(libpam-wrapper libnss-wrapper openssh-client libwrap0 oathtool libpam0g-dev pkg-config gcc)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    say "Installing ${missing[*]} (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

say "Building pam_otpgate.so and otpgate (cargo build)"
cargo build --quiet -p pam-module -p otpgate
target=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
module="$target/debug/libpam_otpgate.so"
otpgate="$target/debug/otpgate"
sshd=$(./packaging/fetch-sshd.sh "$target/openssh-server")

T=$(mktemp -d /tmp/otpgate-demo.XXXXXX)
sshd_pid=
tail_pid=
cleanup() {
    [[ -z "$tail_pid" ]] || kill "$tail_pid" 2>/dev/null || true
    if [[ -n "$sshd_pid" ]] && kill -0 "$sshd_pid" 2>/dev/null; then
        kill "$sshd_pid" 2>/dev/null || true
        wait "$sshd_pid" 2>/dev/null || true
    fi
    rm -rf "$T"
}
trap cleanup EXIT
trap 'echo; say "Stopping the demo sshd and removing $T"; exit 0' INT TERM

chmod 0711 "$T"
mkdir -p "$T/pam.d" "$T/users" "$T/home/demo"
chmod 0700 "$T/users"
chown 65534:65534 "$T/home/demo"
[[ -d /run/sshd ]] || install -d -m 0755 /run/sshd

# The demo user, for the demo's sshd and CLI only (nss_wrapper), and the
# privilege separation user sshd wants.
password=demo-$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')
{
    cat /etc/passwd
    echo "demo:x:65534:65534:otpgate demo:$T/home/demo:/bin/sh"
    grep -q '^sshd:' /etc/passwd || echo "sshd:x:65534:65534:sshd privsep:/run/sshd:/usr/sbin/nologin"
} >"$T/passwd"
cp /etc/group "$T/group"
export NSS_WRAPPER_PASSWD="$T/passwd" NSS_WRAPPER_GROUP="$T/group"
nss=/usr/lib/x86_64-linux-gnu/libnss_wrapper.so

cat >"$T/config.toml" <<EOF
# The demo's system config (the real one is /etc/otpgate/config.toml).
user_file = "$T/users/%u.toml"
issuer = "otpgate-demo"
remember_days = 1
EOF
chmod 0600 "$T/config.toml"
echo "demo:$password:sshd-otpgate-demo" >"$T/passdb"
# The service file a real /etc/pam.d/sshd would hold, with the password
# checked by pam_matrix (a file) instead of /etc/shadow.
cat >"$T/pam.d/sshd-otpgate-demo" <<EOF
auth     requisite /usr/lib/x86_64-linux-gnu/pam_wrapper/pam_matrix.so passdb=$T/passdb
auth     required  $module config=$T/config.toml
account  required  pam_permit.so
session  required  pam_permit.so
password required  pam_deny.so
EOF
printf 'auth required pam_deny.so\naccount required pam_deny.so\n' >"$T/pam.d/other"

secret=$(head -c 20 /dev/urandom | base32)
say "Enrolling the demo user (otpgate enroll --user demo --secret ... --no-confirm)"
LD_PRELOAD=$nss "$otpgate" --config "$T/config.toml" enroll --user demo --secret "$secret" \
    --no-confirm --issuer otpgate-demo --label demo

ln -s "$sshd" "$T/sshd-otpgate-demo"
ssh-keygen -q -t ed25519 -N '' -f "$T/host_key"
port=
for _ in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 40000))
    cat >"$T/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $port
HostKey $T/host_key
PidFile $T/sshd.pid
UsePAM yes
KbdInteractiveAuthentication yes
PasswordAuthentication no
PubkeyAuthentication no
AuthenticationMethods keyboard-interactive
StrictModes no
UseDNS no
PrintMotd no
EOF
    LD_PRELOAD="libpam_wrapper.so $nss" PAM_WRAPPER=1 PAM_WRAPPER_SERVICE_DIR="$T/pam.d" \
        "$T/sshd-otpgate-demo" -D -e -f "$T/sshd_config" 2>"$T/sshd.log" &
    sshd_pid=$!
    for _ in $(seq 100); do
        grep -q "Server listening" "$T/sshd.log" 2>/dev/null && break
        kill -0 "$sshd_pid" 2>/dev/null || break
        sleep 0.05
    done
    grep -q "Server listening" "$T/sshd.log" && break
    wait "$sshd_pid" 2>/dev/null || true
    sshd_pid=
done
if [[ -z "$sshd_pid" ]]; then
    echo "demo.sh: sshd did not start:" >&2
    cat "$T/sshd.log" >&2
    exit 1
fi

ssh_line="ssh -p $port -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null demo@127.0.0.1"

if ((self_test)); then
    # Answer the prompts like a person would: password, then the app's code.
    cat >"$T/askpass" <<EOF
#!/bin/sh
printf '%s\n' "\$1" >>"$T/prompts"
case "\$1" in
  *'Verification code'*) oathtool --totp -b "$secret" ;;
  *'Skip the code for logins from'*) echo n ;;
  *Password*) echo "$password" ;;
  *) exit 1 ;;
esac
EOF
    chmod 0755 "$T/askpass"
    out=$(SSH_ASKPASS="$T/askpass" SSH_ASKPASS_REQUIRE=force DISPLAY=:0 setsid -w \
        $ssh_line -F /dev/null -o NumberOfPasswordPrompts=1 -o LogLevel=ERROR \
        'echo "hello from $(id -u)"' </dev/null 2>"$T/ssh.err") || true
    pass=0 fail=0
    result() { if [[ $1 == ok ]]; then echo "ok   $2"; pass=$((pass + 1)); else echo "FAIL $2"; fail=$((fail + 1)); fi; }
    [[ "$out" == "hello from 65534" ]] && result ok "the demo login ran the command as the demo user" ||
        result fail "the demo login ran the command as the demo user (got: $out $(cat "$T/ssh.err"))"
    grep -q "Password: " "$T/prompts" && grep -q "Verification code: " "$T/prompts" &&
        result ok "the demo asked for the password, then the code" ||
        result fail "the demo asked for the password, then the code ($(cat "$T/prompts" 2>/dev/null))"
    grep -q "Accepted keyboard-interactive/pam for demo from 127.0.0.1" "$T/sshd.log" &&
        result ok "sshd accepted keyboard-interactive/pam for demo" ||
        result fail "sshd accepted keyboard-interactive/pam for demo: $(cat "$T/sshd.log")"
    echo "$pass passed, $fail failed"
    ((fail == 0))
    exit
fi

cat <<EOF

$(say "A real sshd with otpgate listens on 127.0.0.1:$port (pid $sshd_pid).")
1. Scan the QR code above (or type the secret) into an authenticator app
   (the entry is "otpgate-demo: demo"), or use: oathtool --totp -b $secret
2. In another terminal on this machine:

   $ssh_line

   Password:          $password
   Verification code: the 6 digits from the app (or one backup code above)
   Skip the code ...? y skips the code from this address, for this service, for a day (remember_days = 1 here)

Try a wrong code, a reused code, a backup code twice. The module's service
file is $T/pam.d/sshd-otpgate-demo; the user file is
$T/users/demo.toml. sshd's log follows here. Ctrl-C stops the demo.

EOF
tail -n +1 -f "$T/sshd.log" &
tail_pid=$!
wait "$sshd_pid" || true
kill "$tail_pid" 2>/dev/null || true

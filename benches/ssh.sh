#!/usr/bin/env bash
# SSH end to end, for benches/run.sh: one unpacked sshd (packaging/fetch-sshd.sh)
# on 127.0.0.1, set up as tests/src/sshd.rs does (own config and host key,
# pam_wrapper for the PAM service dir, nss_wrapper for the privsep user), and
# an askpass-driven ssh client timed from exec to exit of `ssh root@127.0.0.1 true`.
# Three PAM stacks; each round runs all three, its order rotated round by round:
#   pw   pam_matrix password only
#   ga   password + pam_google_authenticator
#   otp  password + otpgate
# The second factor is answered with a backup (scratch) code: sshd runs on
# the real clock, and n distinct TOTP codes would take n × 30 s. Both sides are
# re-enrolled with 10 fresh codes every 10 rounds (not timed).
#
#   benches/ssh.sh WORKDIR MODULE GA_MODULE CLI N  -> WORKDIR/ssh.{pw,ga,otp}: one "ms ok" line per login
set -euo pipefail
W=$1 MOD=$2 GA=$3 CLI=$4 N=$5
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PW=/usr/lib/x86_64-linux-gnu/pam_wrapper
NSS=/usr/lib/x86_64-linux-gnu/libnss_wrapper.so
SVC=sshd-otp-bench
TARGET_DIR=$(dirname "$(dirname "$MOD")")
SSHD=$("$ROOT/packaging/fetch-sshd.sh" "$TARGET_DIR/openssh-server")
S=$W/ssh
mkdir -p "$S/pam.d" "$S/state" "$S/ga"
chmod 700 "$S/state" "$S/ga"
[[ -d /run/sshd ]] || install -d -m 755 /run/sshd
ln -sf "$SSHD" "$S/$SVC"
ssh-keygen -q -t ed25519 -N '' -f "$S/host_key"
cp /etc/group "$S/group"
cp /etc/passwd "$S/passwd"
grep -q '^sshd:' "$S/passwd" || echo 'sshd:x:65534:65534:sshd privsep:/run/sshd:/usr/sbin/nologin' >>"$S/passwd"
cat >"$S/otpgate.toml" <<EOF
user_file = "$S/state/%u.toml"
EOF

# The service file for one stack; sshd's PAM service is re-pointed between logins.
stack() { # pw|ga|otp
    {
        echo "auth requisite $PW/pam_matrix.so passdb=$S/passdb"
        case $1 in
            ga) echo "auth required $GA secret=$S/ga/\${USER} user=root" ;;
            otp) echo "auth required $MOD config=$S/otpgate.toml" ;;
        esac
        printf 'account required pam_permit.so\nsession required pam_permit.so\npassword required pam_deny.so\n'
    } >"$S/pam.d/$SVC"
}
echo "root:secret:$SVC" >"$S/passdb"
echo 'auth required pam_deny.so' >"$S/pam.d/other"

enroll() { # fresh default enrollments; codes in $S/otp.codes, $S/ga.codes
    rm -f "$S"/state/* "$S"/ga/*
    local secret
    secret=$(python3 -c 'import base64,os; print(base64.b32encode(os.urandom(20)).decode())')
    "$CLI" --config "$S/otpgate.toml" enroll --user root --secret "$secret" --no-confirm --json --no-qr |
        python3 -c 'import json,sys; print("\n".join(json.load(sys.stdin)["backup_codes"]))' >"$S/otp.codes"
    python3 -c 'import secrets; print("\n".join(str(10**7 + secrets.randbelow(9 * 10**7)) for _ in range(10)))' >"$S/ga.codes"
    { echo "$secret"; echo '" WINDOW_SIZE 3'; echo '" DISALLOW_REUSE'; echo '" TOTP_AUTH'; cat "$S/ga.codes"; } >"$S/ga/root"
    chmod 400 "$S/ga/root"
}

start_sshd() {
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    cat >"$S/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $PORT
HostKey $S/host_key
PidFile $S/sshd.pid
UsePAM yes
KbdInteractiveAuthentication yes
PasswordAuthentication no
PubkeyAuthentication no
AuthenticationMethods keyboard-interactive
PermitRootLogin yes
StrictModes no
UseDNS no
MaxAuthTries 10
LogLevel INFO
EOF
    LD_PRELOAD="libpam_wrapper.so $NSS" PAM_WRAPPER=1 PAM_WRAPPER_SERVICE_DIR=$S/pam.d \
        NSS_WRAPPER_PASSWD=$S/passwd NSS_WRAPPER_GROUP=$S/group \
        "$S/$SVC" -D -e -f "$S/sshd_config" </dev/null >"$S/sshd.log" 2>&1 &
    SSHD_PID=$!
    for _ in $(seq 100); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 1)" 2>/dev/null && return 0
        sleep 0.1
    done
    cat "$S/sshd.log" >&2
    return 1
}
SSHD_PID=
trap '[[ -n "$SSHD_PID" ]] && kill "$SSHD_PID" 2>/dev/null; wait 2>/dev/null' EXIT

cat >"$S/askpass" <<'EOF'
#!/bin/sh
case "$1" in
  *'Verification code'*) exec cat "$(dirname "$0")/answer.code" ;;
  *[Pp]assword*) echo secret; exit 0 ;;
esac
exit 1
EOF
chmod 755 "$S/askpass"

login() { # -> "ms ok" (ok: 1 when the command ran)
    local t0 t1 ok=0
    t0=$(date +%s%N)
    if SSH_ASKPASS=$S/askpass SSH_ASKPASS_REQUIRE=force DISPLAY=:0 setsid -w ssh -F /dev/null -p "$PORT" \
        -o PreferredAuthentications=keyboard-interactive -o StrictHostKeyChecking=no \
        -o UserKnownHostsFile=/dev/null -o GlobalKnownHostsFile=/dev/null -o LogLevel=ERROR \
        -o NumberOfPasswordPrompts=1 -o ConnectTimeout=10 -o IdentitiesOnly=yes -o IdentityAgent=none \
        -o PubkeyAuthentication=no root@127.0.0.1 true </dev/null >/dev/null 2>>"$S/ssh.err"; then
        ok=1
    fi
    t1=$(date +%s%N)
    awk -v us=$(((t1 - t0) / 1000)) -v ok=$ok 'BEGIN {printf "%.1f %d\n", us / 1000, ok}'
}

start_sshd
: >"$S/ssh.pw"; : >"$S/ssh.ga"; : >"$S/ssh.otp"
for r in $(seq 0 $((N - 1))); do
    if ((r % 10 == 0)); then enroll; fi
    # The order rotates round by round, so no stack always runs first.
    order=(pw ga otp pw ga)
    for s in "${order[@]:$((r % 3)):3}"; do
        stack "$s"
        case $s in
            ga) sed -n "$((r % 10 + 1))p" "$S/ga.codes" >"$S/answer.code" ;;
            otp) sed -n "$((r % 10 + 1))p" "$S/otp.codes" >"$S/answer.code" ;;
            pw) : >"$S/answer.code" ;;
        esac
        login >>"$S/ssh.$s"
    done
done

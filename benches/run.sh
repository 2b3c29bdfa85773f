#!/usr/bin/env bash
# otpgate vs pam_google_authenticator, side by side in one run.
#
#   ./benches/run.sh            # N=200 cycles per round, 3 rounds A B A B ...
#   N=500 ROUNDS=5 ./benches/run.sh
#
# Builds the release module and CLI, compiles benches/pam_bench.c (real
# libpam, pam_start_confdir, in-process loop, fake wall clock shared by both
# modules), runs every scenario alternating otpgate and google-authenticator,
# and writes a Markdown table to benches/results.md (also printed; OUT=FILE
# writes it elsewhere).
# Needs root for the /dev/log sink and the root-owned state directory.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N=${N:-200}
ROUNDS=${ROUNDS:-3}
PROCS=${PROCS:-64}
PER_PROC=${PER_PROC:-20}
OUT=${OUT:-$ROOT/benches/results.md}
NBACKUP=100 # most backup codes one enrollment holds

[[ $(id -u) -eq 0 ]] || { echo "benches/run.sh: needs root (state dirs, /dev/log sink)" >&2; exit 2; }
./packaging/deps.sh >&2
for tool in oathtool strace gcc python3; do
    command -v $tool >/dev/null || { echo "benches/run.sh: $tool missing" >&2; exit 2; }
done

echo "building release module and CLI..." >&2
cargo build --release --quiet -p pam-module -p otpgate
TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
MOD=$TARGET/release/libpam_otpgate.so
CLI=$TARGET/release/otpgate
GA=$(find /usr/lib /lib -name pam_google_authenticator.so -path '*security*' 2>/dev/null | head -n1)
PAM_DIR=$(dirname "$(find /usr/lib /lib -name pam_permit.so -path '*security*' 2>/dev/null | head -n1)")
[[ -n "$GA" ]] || { echo "benches/run.sh: pam_google_authenticator.so not found" >&2; exit 2; }

W=$(mktemp -d /var/tmp/otpgate-bench.XXXXXX)
chmod 755 "$W"
SINK_PID=
cleanup() {
    [[ -n "$SINK_PID" ]] && kill "$SINK_PID" 2>/dev/null && rm -f /dev/log
    rm -rf "$W"
}
trap cleanup EXIT

gcc -O2 -Wall -rdynamic -o "$W/pam_bench" benches/pam_bench.c -lpam

# No syslog daemon runs on these machines: glibc's syslog() would then write
# /dev/console (milliseconds a line). Both modules log to one datagram sink.
SINK_NOTE="an existing /dev/log"
if [[ ! -S /dev/log ]]; then
    python3 -c '
import os, socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("/dev/log"); os.chmod("/dev/log", 0o666)
while True: s.recv(65536)' &
    SINK_PID=$!
    for _ in $(seq 50); do [[ -S /dev/log ]] && break; sleep 0.05; done
    SINK_NOTE="a datagram sink bound to /dev/log by this script"
fi

SECRET=$(python3 -c 'import base64,os; print(base64.b32encode(os.urandom(20)).decode())')
mkdir -p "$W/pam.d" "$W/state" "$W/ga"
chmod 700 "$W/state" "$W/ga"

write_configs() {
    cat >"$W/otpgate.toml" <<EOF
user_file = "$W/state/%u.toml"
max_attempts = 1
lockout_after = 0
backup_codes = $NBACKUP
EOF
    sed 's/^lockout_after.*/&\ntrusted_networks = ["127.0.0.0\/8"]/' "$W/otpgate.toml" >"$W/otpgate-trusted.toml"
    echo "auth required $MOD config=$W/otpgate.toml" >"$W/pam.d/otp"
    # Same durability as google-authenticator: file fsynced, rename not.
    echo "auth required $MOD config=$W/otpgate.toml fsync_directory=false" >"$W/pam.d/otp-fast"
    echo "auth required $MOD config=$W/otpgate-trusted.toml" >"$W/pam.d/otp-trusted"
    echo "auth required $GA secret=$W/ga/\${USER} user=root" >"$W/pam.d/ga"
    # google-authenticator has no trusted networks; admins put pam_access
    # in front of it, which is what this measures.
    printf '+ : root : 127.0.0.1\n- : ALL : ALL\n' >"$W/access.conf"
    printf 'auth [success=done default=ignore] %s/pam_access.so accessfile=%s\nauth required %s secret=%s/ga/${USER} user=root\n' \
        "$PAM_DIR" "$W/access.conf" "$GA" "$W" >"$W/pam.d/ga-trusted"
    echo "auth required $PAM_DIR/pam_permit.so" >"$W/pam.d/permit"
}

# Fresh enrollments on both sides with the same secret and window (±1
# step); both refuse a reused code (DISALLOW_REUSE); backup codes written
# to $W/backup.txt (otpgate's) and $W/scratch.txt (google-authenticator's).
enroll() {
    rm -f "$W"/state/* "$W"/ga/*
    "$CLI" --config "$W/otpgate.toml" enroll --user root --secret "$SECRET" --no-confirm --json --no-qr \
        | python3 -c 'import json,sys; print("\n".join(json.load(sys.stdin)["backup_codes"]))' >"$W/backup.txt"
        # google-authenticator's scratch codes are 8 digits without a leading 0.
    python3 -c 'import secrets; print("\n".join(str(10**7 + secrets.randbelow(9 * 10**7)) for _ in range('$NBACKUP')))' >"$W/scratch.txt"
    # RATE_LIMIT makes it write its file on every attempt, as otpgate does
    # (failure count); 100 per 30 s never triggers here.
    { echo "$SECRET"; echo '" RATE_LIMIT 100 30'; echo '" WINDOW_SIZE 3'; echo '" DISALLOW_REUSE'; echo '" TOTP_AUTH'; cat "$W/scratch.txt"; } >"$W/ga/root"
    chmod 400 "$W/ga/root"
}

START=2000000010 # advanced per run so every code is fresh on both sides
# run_pair NAME SERVICE_A SERVICE_B ANSWERS_A ANSWERS_B [RHOST] [CYCLES]
# prints two result lines "A ..." and "B ..." per round to $W/NAME.A/.B
bench() { # service answers cycles rhost start
    local args=(-c "$W/pam.d" -s "$1" -u root -n "$3" -t "$5" -p 30)
    [[ -n "$2" ]] && args+=(-a "$2")
    [[ -n "$4" ]] && args+=(-r "$4")
    "$W/pam_bench" "${args[@]}"
}

codes_from() { # start count -> file of TOTP codes for consecutive steps
    oathtool --totp -w $(($2 - 1)) -N "@$1" -b "$SECRET" >"$W/codes.txt"
    echo "$W/codes.txt"
}

run_scenario() { # name otp-service ga-service kind(totp|wrong|backup|none) cycles rhost
    local name=$1 a=$2 b=$3 kind=$4 cycles=$5 rhost=${6:-}
    : >"$W/$name.A"; : >"$W/$name.B"
    for r in $(seq "$ROUNDS"); do
        [[ $kind == backup ]] && enroll
        for side in A B; do
            local svc=$a ans=""
            [[ $side == B ]] && svc=$b
            case $kind in
                totp) ans=$(codes_from "$START" "$cycles") ;;
                wrong) echo 000000 >"$W/wrong.txt"; ans=$W/wrong.txt ;;
                backup) ans=$W/backup.txt; [[ $side == B ]] && ans=$W/scratch.txt ;;
            esac
            bench "$svc" "$ans" "$cycles" "$rhost" "$START" >>"$W/$name.$side"
            START=$((START + cycles * 30 + 300))
        done
    done
}

# Median over rounds of one field.
field() { # file key
    grep -o "$2=[0-9.]*" "$1" | cut -d= -f2 | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}
okfail() { awk '{for(i=1;i<=NF;i++){split($i,kv,"="); if(kv[1]=="ok")o+=kv[2]; if(kv[1]=="cycles")c+=kv[2]}} END {printf "%d/%d", o, c}' "$1"; }

write_configs
enroll
echo "running scenarios (N=$N, ROUNDS=$ROUNDS)..." >&2
run_scenario success otp ga totp "$N" 203.0.113.9
run_scenario success-fast otp-fast ga totp "$N" 203.0.113.9
run_scenario wrong otp ga wrong "$N" 203.0.113.9
run_scenario backup otp ga backup "$(( N < NBACKUP ? N : NBACKUP ))" 203.0.113.9
run_scenario trusted otp-trusted ga-trusted none "$N" 127.0.0.1
: >"$W/permit.A"
for r in $(seq "$ROUNDS"); do bench permit "" "$N" "" "$START" >>"$W/permit.A"; done

# Contention: PROCS processes, same user, same codes at the same fake times.
contention() { # service -> "per_s p99 twice"
    enroll
    local codes; codes=$(codes_from "$START" "$PER_PROC")
    local out="$W/cont-$1"
    rm -f "$out".*
    local wall
    wall=$("$W/pam_bench" -c "$W/pam.d" -s "$1" -u root -n "$PER_PROC" -t "$START" -p 30 -a "$codes" -r 203.0.113.9 -P "$PROCS" -o "$out" | sed 's/wall_s=//')
    START=$((START + PER_PROC * 30 + 300))
    local total=$((PROCS * PER_PROC))
    local per_s; per_s=$(python3 -c "print(round($total/$wall, 1))")
    local p99; p99=$(cat "$out".[0-9]* | grep -v accepted | grep -o 'p99_ms=[0-9.]*' | cut -d= -f2 | sort -g | tail -n1)
    # Each cycle's code is one code: accepted by more than one process = a replay.
    local twice; twice=$(cat "$out".*.accepted | sed 's/accepted=//' | tr ',' '\n' | grep -v '^$' | sort -n | uniq -c | awk '$1 > 1 {n++} END {print n+0}')
    local acc; acc=$(cat "$out".*.accepted | sed 's/accepted=//' | tr ',' '\n' | grep -vc '^$' || true)
    echo "$per_s $p99 $twice $acc"
}
read -r C_A_S C_A_P C_A_T C_A_N < <(contention otp)
read -r C_F_S C_F_P C_F_T C_F_N < <(contention otp-fast)
read -r C_B_S C_B_P C_B_T C_B_N < <(contention ga)

# fsyncs and renames per successful login, counted with strace.
syscalls() { # service
    enroll
    local codes; codes=$(codes_from "$START" 20)
    strace -f -c -o "$W/strace.txt" -e trace=fsync,fdatasync,rename,renameat,renameat2 \
        "$W/pam_bench" -c "$W/pam.d" -s "$1" -u root -n 20 -t "$START" -p 30 -a "$codes" -r 203.0.113.9 >/dev/null
    START=$((START + 20 * 30 + 300))
    awk '$NF ~ /^(fsync|fdatasync)$/ {f += $4} $NF ~ /^rename/ {r += $4} END {printf "%.1f %.1f\n", f/20, r/20}' "$W/strace.txt"
}
read -r SYS_A_F SYS_A_R < <(syscalls otp)
read -r SYS_F_F SYS_F_R < <(syscalls otp-fast)
read -r SYS_B_F SYS_B_R < <(syscalls ga)

# Footprint of the module.
cp "$MOD" "$W/stripped.so" && strip "$W/stripped.so"
SO_SIZE=$(stat -c %s "$W/stripped.so")
GA_SIZE=$(stat -c %s "$GA")
CRATES=$(cargo tree -p pam-module -e normal --prefix none 2>/dev/null | sed 's/ (\*)//' | sort -u | wc -l)
footprint() { # so -> "rss_kib first_login_ms"
    python3 - "$1" "$W" <<'PY'
import ctypes, sys, time, os
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
before = rss()
t0 = time.perf_counter()
ctypes.CDLL(sys.argv[1], mode=os.RTLD_NOW)
print(rss() - before, round((time.perf_counter() - t0) * 1e3, 2))
PY
}
read -r RSS_A LOAD_A < <(footprint "$MOD")
read -r RSS_B LOAD_B < <(footprint "$GA")
# First login in a fresh process (dlopen + config + file + code + write).
first_login() {
    enroll
    local codes; codes=$(codes_from "$START" 1)
    "$W/pam_bench" -c "$W/pam.d" -s "$1" -u root -n 1 -t "$START" -p 30 -a "$codes" -r 203.0.113.9 | grep -o 'p50_ms=[0-9.]*' | cut -d= -f2
    START=$((START + 600))
}
FIRST_A=$(first_login otp)
FIRST_B=$(first_login ga)

row() { # label fileA fileB
    local a_s a_50 a_99 b_s b_50 b_99
    a_s=$(field "$2" per_s); a_50=$(field "$2" p50_ms); a_99=$(field "$2" p99_ms)
    b_s=$(field "$3" per_s); b_50=$(field "$3" p50_ms); b_99=$(field "$3" p99_ms)
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | **%.2f×** |\n' "$1" "$a_s" "$a_50" "$a_99" "$(okfail "$2")" "$b_s" "$b_50" "$b_99" "$(okfail "$3")" \
        "$(python3 -c "print($a_s/$b_s)")"
}

CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
FS=$(findmnt -no FSTYPE -T /var/tmp)
{
    echo "### Benchmark: otpgate vs pam_google_authenticator"
    echo
    echo "$(date -u +%Y-%m-%d), $(nproc) cores ($CPU), $(free -g | awk '/Mem:/ {print $2}') GiB, state on $FS (/var/tmp), $(uname -r)."
    echo "In-process loop of pam_start_confdir → pam_authenticate → pam_end through real libpam;"
    echo "N=$N cycles per round, $ROUNDS rounds alternating otpgate (A) and google-authenticator (B), median of rounds;"
    echo "logs to $SINK_NOTE. Same secret, window ±1 step, reuse refused on both sides; a fake wall clock advances"
    echo "30 s per cycle so every code is fresh. Both write state on every attempt: otpgate counts failures (bench config"
    echo "\`max_attempts = 1\`, \`lockout_after = 0\`: counted, never locking), google-authenticator has \`RATE_LIMIT 100 30\` (recorded, never limiting)."
    echo
    echo "| scenario | otpgate logins/s | p50 ms | p99 ms | ok | google-auth logins/s | p50 ms | p99 ms | ok | ratio |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    row "correct TOTP code" "$W/success.A" "$W/success.B"
    row "correct TOTP code, otpgate \`fsync_directory = false\` (google-auth's durability)" "$W/success-fast.A" "$W/success-fast.B"
    row "wrong code" "$W/wrong.A" "$W/wrong.B"
    row "backup code" "$W/backup.A" "$W/backup.B"
    row "trusted network (google-auth: pam_access in front)" "$W/trusted.A" "$W/trusted.B"
    printf '| %s processes × %s logins, same user, same codes | %s | | %s | %s accepted, %s codes twice | %s | | %s | %s accepted, %s codes twice | **%.2f×** |\n' \
        "$PROCS" "$PER_PROC" "$C_A_S" "$C_A_P" "$C_A_N" "$C_A_T" "$C_B_S" "$C_B_P" "$C_B_N" "$C_B_T" "$(python3 -c "print($C_A_S/$C_B_S)")"
    printf '| same, otpgate `fsync_directory = false` | %s | | %s | %s accepted, %s codes twice | %s | | %s | %s accepted, %s codes twice | **%.2f×** |\n' \
        "$C_F_S" "$C_F_P" "$C_F_N" "$C_F_T" "$C_B_S" "$C_B_P" "$C_B_N" "$C_B_T" "$(python3 -c "print($C_F_S/$C_B_S)")"
    echo
    echo "Baseline: \`pam_permit\` alone $(field "$W/permit.A" per_s) logins/s (p50 $(field "$W/permit.A" p50_ms) ms)."
    echo "Durability per correct-code login (strace): otpgate $SYS_A_F fsync + $SYS_A_R rename (with \`fsync_directory = false\`: $SYS_F_F fsync + $SYS_F_R rename); google-authenticator $SYS_B_F fsync + $SYS_B_R rename."
    echo
    echo "| footprint | otpgate | google-authenticator |"
    echo "| --- | ---: | ---: |"
    echo "| module size (stripped) | $((SO_SIZE / 1024)) KiB | $((GA_SIZE / 1024)) KiB |"
    echo "| crates in the module's dependency tree | $CRATES | (C, libc + libpam) |"
    echo "| resident memory added by dlopen | $RSS_A KiB | $RSS_B KiB |"
    echo "| dlopen time | $LOAD_A ms | $LOAD_B ms |"
    echo "| first login in a fresh process | $FIRST_A ms | $FIRST_B ms |"
} | tee "$OUT"

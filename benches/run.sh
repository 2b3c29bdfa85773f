#!/usr/bin/env bash
# otpgate vs pam_google_authenticator, side by side in one run.
#
#   ./benches/run.sh            # N=200 cycles per round, 3 rounds A B A B ...
#   N=500 ROUNDS=5 ./benches/run.sh
#
# Builds the release module, CLI and otpgated, compiles benches/pam_bench.c (real
# libpam, pam_start_confdir, in-process loop, fake wall clock shared by both
# modules), runs every scenario alternating otpgate and google-authenticator,
# and writes a Markdown table to benches/results.md (also printed; OUT=FILE
# writes it elsewhere).
# The "records in PostgreSQL" rows run a throwaway cluster from Debian's
# binaries (/usr/lib/postgresql/<v>/bin, as the fleet tests do) in the work
# directory as nobody, and three otpgated on it; without those binaries the
# script says so and leaves out only those rows.
# Needs root for the /dev/log sink and the root-owned state directory.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N=${N:-200}
ROUNDS=${ROUNDS:-3}
PROCS=${PROCS:-64}
PER_PROC=${PER_PROC:-20}
OUT=${OUT:-$ROOT/benches/results.md}
FRESH=${FRESH:-300} # logins per module in the fresh-process row
SSH_N=${SSH_N:-60} # ssh logins per stack in the end-to-end row
NBACKUP=10 # the default enrollment; the labelled 100-code row below re-enrolls with BIG_BACKUP
BIG_BACKUP=100 # most backup codes one enrollment holds

[[ $(id -u) -eq 0 ]] || { echo "benches/run.sh: needs root (state dirs, /dev/log sink)" >&2; exit 2; }
./packaging/deps.sh >&2
for tool in oathtool strace gcc python3 ssh ssh-keygen setsid setpriv; do
    command -v $tool >/dev/null || { echo "benches/run.sh: $tool missing" >&2; exit 2; }
done

echo "building release module, CLI and daemon..." >&2
cargo build --release --quiet -p pam-module -p otpgate -p otpgated
TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
MOD=$TARGET/release/libpam_otpgate.so
CLI=$TARGET/release/otpgate
DAEMON=$TARGET/release/otpgated
GA=$(find /usr/lib /lib -name pam_google_authenticator.so -path '*security*' 2>/dev/null | head -n1)
PAM_DIR=$(dirname "$(find /usr/lib /lib -name pam_permit.so -path '*security*' 2>/dev/null | head -n1)")
[[ -n "$GA" ]] || { echo "benches/run.sh: pam_google_authenticator.so not found" >&2; exit 2; }
# Debian's PostgreSQL binaries, the newest version installed; none: no pg rows.
PG_BIN=$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/initdb' 2>/dev/null | sort -V | tail -n1 || true)
PG_BIN=${PG_BIN%/initdb}
if [[ -z "$PG_BIN" ]]; then
    echo "benches/run.sh: PostgreSQL binaries missing (/usr/lib/postgresql/<v>/bin, Debian package postgresql): skipping the \"records in PostgreSQL\" rows" >&2
fi

W=$(mktemp -d /var/tmp/otpgate-bench.XXXXXX)
chmod 755 "$W"
SINK_PID=
DAEMON_PIDS=()
PG_STARTED=
cleanup() {
    local pid
    for pid in "${DAEMON_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    [[ -n "$PG_STARTED" ]] && as_nobody "$PG_BIN/pg_ctl" -D "$W/pg/data" -m immediate stop >/dev/null 2>&1
    [[ -n "$SINK_PID" ]] && kill "$SINK_PID" 2>/dev/null && rm -f /dev/log
    rm -rf "$W" # as root: the cluster's files (nobody's) too
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
    # shellcheck disable=SC2016 # ${USER} is google-authenticator's, expanded by the module
    printf 'auth [success=done default=ignore] %s/pam_access.so accessfile=%s\nauth required %s secret=%s/ga/${USER} user=root\n' \
        "$PAM_DIR" "$W/access.conf" "$GA" "$W" >"$W/pam.d/ga-trusted"
    echo "auth required $PAM_DIR/pam_permit.so" >"$W/pam.d/permit"
    # The same config with the records in otpgated (root's requests carry
    # the bench's fake time, which the daemon takes from root only).
    { cat "$W/otpgate.toml"
      printf '\n[store]\nkind = "daemon"\nsocket = "%s/run/otpgated.sock"\n\n[daemon]\nstate_dir = "%s/dstate"\n' "$W" "$W"
    } >"$W/daemon.toml"
    echo "auth required $MOD config=$W/daemon.toml" >"$W/pam.d/otp-daemon"
}

# The same config with `daemon.backend = "postgres"`, for three "hosts" on
# one database: host a ($W/pg.toml, socket $W/run/pg-a.sock, service otp-pg),
# b and c ($W/pg-b.toml, otp-pg-b; $W/pg-c.toml, otp-pg-c).
write_pg_configs() {
    local host config service
    for host in a b c; do
        config=$W/pg-$host.toml service=otp-pg-$host
        [[ $host == a ]] && config=$W/pg.toml service=otp-pg
        { cat "$W/otpgate.toml"
          printf '\n[store]\nkind = "daemon"\nsocket = "%s/run/pg-%s.sock"\n\n[daemon]\nbackend = "postgres"\n' "$W" "$host"
          # timeout: the default (below store.timeout, as `otpgate check` wants it)
          printf '\n[daemon.postgres]\nurl = "host=127.0.0.1 port=%s user=otpgate dbname=otpgate"\npassword_file = "%s/pg/password"\n' "$PG_PORT" "$W"
        } >"$config"
        echo "auth required $MOD config=$config" >"$W/pam.d/$service"
    done
}

# An otpgated, its log in $W/otpgated-NAME.log.
start_daemon() { # config socket name
    "$DAEMON" --config "$1" 2>>"$W/otpgated-$3.log" &
    DAEMON_PIDS+=($!)
    for _ in $(seq 100); do [[ -S "$2" ]] && return 0; sleep 0.05; done
    echo "benches/run.sh: otpgated ($3) did not start: $(cat "$W/otpgated-$3.log")" >&2
    exit 2
}

# One of the cluster's programs as nobody (as the fleet tests run them).
as_nobody() {
    (cd / && setpriv --reuid=65534 --regid=65534 --clear-groups "$@")
}

# A throwaway cluster in $W/pg (data/ and sock/ nobody's), on 127.0.0.1 and
# a free port, durable as a production one (fsync, synchronous commit);
# the role otpgate (password in the root-only $W/pg/password, SCRAM over
# TCP) owns the database otpgate. Stopped by cleanup().
start_postgres() {
    mkdir -p "$W/pg/data" "$W/pg/sock"
    chown 65534:65534 "$W/pg/data" "$W/pg/sock"
    chmod 700 "$W/pg/data"
    PG_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_nobody "$PG_BIN/initdb" -D "$W/pg/data" -U postgres -N --auth-local=trust --auth-host=scram-sha-256 \
        >"$W/pg/initdb.log" 2>&1 || { echo "benches/run.sh: initdb failed: $(cat "$W/pg/initdb.log")" >&2; exit 2; }
    # Every contention process may hold a database connection at once.
    local max=$((PROCS + 50 > 100 ? PROCS + 50 : 100))
    PG_STARTED=1
    as_nobody "$PG_BIN/pg_ctl" -D "$W/pg/data" -l "$W/pg/sock/postgres.log" -w \
        -o "-p $PG_PORT -k $W/pg/sock -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on -c max_connections=$max" \
        start >/dev/null || { echo "benches/run.sh: PostgreSQL did not start: $(cat "$W/pg/sock/postgres.log")" >&2; exit 2; }
    local pw; pw=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
    (umask 077 && printf '%s\n' "$pw" >"$W/pg/password")
    # The password on stdin, not on a command line.
    printf "CREATE ROLE otpgate LOGIN PASSWORD '%s';\nCREATE DATABASE otpgate OWNER otpgate;\n" "$pw" \
        | "$PG_BIN/psql" -X -q -h "$W/pg/sock" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -f - >/dev/null
    PG_VERSION=$("$PG_BIN/psql" -X -At -h "$W/pg/sock" -p "$PG_PORT" -U postgres -d postgres -c 'SHOW server_version')
}

# Fresh enrollments on both sides with the same secret and window (±1
# step); both refuse a reused code (DISALLOW_REUSE); backup codes written
# to $W/backup.txt (otpgate's) and $W/scratch.txt (google-authenticator's).
# With ENROLL_VIA=daemon otpgate's enrollment is made through the otp-daemon
# otpgated, with ENROLL_VIA=pg through host a's (into the database,
# replacing the last one: --force), instead of in the file store (their
# configs' backup_codes, $NBACKUP).
enroll() { # [backup codes]
    local nb=${1:-$NBACKUP}
    local config=$W/otpgate.toml force=()
    sed -i "s/^backup_codes = .*/backup_codes = $nb/" "$W/otpgate.toml"
    rm -f "$W"/state/* "$W"/ga/* "$W"/dstate/*
    case ${ENROLL_VIA:-} in
        daemon) config=$W/daemon.toml ;;
        pg) config=$W/pg.toml force=(--force) ;;
    esac
    "$CLI" --config "$config" enroll --user root --secret "$SECRET" --no-confirm "${force[@]}" --json --no-qr \
        | python3 -c 'import json,sys; print("\n".join(json.load(sys.stdin)["backup_codes"]))' >"$W/backup.txt"
        # google-authenticator's scratch codes are 8 digits without a leading 0.
    python3 -c 'import secrets; print("\n".join(str(10**7 + secrets.randbelow(9 * 10**7)) for _ in range('"$nb"')))' >"$W/scratch.txt"
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

run_scenario() { # name otp-service ga-service kind(totp|wrong|backup|none) cycles rhost [backup codes]
    local name=$1 a=$2 b=$3 kind=$4 cycles=$5 rhost=${6:-} nb=${7:-$NBACKUP}
    : >"$W/$name.A"; : >"$W/$name.B"
    for _ in $(seq "$ROUNDS"); do
        if [[ $kind == backup ]]; then enroll "$nb"; fi
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
start_daemon "$W/daemon.toml" "$W/run/otpgated.sock" files
if [[ -n "$PG_BIN" ]]; then
    echo "starting PostgreSQL ($PG_BIN) and three otpgated on it..." >&2
    start_postgres
    write_pg_configs
    "$DAEMON" --config "$W/pg.toml" migrate >&2
    for host in a b c; do
        config=$W/pg-$host.toml
        [[ $host == a ]] && config=$W/pg.toml
        start_daemon "$config" "$W/run/pg-$host.sock" "pg-$host"
    done
fi
enroll
echo "running scenarios (N=$N, ROUNDS=$ROUNDS)..." >&2
run_scenario success otp ga totp "$N" 203.0.113.9
run_scenario success-fast otp-fast ga totp "$N" 203.0.113.9
run_scenario wrong otp ga wrong "$N" 203.0.113.9
run_scenario backup otp ga backup "$(( N < NBACKUP ? N : NBACKUP ))" 203.0.113.9
run_scenario backup100 otp ga backup "$(( N < BIG_BACKUP ? N : BIG_BACKUP ))" 203.0.113.9 "$BIG_BACKUP"
ENROLL_VIA=daemon enroll
ENROLL_VIA=daemon run_scenario success-daemon otp-daemon ga totp "$N" 203.0.113.9
ENROLL_VIA=daemon run_scenario wrong-daemon otp-daemon ga wrong "$N" 203.0.113.9
ENROLL_VIA=daemon run_scenario backup-daemon otp-daemon ga backup "$(( N < NBACKUP ? N : NBACKUP ))" 203.0.113.9
if [[ -n "$PG_BIN" ]]; then
    ENROLL_VIA=pg enroll
    ENROLL_VIA=pg run_scenario success-pg otp-pg ga totp "$N" 203.0.113.9
    ENROLL_VIA=pg run_scenario wrong-pg otp-pg ga wrong "$N" 203.0.113.9
    ENROLL_VIA=pg run_scenario backup-pg otp-pg ga backup "$(( N < NBACKUP ? N : NBACKUP ))" 203.0.113.9
fi
enroll
run_scenario trusted otp-trusted ga-trusted none "$N" 127.0.0.1
: >"$W/permit.A"
for _ in $(seq "$ROUNDS"); do bench permit "" "$N" "" "$START" >>"$W/permit.A"; done

# Contention: PROCS processes, same user, same codes at the same fake times;
# with several services (comma-separated) the processes take them round
# robin (three hosts on one database).
contention() { # services -> "per_s p99 twice accepted"
    case $1 in
        otp-daemon) ENROLL_VIA=daemon enroll ;;
        otp-pg*) ENROLL_VIA=pg enroll ;;
        *) enroll ;;
    esac
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
# ROUNDS runs, alternating the services; one run is ~0.3 s and varies by a
# third from run to run on a shared machine.
CONT_SERVICES=(otp otp-fast otp-daemon ga)
PG_HOSTS=otp-pg,otp-pg-b,otp-pg-c
[[ -n "$PG_BIN" ]] && CONT_SERVICES+=(otp-pg "$PG_HOSTS")
for svc in "${CONT_SERVICES[@]}"; do : >"$W/cont.$svc"; done
for _ in $(seq "$ROUNDS"); do
    for svc in "${CONT_SERVICES[@]}"; do contention "$svc" >>"$W/cont.$svc"; done
done
# Median logins/s, p99 and accepted over the runs; codes accepted twice:
# the most any run had.
cont_summary() { # file -> "per_s p99 twice accepted"
    python3 - "$1" <<'PY'
import statistics, sys
rows = [[float(x) for x in line.split()] for line in open(sys.argv[1]) if line.strip()]
med = lambda i: statistics.median(r[i] for r in rows)
print(round(med(0), 1), round(med(1), 3), int(max(r[2] for r in rows)), int(med(3)))
PY
}
read -r C_A_S C_A_P C_A_T C_A_N < <(cont_summary "$W/cont.otp")
read -r C_F_S C_F_P C_F_T C_F_N < <(cont_summary "$W/cont.otp-fast")
read -r C_D_S C_D_P C_D_T C_D_N < <(cont_summary "$W/cont.otp-daemon")
read -r C_B_S C_B_P C_B_T C_B_N < <(cont_summary "$W/cont.ga")
if [[ -n "$PG_BIN" ]]; then
    read -r C_P_S C_P_P C_P_T C_P_N < <(cont_summary "$W/cont.otp-pg")
    read -r C_H_S C_H_P C_H_T C_H_N < <(cont_summary "$W/cont.$PG_HOSTS")
fi

# Flushes (fsync + fdatasync) and renames per successful login over 20
# logins after a fresh enrollment, counted with strace (otpgate: one
# fdatasync per login, and one more before every seventh write reuses a slot
# of the state file; the enrollment created the state file).
syscalls() { # service
    enroll
    local codes; codes=$(codes_from "$START" 20)
    strace -f -c -o "$W/strace.txt" -e trace=fsync,fdatasync,rename,renameat,renameat2 \
        "$W/pam_bench" -c "$W/pam.d" -s "$1" -u root -n 20 -t "$START" -p 30 -a "$codes" -r 203.0.113.9 >/dev/null
    START=$((START + 20 * 30 + 300))
    awk '$NF ~ /^(fsync|fdatasync)$/ {f += $4} $NF ~ /^rename/ {r += $4} END {printf "%.2f %.2f\n", f/20, r/20}' "$W/strace.txt"
}
read -r SYS_A_F SYS_A_R < <(syscalls otp)
read -r SYS_F_F SYS_F_R < <(syscalls otp-fast)
read -r SYS_B_F SYS_B_R < <(syscalls ga)

# SSH end to end (benches/ssh.sh): one sshd, stacks rotated round by round.
"$ROOT/benches/ssh.sh" "$W" "$MOD" "$GA" "$CLI" "$SSH_N" >&2
med() { awk '{print $1}' "$1" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
okcol() { awk '{o+=$2} END {printf "%d/%d", o, NR}' "$1"; }
SSH_PW=$(med "$W/ssh/ssh.pw"); SSH_GA=$(med "$W/ssh/ssh.ga"); SSH_OTP=$(med "$W/ssh/ssh.otp")

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
# Fresh process per login, as sshd does: a new process (fork + exec of
# pam_bench -n 1) runs pam_start + pam_authenticate + pam_end once and exits;
# the figure is those three calls, so it includes loading the module and the
# first parse of its state. otpgate and google-authenticator alternate login
# by login, each at its own fresh fake time step.
fresh_process() { # -> files $W/fresh.A $W/fresh.B, one "cycles=1 ok=.. p50_ms=.." line per login
    enroll
    local codes; codes=$(codes_from "$START" $((2 * FRESH)))
    : >"$W/fresh.A"; : >"$W/fresh.B"
    local i side svc t
    for i in $(seq 0 $((2 * FRESH - 1))); do
        side=A svc=otp
        if ((i % 2)); then side=B svc=ga; fi
        sed -n "$((i + 1))p" "$codes" >"$W/fresh-code.txt"
        t=$((START + i * 30))
        bench "$svc" "$W/fresh-code.txt" 1 203.0.113.9 "$t" >>"$W/fresh.$side"
    done
    START=$((START + 2 * FRESH * 30 + 300))
}
# Percentile over per-login lines of one field.
pct() { # file key percent
    grep -o "$2=[0-9.]*" "$1" | cut -d= -f2 | sort -g | awk -v p="$3" '{a[NR]=$1} END {i=int((NR*p+99)/100); if(i<1)i=1; print a[i]}'
}
fresh_process
F_A_50=$(pct "$W/fresh.A" p50_ms 50); F_A_90=$(pct "$W/fresh.A" p50_ms 90)
F_B_50=$(pct "$W/fresh.B" p50_ms 50); F_B_90=$(pct "$W/fresh.B" p50_ms 90)

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
    echo "Contention rows: $PROCS processes × $PER_PROC logins as one user, the same codes at the same fake times; $ROUNDS runs"
    echo "alternating the services, median logins/s, p99 and codes accepted per run; \"codes twice\": the most any run accepted twice."
    echo "\"records in otpgated\": the same module with \`store.kind = \"daemon\"\`, asking a release otpgated on a Unix socket"
    echo "(one connection per request: a view, then the check), which keeps the records in its own directory on the same disk."
    if [[ -n "$PG_BIN" ]]; then
        echo "\"records in PostgreSQL\": the same, the otpgated with \`daemon.backend = \"postgres\"\`: a throwaway PostgreSQL $PG_VERSION cluster"
        echo "on the same disk (fsync and synchronous_commit on), over TCP on 127.0.0.1 (password, no TLS); the view is one SELECT, the check"
        echo "one transaction (the user's advisory lock, SELECT … FOR UPDATE, the row written, COMMIT). \"three hosts\": three otpgated, each"
        echo "its own config, socket and PAM service, on that one database; the contention processes take the three services round robin."
    else
        echo "PostgreSQL rows left out: no PostgreSQL binaries in /usr/lib/postgresql (Debian package postgresql)."
    fi
    echo
    echo "| scenario | otpgate logins/s | p50 ms | p99 ms | ok | google-auth logins/s | p50 ms | p99 ms | ok | ratio |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    row "correct TOTP code" "$W/success.A" "$W/success.B"
    row "correct TOTP code, otpgate \`fsync_directory = false\` (google-auth's durability)" "$W/success-fast.A" "$W/success-fast.B"
    row "wrong code" "$W/wrong.A" "$W/wrong.B"
    row "backup code ($NBACKUP codes enrolled, the default)" "$W/backup.A" "$W/backup.B"
    row "backup code, $BIG_BACKUP codes enrolled (an 11 KB file; the most one enrollment holds)" "$W/backup100.A" "$W/backup100.B"
    row "trusted network (google-auth: pam_access in front)" "$W/trusted.A" "$W/trusted.B"
    row "correct TOTP code, records in otpgated" "$W/success-daemon.A" "$W/success-daemon.B"
    row "wrong code, records in otpgated" "$W/wrong-daemon.A" "$W/wrong-daemon.B"
    row "backup code, records in otpgated ($NBACKUP codes)" "$W/backup-daemon.A" "$W/backup-daemon.B"
    if [[ -n "$PG_BIN" ]]; then
        row "correct TOTP code, records in PostgreSQL (via otpgated)" "$W/success-pg.A" "$W/success-pg.B"
        row "wrong code, records in PostgreSQL (via otpgated)" "$W/wrong-pg.A" "$W/wrong-pg.B"
        row "backup code, records in PostgreSQL (via otpgated, $NBACKUP codes)" "$W/backup-pg.A" "$W/backup-pg.B"
    fi
    printf '| %s processes × %s logins, same user, same codes | %s | | %s | %s accepted, %s codes twice | %s | | %s | %s accepted, %s codes twice | **%.2f×** |\n' \
        "$PROCS" "$PER_PROC" "$C_A_S" "$C_A_P" "$C_A_N" "$C_A_T" "$C_B_S" "$C_B_P" "$C_B_N" "$C_B_T" "$(python3 -c "print($C_A_S/$C_B_S)")"
    # shellcheck disable=SC2016 # backticks are Markdown
    printf '| same, otpgate `fsync_directory = false` | %s | | %s | %s accepted, %s codes twice | %s | | %s | %s accepted, %s codes twice | **%.2f×** |\n' \
        "$C_F_S" "$C_F_P" "$C_F_N" "$C_F_T" "$C_B_S" "$C_B_P" "$C_B_N" "$C_B_T" "$(python3 -c "print($C_F_S/$C_B_S)")"
    printf '| same, records in otpgated | %s | | %s | %s accepted, %s codes twice | %s | | %s | %s accepted, %s codes twice | **%.2f×** |\n' \
        "$C_D_S" "$C_D_P" "$C_D_N" "$C_D_T" "$C_B_S" "$C_B_P" "$C_B_N" "$C_B_T" "$(python3 -c "print($C_D_S/$C_B_S)")"
    if [[ -n "$PG_BIN" ]]; then
        printf '| same, records in PostgreSQL (via otpgated) | %s | | %s | %s accepted, %s codes twice | %s | | %s | %s accepted, %s codes twice | **%.2f×** |\n' \
            "$C_P_S" "$C_P_P" "$C_P_N" "$C_P_T" "$C_B_S" "$C_B_P" "$C_B_N" "$C_B_T" "$(python3 -c "print($C_P_S/$C_B_S)")"
        printf '| same, records in PostgreSQL, three hosts (3 otpgated, processes split over them) | %s | | %s | %s accepted, %s codes twice | %s | | %s | %s accepted, %s codes twice | **%.2f×** |\n' \
            "$C_H_S" "$C_H_P" "$C_H_N" "$C_H_T" "$C_B_S" "$C_B_P" "$C_B_N" "$C_B_T" "$(python3 -c "print($C_H_S/$C_B_S)")"
    fi
    echo
    echo "Baseline: \`pam_permit\` alone $(field "$W/permit.A" per_s) logins/s (p50 $(field "$W/permit.A" p50_ms) ms)."
    echo "Durability per correct-code login, 20 logins after enrolling (strace; flushes are fsync + fdatasync): otpgate $SYS_A_F flushes + $SYS_A_R renames (with \`fsync_directory = false\`: $SYS_F_F flushes + $SYS_F_R renames); google-authenticator $SYS_B_F flushes + $SYS_B_R renames."
    echo
    echo "| footprint | otpgate | google-authenticator |"
    echo "| --- | ---: | ---: |"
    echo "| module size (stripped) | $((SO_SIZE / 1024)) KiB | $((GA_SIZE / 1024)) KiB |"
    echo "| crates in the module's dependency tree | $CRATES | (C, libc + libpam) |"
    echo "| resident memory added by dlopen | $RSS_A KiB | $RSS_B KiB |"
    echo "| dlopen time | $LOAD_A ms | $LOAD_B ms |"
    echo
    echo "Fresh process per login (as sshd does): fork + exec of a process that runs pam_start → pam_authenticate → pam_end"
    echo "once (correct code) and exits; the time is those three calls (module load, first state parse and write), $FRESH logins"
    echo "per module alternated login by login; ratio = google-auth median ÷ otpgate median (above 1: otpgate faster)."
    echo
    echo "| fresh process per login | otpgate p50 ms | p90 ms | ok | google-auth p50 ms | p90 ms | ok | ratio |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    printf '| correct TOTP code | %s | %s | %s | %s | %s | %s | **%.2f×** |\n' "$F_A_50" "$F_A_90" "$(okfail "$W/fresh.A")" \
        "$F_B_50" "$F_B_90" "$(okfail "$W/fresh.B")" "$(python3 -c "print($F_B_50/$F_A_50)")"
    echo
    echo "SSH end to end: one unpacked sshd (Debian's openssh-server) on 127.0.0.1 under pam_wrapper; each login is"
    echo "\`ssh root@127.0.0.1 true\` from exec to exit (key exchange, keyboard-interactive, the PAM stack in sshd's"
    echo "fresh per-connection process, session, command). $SSH_N logins per stack, the three stacks rotated round by round;"
    echo "the second factor answers a backup code (sshd runs on the real clock; default 10-code enrollments, renewed every 10 rounds)."
    echo "Added cost = stack median − password-only median; ratio = google-auth's added cost ÷ otpgate's (above 1: otpgate cheaper)."
    echo
    echo "| SSH end to end | p50 ms | added ms | ok |"
    echo "| --- | ---: | ---: | ---: |"
    echo "| password only (pam_matrix) | $SSH_PW | | $(okcol "$W/ssh/ssh.pw") |"
    echo "| password + google-authenticator | $SSH_GA | $(python3 -c "print(round($SSH_GA - $SSH_PW, 2))") | $(okcol "$W/ssh/ssh.ga") |"
    echo "| password + otpgate | $SSH_OTP | $(python3 -c "print(round($SSH_OTP - $SSH_PW, 2))") | $(okcol "$W/ssh/ssh.otp") |"
    printf '| ratio of added cost (google-auth ÷ otpgate) | | **%s** | |\n' \
        "$(python3 -c "a=$SSH_OTP-$SSH_PW; b=$SSH_GA-$SSH_PW; print(f'{b/a:.2f}×' if a > 0 else 'n/a (otpgate adds ≤ 0)')")"
} | tee "$OUT"

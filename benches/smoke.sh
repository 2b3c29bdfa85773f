#!/usr/bin/env bash
# A few logins of every benchmark scenario, so benches/run.sh cannot rot:
# `make test` runs this. It checks outcomes, not speed: every right code is
# accepted by both modules, every wrong one refused, and under contention
# otpgate accepts each code exactly once (also with three otpgated on one
# PostgreSQL database; those rows need Debian's PostgreSQL binaries).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp)
trap 'rm -f "$out"' EXIT
N=8 ROUNDS=1 PROCS=4 PER_PROC=3 FRESH=4 SSH_N=3 OUT=$out ./benches/run.sh >/dev/null
pass=0 fail=0
verdict() { # ok? description
    if eval "$1"; then echo "ok   $2"; pass=$((pass + 1)); else echo "FAIL $2"; fail=$((fail + 1)); fi
}
# True when the table row of `scenario` holds `cell` for both modules.
both() { # scenario cell
    [[ $(grep -F "| $1 |" "$out" | head -n1 | grep -oF "| $2 |" | wc -l) -eq 2 ]]
}
# True when the first `row` line of the table headed `header` holds `cell` for both modules.
row_after() { # header row cell
    [[ $(sed -n "/$(printf '%s' "$1" | sed 's/[|]/[|]/g')/,\$p" "$out" | grep -F "$2" | head -n1 | grep -oF "| $3 |" | wc -l) -eq 2 ]]
}
has() { grep -qF -- "$1" "$out"; }
for s in "correct TOTP code" "backup code (10 codes enrolled, the default)" \
    "backup code, 100 codes enrolled (an 11 KB file; the most one enrollment holds)" "trusted network (google-auth: pam_access in front)"; do
    verdict "both \"$s\" \"8/8\"" "$s: both modules accept all 8"
done
verdict 'both "wrong code" "0/8"' "wrong code: both modules refuse all 8"
verdict 'has "| 3 accepted, 0 codes twice |"' "contention: otpgate accepts each of 3 codes once"
for s in "correct TOTP code, records in otpgated" "backup code, records in otpgated (10 codes)"; do
    verdict "both \"$s\" \"8/8\"" "$s: both accept all 8"
done
verdict 'both "wrong code, records in otpgated" "0/8"' "wrong code through otpgated: both refuse all 8"
verdict '[[ $(grep -F "| same, records in otpgated |" "$out" | grep -oF "| 3 accepted, 0 codes twice |" | wc -l) -eq 1 ]]' \
    "contention through otpgated: each of 3 codes accepted once"
# True when the row of `scenario` holds `cell` once (otpgate's side).
once() { # scenario cell
    [[ $(grep -F "| $1 |" "$out" | head -n1 | grep -oF "| $2 |" | wc -l) -eq 1 ]]
}
if compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    for s in "correct TOTP code, records in PostgreSQL (via otpgated)" "backup code, records in PostgreSQL (via otpgated, 10 codes)"; do
        verdict "both \"$s\" \"8/8\"" "$s: both accept all 8"
    done
    verdict 'both "wrong code, records in PostgreSQL (via otpgated)" "0/8"' "wrong code through otpgated and PostgreSQL: both refuse all 8"
    verdict 'once "same, records in PostgreSQL (via otpgated)" "3 accepted, 0 codes twice"' \
        "contention through otpgated and PostgreSQL: each of 3 codes accepted once"
    verdict 'once "same, records in PostgreSQL, three hosts (3 otpgated, processes split over them)" "3 accepted, 0 codes twice"' \
        "contention over three otpgated on one PostgreSQL: each of 3 codes accepted once across the three hosts"
else
    echo "SKIP PostgreSQL rows: no /usr/lib/postgresql/<v>/bin (Debian package postgresql)"
fi
# 20 logins write generations 2 to 21 of the state file (the enrollment wrote
# 1): 20 flushes, and 3 more before the writes of 7, 14 and 21 reuse a slot.
verdict 'has "otpgate 1.15 flushes + 0.00 renames"' "one flush per login and one per seven before a slot is reused, no rename (the enrollment made the state file), counted with strace"
verdict 'has "| module size (stripped) |"' "footprint measured"
verdict 'row_after "| fresh process per login |" "| correct TOTP code |" "4/4"' \
    "fresh process per login: both modules accept all 4"
for s in "password only (pam_matrix)" "password + google-authenticator" "password + otpgate"; do
    verdict "grep -qF \"| $s | \" \"\$out\" && grep -F \"| $s | \" \"\$out\" | grep -qF '| 3/3 |'" "SSH end to end, $s: all 3 logins in"
done
cat "$out"
echo "$pass passed, $fail failed"
((fail == 0))

#!/usr/bin/env bash
# A few logins of every benchmark scenario, so benches/run.sh cannot rot:
# `make test` runs this. It checks outcomes, not speed: every right code is
# accepted by both modules, every wrong one refused, and under contention
# otpgate accepts each code exactly once.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp)
trap 'rm -f "$out"' EXIT
N=8 ROUNDS=1 PROCS=4 PER_PROC=3 OUT=$out ./benches/run.sh >/dev/null
pass=0 fail=0
verdict() { # ok? description
    if eval "$1"; then echo "ok   $2"; pass=$((pass + 1)); else echo "FAIL $2"; fail=$((fail + 1)); fi
}
# True when the table row of `scenario` holds `cell` for both modules.
both() { # scenario cell
    [[ $(grep -F "| $1 |" "$out" | head -n1 | grep -oF "| $2 |" | wc -l) -eq 2 ]]
}
has() { grep -qF -- "$1" "$out"; }
for s in "correct TOTP code" "backup code" "trusted network (google-auth: pam_access in front)"; do
    verdict "both \"$s\" \"8/8\"" "$s: both modules accept all 8"
done
verdict 'both "wrong code" "0/8"' "wrong code: both modules refuse all 8"
verdict 'has "| 3 accepted, 0 codes twice |"' "contention: otpgate accepts each of 3 codes once"
verdict 'has "otpgate 2.0 fsync + 1.0 rename"' "fsyncs and renames counted with strace"
verdict 'has "| first login in a fresh process |"' "footprint measured"
cat "$out"
echo "$pass passed, $fail failed"
((fail == 0))

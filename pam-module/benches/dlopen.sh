#!/bin/sh
# Measures what loading pam_otpgate.so costs a fresh process (see dlopen.c),
# and prints the facts that drive it: size, NEEDED libraries, relocations.
# Usage: pam-module/benches/dlopen.sh [MODULE.so] [N]   (default: release, 300)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
so=${1:-$here/../../target/release/libpam_otpgate.so}
n=${2:-300}
bin=${TMPDIR:-/tmp}/otpgate-dlopen-bench
cc -O2 -o "$bin" "$here/dlopen.c" -ldl -lpam
echo "size: $(stat -c %s "$so") bytes"
echo "needed: $(readelf -d "$so" | sed -n 's/.*NEEDED.*\[\(.*\)\]/\1/p' | tr '\n' ' ')"
# RELA entries are 24 bytes each, applied one by one; a RELR word packs up
# to 63 relative relocations.
secsize() {
    hex=$(readelf -S -W "$so" | sed -n "s/.*] $1 *[A-Z]* *[0-9a-f]* [0-9a-f]* \([0-9a-f]*\) .*/\1/p")
    echo $((0x${hex:-0}))
}
echo "rela.dyn: $(( $(secsize .rela.dyn) / 24 )) entries, relr.dyn: $(secsize .relr.dyn) bytes"
"$bin" "$n" "$so"

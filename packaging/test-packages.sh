#!/usr/bin/env bash
# Builds the .deb and the .rpm (packaging/build-packages.sh) and checks them:
# every file, its mode, owner and place; the conffiles; the control fields
# and maintainer scripts; the pam-auth-update profile being off; the module's
# exports; that the unpacked CLI runs; an install, remove and purge with dpkg
# into a throwaway root (never /), and removal refused while a PAM file still
# loads the module; lintian (errors fail, the rest is shown); the RPM's file
# list, modes, config files and %preun.
# Prints one "ok"/"FAIL" line per check and closes with "N passed, N failed".
#
#   ./packaging/test-packages.sh
# The checks pass their arguments to `bash -c '...' _ ARGS` on purpose:
# shellcheck disable=SC2016
# and run functions through check(), which shellcheck cannot follow:
# shellcheck disable=SC2317
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

pass=0
fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
check() { # description command...
    local what=$1
    shift
    if "$@"; then ok "$what"; else bad "$what"; fi
}
finish() {
    echo "$pass passed, $fail failed"
    ((fail == 0))
    exit
}
skip_or_fail() {
    if [[ "${CI:-}" == "true" ]]; then
        bad "$1 (CI=true: must run)"
        finish
    fi
    echo "SKIP: $1"
    exit 0
}

command -v dpkg-deb >/dev/null || skip_or_fail "dpkg-deb missing (not Debian?)"
command -v cargo >/dev/null || skip_or_fail "cargo missing"

target=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
out="$target/packages"
rm -rf "$out"
start=$SECONDS
if ! ./packaging/build-packages.sh --out "$out" --deb --rpm; then
    bad "build-packages.sh builds the .deb and the .rpm"
    finish
fi
echo "packages built in $((SECONDS - start)) s"
debs=("$out"/otpgate_*_amd64.deb)
rpms=("$out"/otpgate-*.x86_64.rpm)
deb=${debs[0]}
rpm=${rpms[0]}
check "a .deb was built" test -f "$deb"
check "an .rpm was built" test -f "$rpm"
[[ -f "$deb" ]] || finish

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# `make packages` (no option) builds the .deb alone: on a Debian host it
# never waits minutes for cargo-generate-rpm (issue #13).
check "build-packages.sh without options (make packages) builds the .deb and no .rpm" \
    bash -c './packaging/build-packages.sh --out "$1" >/dev/null 2>&1 && ls "$1"/otpgate_*_amd64.deb >/dev/null && ! ls "$1"/*.rpm >/dev/null 2>&1' _ "$work/default"
check "make packages and make rpm call build-packages.sh --deb and --rpm" \
    bash -c 'make -n packages | grep -q "build-packages.sh --deb$" && make -n rpm | grep -q "build-packages.sh --rpm$"'

# --- What the .deb must hold: exactly these files, these modes, root:root.
pam_dir=usr/lib/x86_64-linux-gnu/security
mkdir -p "$work/man1"
"$target/release/otpgate" man --dir "$work/man1" >/dev/null
{
    echo "-rwxr-xr-x ./usr/bin/otpgate"
    echo "-rwxr-xr-x ./usr/sbin/otpgated"
    echo "-rw-r--r-- ./usr/lib/systemd/system/otpgated.service"
    echo "-rw-r--r-- ./$pam_dir/pam_otpgate.so"
    echo "-rw-r--r-- ./etc/otpgate/config.toml"
    echo "-rw-r--r-- ./etc/pam.d/otpgate"
    echo "-rw-r--r-- ./usr/share/pam-configs/otpgate"
    echo "-rw-r--r-- ./usr/share/bash-completion/completions/otpgate"
    echo "-rw-r--r-- ./usr/share/zsh/vendor-completions/_otpgate"
    echo "-rw-r--r-- ./usr/share/fish/vendor_completions.d/otpgate.fish"
    echo "-rw-r--r-- ./usr/share/doc/otpgate/README.md"
    echo "-rw-r--r-- ./usr/share/doc/otpgate/examples/sshd_config.d/otpgate.conf"
    echo "-rw-r--r-- ./usr/share/doc/otpgate/examples/fail2ban/filter.d/otpgate.conf"
    echo "-rw-r--r-- ./usr/share/doc/otpgate/examples/fail2ban/jail.d/otpgate.conf"
    echo "-rw-r--r-- ./usr/share/doc/otpgate/copyright"
    echo "-rw-r--r-- ./usr/share/doc/otpgate/changelog.Debian.gz"
    echo "-rw-r--r-- ./usr/share/lintian/overrides/otpgate"
    for page in "$work"/man1/*.1; do echo "-rw-r--r-- ./usr/share/man/man1/$(basename "$page").gz"; done
    for page in cli/doc/*.5; do [[ -e "$page" ]] && echo "-rw-r--r-- ./usr/share/man/man5/$(basename "$page").gz"; done
    for page in cli/doc/*.8; do [[ -e "$page" ]] && echo "-rw-r--r-- ./usr/share/man/man8/$(basename "$page").gz"; done
} | sort >"$work/want"
dpkg-deb -c "$deb" | awk '$1 !~ /^d/ { print $1, $6 }' | sort >"$work/have"
if diff -u "$work/want" "$work/have" >"$work/diff"; then
    ok "the .deb holds exactly the expected $(wc -l <"$work/want") files with the expected modes"
else
    bad "the .deb's files and modes (- expected, + found):"
    sed 's/^/     /' "$work/diff"
fi
check "every entry of the .deb is owned by root:root" \
    test -z "$(dpkg-deb -c "$deb" | awk '$2 != "0/0"')"
check "the PAM module goes where this system's pam_unix.so is" \
    bash -c "ls /$pam_dir/pam_unix.so >/dev/null 2>&1 || ls /lib/x86_64-linux-gnu/security/pam_unix.so >/dev/null 2>&1"

# --- Control data.
dpkg-deb -e "$deb" "$work/DEBIAN"
check "conffiles are exactly /etc/otpgate/config.toml and /etc/pam.d/otpgate" \
    test "$(sort "$work/DEBIAN/conffiles" | tr '\n' ' ')" = "/etc/otpgate/config.toml /etc/pam.d/otpgate "
control=$(cat "$work/DEBIAN/control")
check "Depends names libpam0g, libc6 and libpam-runtime (pam-auth-update)" \
    bash -c '[[ "$1" == *"Depends: "*libc6*libpam-runtime*libpam0g* ]]' _ "$control"
check "Architecture is amd64, Section admin" \
    bash -c '[[ "$1" == *"Architecture: amd64"* && "$1" == *"Section: admin"* ]]' _ "$control"
check "postinst runs pam-auth-update --package on configure only, never under DPKG_ROOT" \
    bash -c 'grep -q "pam-auth-update --package$" "$1" && grep -q "\"\$1\" = \"configure\"" "$1" && grep -q DPKG_ROOT "$1"' _ "$work/DEBIAN/postinst"
check "postinst creates the otpgate-send system user (adduser --system, nologin) unless it exists, never under DPKG_ROOT" \
    bash -c 'grep -q "getent passwd otpgate-send" "$1" && grep -Eq "adduser --system .*--shell /usr/sbin/nologin" "$1" && grep -q "otpgate-send$" "$1" && grep -q "\"\$1\" = \"configure\" \] && \[ -z \"\${DPKG_ROOT:-}\" \]" "$1"' _ "$work/DEBIAN/postinst"
check "Depends names adduser (postinst runs it)" \
    bash -c '[[ "$1" == *"Depends: "*adduser* ]]' _ "$control"
check "prerm removes the profile from common-auth before the module goes" \
    grep -q "pam-auth-update --package --remove otpgate" "$work/DEBIAN/prerm"
check "maintainer scripts are valid sh" sh -n "$work/DEBIAN/postinst"
check "prerm is valid sh" sh -n "$work/DEBIAN/prerm"

# --- The files themselves, unpacked into a throwaway root.
root="$work/root"
dpkg-deb -x "$deb" "$root"
check "the pam-auth-update profile is off by default (Default: no)" \
    grep -qx "Default: no" "$root/usr/share/pam-configs/otpgate"
check "the profile adds 'required pam_otpgate.so' as an Additional auth module" \
    bash -c 'grep -qx "Auth-Type: Additional" "$1" && grep -Pq "^\trequired\tpam_otpgate.so$" "$1"' _ "$root/usr/share/pam-configs/otpgate"
check "/etc/otpgate/config.toml is packaging/config.toml" \
    cmp -s "$root/etc/otpgate/config.toml" packaging/config.toml
check "every key and table header of the packaged config is commented out (defaults hold; an appended key is top-level)" \
    test -z "$(grep -vE '^\s*(#|$)' "$root/etc/otpgate/config.toml")"
check "the example sshd drop-in is packaging/examples/sshd_config.d/otpgate.conf" \
    cmp -s "$root/usr/share/doc/otpgate/examples/sshd_config.d/otpgate.conf" packaging/examples/sshd_config.d/otpgate.conf
check "/etc/pam.d/otpgate checks the password without pam_otpgate.so" \
    bash -c 'grep -q "^@include common-auth" "$1" && ! grep -v "^#" "$1" | grep -q pam_otpgate' _ "$root/etc/pam.d/otpgate"
check "the module exports pam_sm_authenticate" \
    bash -c 'nm -D --defined-only "$1" | grep -qw pam_sm_authenticate' _ "$root/$pam_dir/pam_otpgate.so"
check "the module exports nothing but pam_sm_* functions" \
    test -z "$(nm -D --defined-only "$root/$pam_dir/pam_otpgate.so" | awk '$2 == "T" && $3 !~ /^pam_sm_/')"
check "the module and the CLI are stripped (no .symtab)" \
    bash -c '! readelf -S "$1" "$2" | grep -q "\.symtab"' _ "$root/$pam_dir/pam_otpgate.so" "$root/usr/bin/otpgate"
check "the unpacked otpgate runs (--version)" \
    bash -c '"$1" --version | grep -q "^otpgate "' _ "$root/usr/bin/otpgate"
check "the unpacked otpgated runs (--version) and is stripped" \
    bash -c '"$1" --version | grep -q "^otpgated " && ! readelf -S "$1" | grep -q "\.symtab"' _ "$root/usr/sbin/otpgated"
check "the otpgated unit is shipped disabled (no enable link in the package, no systemctl in the scripts)" \
    bash -c '! dpkg-deb -c "$1" | grep -q "wants/otpgated" && ! grep -q systemctl "$2"/DEBIAN/postinst' _ "$deb" "$work"
if command -v systemd-analyze >/dev/null; then
    # The unpacked unit, its ExecStart and man page where this root has them.
    mkdir -p "$work/unit" "$work/manpath/man8"
    sed "s|/usr/sbin/otpgated|$root/usr/sbin/otpgated|" "$root/usr/lib/systemd/system/otpgated.service" >"$work/unit/otpgated.service"
    zcat "$root/usr/share/man/man8/otpgated.8.gz" >"$work/manpath/man8/otpgated.8"
    check "systemd-analyze verify accepts the otpgated unit (and finds its man page)" \
        env MANPATH="$work/manpath" systemd-analyze verify "$work/unit/otpgated.service"
    check "the otpgated unit is hardened (ProtectSystem=strict, ProtectHome, NoNewPrivileges, a capability bounding set, StateDirectory 0700, RuntimeDirectory)" \
        bash -c 'for k in ProtectSystem=strict ProtectHome=yes NoNewPrivileges=yes "CapabilityBoundingSet=CAP_SETUID CAP_SETGID CAP_KILL" StateDirectory=otpgate/records StateDirectoryMode=0700 RuntimeDirectory=otpgate; do grep -qx "$k" "$1" || { echo "missing $k"; exit 1; }; done' _ "$root/usr/lib/systemd/system/otpgated.service"
elif [[ "${CI:-}" == true ]]; then
    bad "systemd-analyze is installed (CI=true)"
else
    echo "SKIP: systemd-analyze not installed (Debian package systemd)"
fi
check "the man pages are gzip'd roff" \
    bash -c 'for m in "$1"/usr/share/man/man*/*.gz; do gzip -t "$m" && zcat "$m" | grep -q "^\.TH" || exit 1; done' _ "$root"
check "the bash completion is valid bash" bash -n "$root/usr/share/bash-completion/completions/otpgate"
check "the zsh completion defines _otpgate" grep -q "^#compdef otpgate" "$root/usr/share/zsh/vendor-completions/_otpgate"
check "the fish completion completes otpgate" grep -q "^complete -c otpgate" "$root/usr/share/fish/vendor_completions.d/otpgate.fish"

# --- Removal while PAM still loads the module (issue #13): once
# pam_otpgate.so is gone, every stack naming it fails ("PAM: Module is
# unknown"), so prerm refuses and dpkg keeps the package.
# dpkg -r/-P into root $1, prerm's messages into $3; fails when dpkg does.
remove_into() { # root -r|-P out
    dpkg --root="$1" --force-script-chrootless --force-depends "$2" otpgate >"$3" 2>&1
}
still_installed() { # root
    test -e "$1/$pam_dir/pam_otpgate.so" &&
        dpkg --root="$1" -s otpgate 2>/dev/null | grep -q "^Status: .* ok installed$"
}
# The lines pam-auth-update's otpgate profile writes into common-auth.
profile_common_auth() {
    printf '%s\n' '# here are the per-package modules (the "Primary" block)' \
        'auth	[success=1 default=ignore]	pam_unix.so nullok' 'auth	requisite	pam_deny.so' \
        'auth	required	pam_permit.so' '# and here are more per-package modules (the "Additional" block)' \
        'auth	required	pam_otpgate.so' '# end of pam-auth-update config'
}
check_removal_refusals() { # root out
    local r=$1 o=$2
    profile_common_auth >"$r/etc/pam.d/common-auth"
    printf '%s\n' '@include common-auth' '# auth required pam_otpgate.so (a comment loads nothing)' \
        'auth required pam_otpgate.so' >"$r/etc/pam.d/sshd"
    if remove_into "$r" -r "$o"; then
        bad "dpkg -r refuses while /etc/pam.d/sshd loads pam_otpgate.so (it removed the package)"
        return
    fi
    check "dpkg -r refuses while /etc/pam.d/sshd loads pam_otpgate.so, naming the file and line" \
        grep -qF "$r/etc/pam.d/sshd:3: auth required pam_otpgate.so" "$o"
    check "the refusal says what to do and names the escape hatch OTPGATE_FORCE_REMOVE=1" \
        bash -c 'grep -q "take those lines out" "$1" && grep -q "OTPGATE_FORCE_REMOVE=1 apt remove otpgate" "$1"' _ "$o"
    check "the refusal leaves out the profile's own common-auth lines and the comment" \
        bash -c '! grep -q "common-auth:" "$1" && ! grep -q "sshd:2:" "$1"' _ "$o"
    check "after the refusal the module is still there and dpkg says the package is installed" \
        still_installed "$r"
    sed -i '3d' "$r/etc/pam.d/sshd"
    # Under DPKG_ROOT pam-auth-update does not run: the profile's lines stay.
    if remove_into "$r" -r "$o"; then
        bad "dpkg -r refuses while common-auth keeps the profile's line pam-auth-update could not take out"
        return
    fi
    check "dpkg -r refuses while common-auth keeps the profile's line pam-auth-update could not take out" \
        bash -c 'grep -qF "$2/etc/pam.d/common-auth:6: auth	required	pam_otpgate.so" "$1" && grep -q "pam-auth-update left these in place" "$1"' _ "$o" "$r"
    check "after that refusal too the package is installed" still_installed "$r"
    sed -i '/pam_otpgate/d' "$r/etc/pam.d/common-auth"
}
check_forced_removal() { # root out
    local r=$1 o=$2
    dpkg --root="$r" --force-script-chrootless --force-depends -i "$deb" >/dev/null 2>&1
    echo 'auth required pam_otpgate.so' >>"$r/etc/pam.d/su"
    check "OTPGATE_FORCE_REMOVE=1 dpkg -P removes it anyway, warning with the line" \
        bash -c 'OTPGATE_FORCE_REMOVE=1 dpkg --root="$1" --force-script-chrootless --force-depends -P otpgate >"$2" 2>&1 &&
            ! test -e "$1/usr/bin/otpgate" && grep -q "WARNING: OTPGATE_FORCE_REMOVE=1" "$2" && grep -qF "$1/etc/pam.d/su:1:" "$2"' _ "$r" "$o"
}
# --- The fail2ban examples: the repository's files, and a configuration
# fail2ban accepts once copied into /etc/fail2ban (a copy of this system's,
# in the work dir). The filter itself is tested against the module's own
# lines by tests/tests/pam_module.rs (fail2ban-regex).
examples="$root/usr/share/doc/otpgate/examples/fail2ban"
check "the packaged fail2ban filter and jail are packaging/fail2ban's" \
    bash -c 'cmp -s "$1/filter.d/otpgate.conf" packaging/fail2ban/filter.d/otpgate.conf && cmp -s "$1/jail.d/otpgate.conf" packaging/fail2ban/jail.d/otpgate.conf' _ "$examples"
if command -v fail2ban-client >/dev/null && [[ -d /etc/fail2ban ]]; then
    f2b="$work/fail2ban"
    cp -r /etc/fail2ban "$f2b"
    # Our jail alone: Debian 12's own [sshd] fails -t without /var/log/auth.log.
    rm -f "$f2b"/jail.d/* "$f2b"/jail.local
    cp "$examples/filter.d/otpgate.conf" "$f2b/filter.d/"
    cp "$examples/jail.d/otpgate.conf" "$f2b/jail.d/"
    check "fail2ban-client -t accepts the example jail and filter copied into /etc/fail2ban" \
        bash -c 'fail2ban-client -c "$1" -t >/dev/null 2>&1' _ "$f2b"
    check "the example jail [otpgate] is on and reads pam_otpgate's lines in the journal" \
        bash -c 'd=$(fail2ban-client -c "$1" -d 2>/dev/null); grep -q "\[.add., .otpgate., .systemd.\]" <<<"$d" && grep -q "addjournalmatch., .SYSLOG_IDENTIFIER=pam_otpgate" <<<"$d"' _ "$f2b"
elif [[ "${CI:-}" == "true" ]]; then
    bad "fail2ban is installed (CI=true)"
else
    echo "SKIP: fail2ban not installed (Debian package fail2ban)"
fi

# --- dpkg install, remove, purge into a throwaway root (scripts run
# chrootless with DPKG_ROOT set, so they leave the real PAM config alone).
if [[ $(id -u) -eq 0 ]]; then
    droot="$work/dpkg-root"
    mkdir -p "$droot/var/lib/dpkg/updates" "$droot/var/lib/dpkg/info"
    touch "$droot/var/lib/dpkg/status" "$droot/var/lib/dpkg/available"
    dpkg_root() { dpkg --root="$droot" --force-script-chrootless --force-depends --force-not-root "$@" >>"$work/dpkg.log" 2>&1; }
    check "dpkg --root installs the .deb (scripts chrootless)" dpkg_root -i "$deb"
    check "dpkg --root reports it installed" \
        bash -c 'dpkg --root="$1" -s otpgate 2>/dev/null | grep -qx "Status: install ok installed"' _ "$droot"
    check "dpkg -L lists the module and the CLI" \
        bash -c 'dpkg --root="$1" -L otpgate | grep -qx "/'"$pam_dir"'/pam_otpgate.so" && dpkg --root="$1" -L otpgate | grep -qx /usr/bin/otpgate' _ "$droot"
    check "the installed files keep their modes (CLI 0755, module 0644)" \
        test "$(stat -c %a "$droot/usr/bin/otpgate") $(stat -c %a "$droot/$pam_dir/pam_otpgate.so")" = "755 644"
    check_removal_refusals "$droot" "$work/remove.out"
    check "dpkg -r removes the files and keeps the conffiles (once no PAM line loads the module)" \
        bash -c 'dpkg --root="$1" --force-script-chrootless --force-depends -r otpgate >/dev/null 2>&1 && ! test -e "$1/usr/bin/otpgate" && test -e "$1/etc/otpgate/config.toml"' _ "$droot"
    check "dpkg -P purges the conffiles" \
        bash -c 'dpkg --root="$1" --force-script-chrootless --force-depends -P otpgate >/dev/null 2>&1 && ! test -e "$1/etc/otpgate/config.toml" && ! test -e "$1/etc/pam.d/otpgate"' _ "$droot"
    check_forced_removal "$droot" "$work/remove.out"
    ((fail == 0)) || sed 's/^/     dpkg: /' "$work/dpkg.log"
else
    echo "SKIP: dpkg --root install (needs root)"
fi

# --- make install PREFIX=/usr DESTDIR=... (the from-source install).
dest="$work/destdir"
if make --no-print-directory install PREFIX=/usr DESTDIR="$dest" >"$work/install.log" 2>&1; then
    ok "make install PREFIX=/usr DESTDIR=... succeeds"
    # The same files as the .deb, less what only a package has.
    (cd "$dest" && find . -type f -printf '%M ./%P\n' | sed 's|^\([-rwx]*\) \./\./|\1 ./|' | sort) >"$work/install-have"
    sed -e '/pam-configs\|lintian\|copyright\|changelog.Debian\|README.md\|doc\/otpgate\/examples/d' "$work/want" >"$work/install-want"
    sed -e '/pam-configs\|lintian\|copyright\|changelog.Debian\|README.md\|examples/d' "$work/want" >"$work/install-want"
    installed_pam=$(cd "$dest" && find . -name pam_otpgate.so | sed 's|^\.||')
    sed -i "s|^\(-[-rwx]*\) \./usr/lib/x86_64-linux-gnu/security/pam_otpgate.so|\1 .$installed_pam|" "$work/install-want"
    sort -o "$work/install-want" "$work/install-want"
    if diff -u "$work/install-want" "$work/install-have" >"$work/install-diff"; then
        ok "make install puts the expected $(wc -l <"$work/install-want") files in place with the expected modes"
    else
        bad "make install's files and modes (- expected, + found):"
        sed 's/^/     /' "$work/install-diff"
    fi
    check "make install into a DESTDIR leaves the system's users alone (says so)" \
        grep -q "Not creating the system user otpgate-send (--destdir)" "$work/install.log"
    check "make install's module is in a security/ directory where pam_unix.so lives" \
        test -e "${installed_pam%/pam_otpgate.so}/pam_unix.so"
else
    bad "make install PREFIX=/usr DESTDIR=... succeeds"
    sed 's/^/     /' "$work/install.log" | tail -20
fi

# --- lintian: errors fail; warnings and infos are shown.
if command -v lintian >/dev/null; then
    lintian --tag-display-limit 0 -I "$deb" >"$work/lintian" 2>/dev/null
    echo "lintian says:"
    sed 's/^/     /' "$work/lintian"
    check "lintian finds no errors" bash -c '! grep -q "^E:" "$1"' _ "$work/lintian"
    check "lintian finds no warnings" bash -c '! grep -q "^W:" "$1"' _ "$work/lintian"
elif [[ "${CI:-}" == "true" ]]; then
    bad "lintian is installed (CI=true)"
else
    echo "SKIP: lintian not installed (Debian package lintian)"
fi

# --- The RPM.
# Its %preun, run as rpm runs it ("0" on erase, "1" on upgrade), against a
# PAM directory in a throwaway root (DPKG_ROOT) that loads the module.
check_rpm_preun() { # scriptlet root
    mkdir -p "$2/etc/pam.d"
    printf '%s\n' 'auth substack password-auth' 'auth required pam_otpgate.so' >"$2/etc/pam.d/sshd"
    check "the .rpm's %preun refuses an erase (\$1 = 0) while /etc/pam.d/sshd loads the module" \
        bash -c '! DPKG_ROOT="$2" sh "$1" 0 >"$2/out" 2>&1 && grep -qF "$2/etc/pam.d/sshd:2:" "$2/out"' _ "$1" "$2"
    check "the .rpm's %preun lets an upgrade (\$1 = 1) through" \
        env DPKG_ROOT="$2" sh "$1" 1
    sed -i '2d' "$2/etc/pam.d/sshd"
    check "the .rpm's %preun lets the erase through once no line loads the module" \
        env DPKG_ROOT="$2" sh "$1" 0
}
if [[ -f "$rpm" ]] && command -v rpm >/dev/null; then
    rpm -qlpv "$rpm" 2>/dev/null | awk '{ print $1, $3 ":" $4, $NF }' | sort >"$work/rpm-have"
    sed -e "s|^\(-[-rwx]*\) \./usr/lib/x86_64-linux-gnu/security/|\1 ./usr/lib64/security/|" \
        -e 's|/usr/share/zsh/vendor-completions/|/usr/share/zsh/site-functions/|' \
        -e '/pam-configs\|lintian\|copyright\|changelog.Debian/d' "$work/want" |
        awk '{ mode = $1; if ($2 ~ /pam_otpgate.so$/) mode = "-rwxr-xr-x"; sub(/^\./, "", $2); print mode, "root:root", $2 }' |
        sort >"$work/rpm-want"
    if diff -u "$work/rpm-want" "$work/rpm-have" >"$work/rpm-diff"; then
        ok "the .rpm holds exactly the expected $(wc -l <"$work/rpm-want") files with the expected modes"
    else
        bad "the .rpm's files and modes (- expected, + found):"
        sed 's/^/     /' "$work/rpm-diff"
    fi
    check "the .rpm's config files are /etc/otpgate/config.toml and /etc/pam.d/otpgate" \
        test "$(rpm -qp --configfiles "$rpm" 2>/dev/null | sort | tr '\n' ' ')" = "/etc/otpgate/config.toml /etc/pam.d/otpgate "
    check "the .rpm's pre-install scriptlet creates the otpgate-send system user (useradd -r, nologin)" \
        bash -c 'rpm -qp --scripts "$1" 2>/dev/null | grep -q "getent passwd otpgate-send >/dev/null || useradd -r .*-s /sbin/nologin .*otpgate-send$"' _ "$rpm"
    rpm -qp --qf '%{PREUN}' "$rpm" >"$work/rpm-preun" 2>/dev/null
    check "the .rpm's %preun is packaging/debian/prerm (one check for both packages)" \
        cmp -s "$work/rpm-preun" packaging/debian/prerm
    check_rpm_preun "$work/rpm-preun" "$work/rpm-root"
    check "the .rpm's /etc/pam.d/otpgate is packaging/rpm/pam.d-otpgate (system-auth, Fedora/RHEL)" \
        test "$(rpm -qp --dump "$rpm" 2>/dev/null | awk '$1 == "/etc/pam.d/otpgate" { print $4 }')" = \
        "$(sha256sum packaging/rpm/pam.d-otpgate | cut -d' ' -f1)"
elif [[ "${CI:-}" == "true" ]]; then
    bad "rpm is installed and the .rpm was built (CI=true)"
else
    echo "SKIP: rpm not installed (Debian package rpm)"
fi

finish

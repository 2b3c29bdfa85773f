#!/usr/bin/env bash
# Runs every shell command of README.md, so the README cannot rot.
#
# Every ```sh block must follow a directive line saying how it is checked:
#   <!-- readme-test: run -->             run as written
#   <!-- readme-test: destdir -->         run with `sudo ` dropped and
#                                         DESTDIR=<temp> added to `make install`
#   <!-- readme-test: instead CMD (why) --> run CMD in its place (interactive
#                                         commands), and say why
#   <!-- readme-test: covered (why) -->   run elsewhere by `make test` (why)
#   <!-- readme-test: skip (why) -->      not run: it changes the real system
# A block without a directive fails. A ```text block after
# <!-- readme-test: same-as FILE --> must equal FILE (a real capture).
#
# Blocks run in order, in one sandbox, from the repository root: `sudo` runs
# the command as is (we are root), and `otpgate` is the built CLI with
# `--config <sandbox>/config.toml` (central user files in the sandbox) and a
# user `alice` that exists only for it (nss_wrapper). Nothing in /etc changes.
#
#   ./packaging/readme-commands.sh [README.md]
set -uo pipefail
cd "$(dirname "$0")/.."
readme=${1:-README.md}

pass=0
fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }

if [[ $(id -u) -ne 0 ]]; then
    [[ "${CI:-}" == "true" ]] && { echo "FAIL readme-commands.sh needs root"; echo "0 passed, 1 failed"; exit 1; }
    echo "SKIP: readme-commands.sh needs root (the README's commands are root's)"
    exit 0
fi

cargo build --quiet -p pam-module -p otpgate || { echo "FAIL cargo build"; echo "0 passed, 1 failed"; exit 1; }
target=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')

S=$(mktemp -d /tmp/otpgate-readme.XXXXXX)
trap 'rm -rf "$S"' EXIT
chmod 0711 "$S"
mkdir -p "$S/bin" "$S/users" "$S/home/alice" "$S/home/bob" "$S/destdir"
chmod 0700 "$S/users"
chown 64001:64001 "$S/home/alice"
chown 64002:64002 "$S/home/bob"
{
    cat /etc/passwd
    echo "alice:x:64001:64001:README alice:$S/home/alice:/bin/sh"
    echo "bob:x:64002:64002:README bob:$S/home/bob:/bin/sh"
} >"$S/passwd"
{
    cat /etc/group
    echo "alice:x:64001:"
    echo "bob:x:64002:"
} >"$S/group"
cat >"$S/config.toml" <<EOF
user_file = "$S/users/%u.toml"
enroll_password_check = false
EOF
chmod 0600 "$S/config.toml"
cat >"$S/bin/sudo" <<'EOF'
#!/bin/sh
exec "$@"
EOF
cat >"$S/bin/otpgate" <<EOF
#!/bin/sh
LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libnss_wrapper.so NSS_WRAPPER_PASSWD=$S/passwd \
NSS_WRAPPER_GROUP=$S/group exec "$target/debug/otpgate" --config "$S/config.toml" "\$@"
EOF
chmod 0755 "$S/bin/sudo" "$S/bin/otpgate"

run_block() { # name script
    local name=$1 script=$2
    if (cd "$PWD" && PATH="$S/bin:$PATH" bash -euo pipefail -c "$script") >"$S/out" 2>&1; then
        ok "$name"
    else
        bad "$name"
        sed 's/^/     /' "$S/out" | tail -20
    fi
}

# Parse: directive, fence, body.
directive=
in_block=0
lang=
body=
line_no=0
start=0
while IFS= read -r line || [[ -n "$line" ]]; do
    line_no=$((line_no + 1))
    if ((in_block)); then
        if [[ "$line" == '```' ]]; then
            in_block=0
            where="README.md:$start"
            first=$(printf '%s' "$body" | head -n1)
            if [[ "$lang" == "sh" ]]; then
                case "$directive" in
                    run) run_block "$where: $first" "$body" ;;
                    destdir)
                        script=$(printf '%s\n' "$body" | sed -e 's/^sudo //' -e "s|make install\(.*\)$|make install\1 DESTDIR=$S/destdir|")
                        run_block "$where: $first (into DESTDIR)" "$script"
                        [[ -x "$S/destdir/usr/local/bin/otpgate" ]] && ok "$where: DESTDIR holds usr/local/bin/otpgate" ||
                            bad "$where: DESTDIR holds usr/local/bin/otpgate"
                        ;;
                    instead\ *)
                        cmd=${directive#instead }
                        cmd=${cmd%% (*}
                        run_block "$where: $first (instead: $cmd)" "$cmd"
                        ;;
                    covered\ \(*|skip\ \(*) echo "--   $where: $first (${directive})" ;;
                    *) bad "$where: \`\`\`sh block without a readme-test directive: $first" ;;
                esac
            elif [[ "$directive" == same-as\ * ]]; then
                file=${directive#same-as }
                if [[ "$body" == "$(cat "$file")" ]]; then
                    ok "$where: the block is $file"
                else
                    bad "$where: the block differs from $file"
                fi
            fi
            directive=
            body=
        else
            body+="${body:+$'\n'}$line"
        fi
        continue
    fi
    if [[ "$line" =~ ^\<!--\ readme-test:\ (.*)\ --\>$ ]]; then
        directive=${BASH_REMATCH[1]}
    elif [[ "$line" =~ ^\`\`\`([a-z]*)$ ]]; then
        in_block=1
        lang=${BASH_REMATCH[1]}
        start=$line_no
        body=
    elif [[ -n "$line" ]]; then
        directive=
    fi
done <"$readme"

echo "$pass passed, $fail failed"
((fail == 0))

#!/usr/bin/env bash
# A mistyped command or option gets the project's "did you mean" (CLI11 alone
# says "A subcommand is required" for `vdkit inof`). Generated variants: every
# command vdkit --help lists, and every long option of every command, with one
# letter doubled (one edit away), must be answered with the right name.
set -uo pipefail
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"

"$VDKIT" --help > help.txt 2>&1
commands=$(awk '/^SUBCOMMANDS:|^Subcommands:/ {on = 1; next} on && /^  [a-z]/ {sub(/,$/, "", $1); print $1}' help.txt)
[ "$(echo "$commands" | wc -w)" -ge 10 ] && ok || { bad "vdkit --help lists fewer than 10 commands"; cat help.txt; }

# The word with its middle letter doubled: "info" -> "inffo".
typo() { local w=$1 m=$((${#1} / 2)); echo "${w:0:m}${w:m:1}${w:m}"; }

for c in $commands; do
    t=$(typo "$c")
    expect_exit 2 "vdkit $t (mistyped $c)" "$VDKIT" "$t" x.img
    says "vdkit $t suggests $c" "'$t' is not a vdkit command — did you mean '$c'?"
done
expect_exit 2 "vdkit inof" "$VDKIT" inof x.img
says "vdkit inof suggests info" "did you mean 'info'?"
# Nothing close: no suggestion, but still the unknown word named.
expect_exit 2 "an unknown command nothing resembles" "$VDKIT" zzzzzzzzzz
says "names the word" "'zzzzzzzzzz' is not a vdkit command (vdkit --help lists them)"
if grep -q "did you mean" out; then bad "suggested something for zzzzzzzzzz"; else ok; fi
# No command at all: CLI11's own message, unchanged.
expect_exit 2 "no command" "$VDKIT"
says "no command" "A subcommand is required"

# Long options of every command, one letter doubled.
options_checked=0
for c in $commands; do
    "$VDKIT" "$c" --help > "help-$c.txt" 2>&1
    for o in $(grep -o -- '--[a-z][a-z-]*[a-z]' "help-$c.txt" | sort -u); do
        [ "$o" = "--help" ] && continue
        name=${o#--}
        [ ${#name} -ge 4 ] || continue
        t="--$(typo "$name")"
        # Usage errors exit 2, but 1 for check and compare, as qemu-img (docs/cli.md).
        want=2
        case $c in check|compare) want=1 ;; esac
        expect_exit "$want" "vdkit $c $t" "$VDKIT" "$c" "$t" x.img
        says "vdkit $c $t suggests $o" "unknown option '$t' — did you mean '$o'?"
        options_checked=$((options_checked + 1))
    done
done
[ "$options_checked" -ge 30 ] && ok || bad "only $options_checked options checked"
# An option of vdkit itself given after the command is placed, not "did you
# mean" the same word back.
for g in -q --verbose -V --config=x.yaml; do
    expect_exit 2 "vdkit create $g (a global option after the command)" "$VDKIT" create "$g" -f raw x.img 1M
    says "vdkit create $g says where it goes" "'${g%%=*}' is an option of vdkit itself, not of 'create': give it before the command"
    if grep -q "did you mean '${g%%=*}'" out; then bad "vdkit create $g suggested the same option"; else ok; fi
done
echo "checked $(echo "$commands" | wc -w) commands and $options_checked options"
finish

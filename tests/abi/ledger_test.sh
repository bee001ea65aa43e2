#!/usr/bin/env bash
# sdk/docs/abi-ledger.md must list every status code with its number, and
# every code in the ledger must exist in the header with that number
# (curl-style docs/header drift check).
set -euo pipefail
header="$VDKIT_SOURCE_DIR/sdk/include/vdkit/status.h"
ledger="$VDKIT_SOURCE_DIR/sdk/docs/abi-ledger.md"
fail=0
from_header=$(grep -E '^#define VDKIT_(OK|E_[A-Z_]+) ' "$header" | awk '{gsub("u","",$3); print $2" "$3}')
while read -r name value; do
    if ! grep -qE "^\| *\`$name\` *\| *$value *\|" "$ledger"; then
        echo "FAIL: $name = $value is not in the ledger with that number"
        fail=1
    fi
done <<< "$from_header"
while read -r name value; do
    if ! grep -qE "^#define $name +${value}u" "$header"; then
        echo "FAIL: ledger lists $name = $value, the header does not"
        fail=1
    fi
done < <(grep -oE '^\| *`VDKIT_(OK|E_[A-Z_]+)` *\| *[0-9]+' "$ledger" | tr -d '|`' | awk '{print $1" "$2}')
n=$(echo "$from_header" | wc -l)

# Capability bits: every VDKIT_CAP_* in plugin.h is in the ledger with its bit
# number and the other way round; a retired bit is listed as retired.
plugin_h="$VDKIT_SOURCE_DIR/sdk/include/vdkit/plugin.h"
caps=$(grep -E '^#define VDKIT_CAP_[A-Z0-9_]+ +\(1ull << [0-9]+\)' "$plugin_h" |
       sed -E 's/^#define (VDKIT_CAP_[A-Z0-9_]+) +\(1ull << ([0-9]+)\).*/\1 \2/')
[ -n "$caps" ] || { echo "FAIL: no capability bits found in plugin.h"; fail=1; }
while read -r name bit; do
    if ! grep -qE "^\| *\`$name\` *\| *$bit *\|" "$ledger"; then
        echo "FAIL: capability $name = bit $bit is not in the ledger with that number"
        fail=1
    fi
    case "$name" in
    *_OBSOLETE_*)
        grep -qE "^\| *\`$name\` *\|.*\| *retired" "$ledger" || { echo "FAIL: $name is not marked retired"; fail=1; } ;;
    esac
done <<< "$caps"
while read -r name bit; do
    if ! grep -qE "^#define $name +\(1ull << $bit\)" "$plugin_h"; then
        echo "FAIL: ledger lists capability $name = bit $bit, plugin.h does not"
        fail=1
    fi
done < <(grep -oE '^\| *`VDKIT_CAP_[A-Z0-9_]+` *\| *[0-9]+' "$ledger" | tr -d '|`' | awk '{print $1" "$2}')
# No bit number is used twice.
dups=$(echo "$caps" | awk '{print $2}' | sort | uniq -d)
[ -z "$dups" ] || { echo "FAIL: capability bit(s) $dups defined twice"; fail=1; }

# The version the ledger names is the one the header defines.
major=$(sed -nE 's/^#define VDKIT_ABI_MAJOR ([0-9]+)u.*/\1/p' "$plugin_h")
minor=$(sed -nE 's/^#define VDKIT_ABI_MINOR ([0-9]+)u.*/\1/p' "$plugin_h")
if ! grep -qF "Current version: **$major.$minor**" "$ledger"; then
    echo "FAIL: plugin.h defines ABI $major.$minor, the ledger's current version differs"
    fail=1
fi
if ! grep -qF "Current version: **$major.$minor**" "$VDKIT_SOURCE_DIR/sdk/docs/abi-policy.md"; then
    echo "FAIL: plugin.h defines ABI $major.$minor, abi-policy.md's current version differs"
    fail=1
fi

ncaps=$(echo "$caps" | wc -l)
[ "$fail" -eq 0 ] && echo "OK: $n status codes, $ncaps capability bits and ABI $major.$minor agree between the headers and the ledger"
exit "$fail"

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
[ "$fail" -eq 0 ] && echo "OK: $n status codes agree between status.h and the ledger"
exit "$fail"

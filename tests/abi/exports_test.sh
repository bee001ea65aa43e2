#!/usr/bin/env bash
# Every plugin built with vdkit_add_plugin exports exactly one dynamic symbol:
# vdkit_plugin_entry (the version script and hidden visibility guarantee it).
set -euo pipefail
fail=0
count=0
for so in "$VDKIT_BUILD_DIR"/lib/vdkit/plugins/*.so "$VDKIT_TEST_EXTRA_PLUGIN_DIR"/*.so; do
    count=$((count + 1))
    exported=$(nm -D --defined-only "$so" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | sort -u)
    if [ "$exported" != "vdkit_plugin_entry" ]; then
        echo "FAIL: $so exports: $exported"
        fail=1
    fi
    # Plugins never link the core library.
    if ldd "$so" | grep -q 'libvdkit\.so'; then
        echo "FAIL: $so links libvdkit"
        fail=1
    fi
done
[ "$count" -ge 3 ] || { echo "FAIL: expected at least 3 plugins, found $count"; exit 1; }
[ "$fail" -eq 0 ] && echo "OK: $count plugins export only vdkit_plugin_entry"
exit "$fail"

#!/usr/bin/env bash
# Build the API reference of the public headers (core/include/vdkit/vdkit.h
# and vdkit.hpp) with Doxygen into OUT (default build/docs) and fail when a
# public function is not documented: Doxygen's warnings name every
# undocumented function ("... (function) ... is not documented") and every
# undocumented class or struct (whose functions it would otherwise skip);
# any other warning but an undocumented macro, variable, enumerator or
# typedef (documentation errors, unknown commands) fails too.
#   usage: scripts/api-docs.sh [OUT] [SOURCE_DIR]
# `make docs` runs it; the ctest "docs: every public function is documented"
# runs it and shows it fails on a function without documentation.
set -u
out=${1:-build/docs}
src=${2:-$(cd "$(dirname "$0")/.." && pwd)}
command -v doxygen > /dev/null || { echo "doxygen is not installed (scripts/install-deps.sh installs it)"; exit 2; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
log=$out/doxygen-warnings.log
(cd "$src" && VDKIT_DOCS_OUT="$out" VDKIT_DOCS_LOG="$log" doxygen docs/Doxyfile) || { echo "doxygen failed"; exit 1; }
# Doxygen continues a warning on indented lines; judge the first line of each.
problems=$(grep -v '^ ' "$log" | grep -v -E 'Member .* \((variable|enumvalue|enumeration|macro definition|typedef)\) of .* is not documented\.$' || true)
if [ -n "$problems" ]; then
    echo "API documentation problems (public functions must be documented: units, ownership, thread safety, status codes):"
    printf '%s\n' "$problems"
    exit 1
fi
echo "API reference: $out/html/index.html (every public function documented)"

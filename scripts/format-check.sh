#!/usr/bin/env bash
# The tree against .clang-format: every C and C++ file git tracks (*.c *.h
# *.cc *.cpp *.hpp) is run through clang-format --dry-run -Werror; the files
# it would change are listed and the status is 1. With --fix they are
# formatted in place instead (`make format`).
#   usage: scripts/format-check.sh [--fix] [--verbose] [SOURCE_DIR]
# --verbose shows clang-format's own report (each line it would change).
# SOURCE_DIR (default: this checkout) must be a git work tree holding a
# .clang-format. CLANG_FORMAT names the binary (default clang-format; Debian's
# `clang-format` package, scripts/install-deps.sh). Exit 2: no clang-format,
# no git tree or no .clang-format.
set -u
fix=0 verbose=0 src=
for a in "$@"; do
    case $a in
    --fix) fix=1 ;;
    --verbose) verbose=1 ;;
    -*) echo "usage: $0 [--fix] [--verbose] [SOURCE_DIR]" >&2; exit 2 ;;
    *) src=$a ;;
    esac
done
src=${src:-$(cd "$(dirname "$0")/.." && pwd)}
tool=${CLANG_FORMAT:-clang-format}
command -v "$tool" > /dev/null || { echo "$tool is not installed (scripts/install-deps.sh installs clang-format)"; exit 2; }
cd "$src" || exit 2
[ -f .clang-format ] || { echo "$src has no .clang-format"; exit 2; }
git rev-parse --is-inside-work-tree > /dev/null 2>&1 || { echo "$src is not a git work tree"; exit 2; }
mapfile -d '' files < <(git ls-files -z -- '*.c' '*.h' '*.cc' '*.cpp' '*.hpp')
[ ${#files[@]} -gt 0 ] || { echo "no C or C++ files tracked in $src"; exit 2; }

if [ "$fix" = 1 ]; then
    "$tool" -i --style=file -- "${files[@]}" || exit 1
    echo "formatted ${#files[@]} files with $("$tool" --version | head -n 1)"
    exit 0
fi
differ=()
for f in "${files[@]}"; do
    if ! report=$("$tool" --dry-run -Werror --style=file -- "$f" 2>&1); then
        differ+=("$f")
        [ "$verbose" = 1 ] && printf '%s\n' "$report"
    fi
done
if [ ${#differ[@]} -gt 0 ]; then
    echo "${#differ[@]} of ${#files[@]} files differ from .clang-format (make format fixes them):"
    printf '  %s\n' "${differ[@]}"
    exit 1
fi
echo "all ${#files[@]} C/C++ files follow .clang-format"

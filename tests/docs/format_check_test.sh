#!/usr/bin/env bash
# scripts/format-check.sh (`make format`): on a git tree made here with the
# repo's .clang-format, a file clang-format would change fails the check by
# name (a C++ and a C file, tracked; an untracked one is not judged), --fix
# formats them to exactly what clang-format makes, and the check then
# passes. A tree without .clang-format or git is refused (exit 2). The real
# tree is not judged here: it is reformatted once, by the integrator, and the
# check joins CI then.
set -u
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
require_tools clang-format git
check=$VDKIT_SOURCE_DIR/scripts/format-check.sh

tree=$work/tree
mkdir -p "$tree/src"
cp "$VDKIT_SOURCE_DIR/.clang-format" "$tree/"
printf 'int  add( int a,int b ){return a+b;}\n' > "$tree/src/bad.cpp"
printf 'struct s { int  x; };\n' > "$tree/src/bad.h"
printf 'int good(int a) {\n    return a;\n}\n' > "$tree/src/good.cpp"
printf 'int  untracked( ){return 0;}\n' > "$tree/src/untracked.cpp"
git -C "$tree" init -q && git -C "$tree" add .clang-format src/bad.cpp src/bad.h src/good.cpp ||
    bad "making the git tree"

expect_exit 1 "files clang-format would change fail the check" bash "$check" "$tree"
says "the failure counts them" "2 of 3 files differ from .clang-format"
says "names the C++ file" "  src/bad.cpp"
says "names the C header" "  src/bad.h"
grep -q "good.cpp\|untracked.cpp" out && bad "a formatted or untracked file was named: $(cat out)" || ok
expect_exit 1 "--verbose shows clang-format's report" bash "$check" --verbose "$tree"
says "... with the line it would change" "bad.cpp:1:"

(cd "$tree" && clang-format --style=file --assume-filename=src/bad.cpp < src/bad.cpp) > want.cpp
expect_exit 0 "--fix formats the tracked files" bash "$check" --fix "$tree"
cmp -s want.cpp "$tree/src/bad.cpp" && ok || bad "--fix did not write what clang-format makes: $(cat "$tree/src/bad.cpp")"
grep -q '^int  untracked( )' "$tree/src/untracked.cpp" && ok || bad "--fix touched an untracked file"
expect_exit 0 "after --fix the check passes" bash "$check" "$tree"
says "and says so" "all 3 C/C++ files follow .clang-format"

rm "$tree/.clang-format"
expect_exit 2 "a tree without .clang-format is refused" bash "$check" "$tree"
says "naming what is missing" "has no .clang-format"
mkdir plain && cp "$VDKIT_SOURCE_DIR/.clang-format" plain/
expect_exit 2 "a directory that is not a git tree is refused" bash "$check" "$work/plain"
says "saying so" "is not a git work tree"

# The checkout itself: every tracked C/C++ file follows .clang-format (CI
# runs this; `make format` fixes what it names).
if git -C "$VDKIT_SOURCE_DIR" rev-parse --is-inside-work-tree > /dev/null 2>&1; then
    expect_exit 0 "this checkout follows .clang-format (make format fixes it)" bash "$check" "$VDKIT_SOURCE_DIR"
    says "every tracked file was checked" "C/C++ files follow .clang-format"
else
    echo "NOTE: $VDKIT_SOURCE_DIR is not a git work tree (an unpacked archive): its own format is not checked"
fi

finish

#!/usr/bin/env bash
# `cmake --install` puts the man pages (vdkit(1) and one per command, from
# docs/cli.md) and the bash and zsh completions in place, and they work:
# the man pages render, bash's completion registers for vdkit and offers
# commands, a command's options and the format names `vdkit plugins` lists.
set -uo pipefail
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
require_tools man

prefix=$PWD/prefix
cmake --install "$VDKIT_BUILD_DIR" --prefix "$prefix" > install.log 2>&1 || { bad "cmake --install: $(tail -5 install.log)"; finish; }
man1=$prefix/share/man/man1
bashc=$prefix/share/bash-completion/completions/vdkit
zshc=$prefix/share/zsh/vendor-completions/_vdkit
for f in "$man1/vdkit.1" "$man1/vdkit-convert.1" "$man1/vdkit-info.1" "$man1/vdkit-check.1" "$bashc" "$zshc"; do
    [ -s "$f" ] && ok || bad "$f is not installed"
done
# One page per command of `vdkit help`.
for c in $("$prefix/bin/vdkit" --help | awk '/^SUBCOMMANDS:|^Subcommands:/ {on = 1; next} on && /^  [a-z]/ {sub(/,$/, "", $1); print $1}'); do
    [ "$c" = help ] && continue
    [ -s "$man1/vdkit-$c.1" ] && ok || bad "no man page for vdkit $c"
done
MANWIDTH=80 man -l "$man1/vdkit-convert.1" 2> err | tr -s ' ' > out && [ ! -s err ] && ok || bad "man -l vdkit-convert.1: $(cat err)"
says "vdkit-convert(1) has the synopsis" "vdkit convert [-f FMT]"
MANWIDTH=80 man -l "$man1/vdkit.1" > out 2> err && ok || bad "man -l vdkit.1: $(cat err)"
says "vdkit(1) has the exit codes" "EXIT STATUS"
[ ! -s err ] && ok || bad "man warns: $(cat err)"

# bash: the completion registers and answers.
bash -c "source '$bashc' && complete -p vdkit" > out 2>&1 && ok || bad "complete -p vdkit: $(cat out)"
says "the completion function is registered" "_vdkit"
complete_words() { # complete_words WORD... : what bash offers for the last word
    PATH="$prefix/bin:$PATH" bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _vdkit; printf "%s\n" "${COMPREPLY[@]}"' _ "$bashc" "$@"
}
complete_words vdkit con > out; says "commands" "convert"
complete_words vdkit convert --over > out; says "a command's options" "--overwrite"
complete_words vdkit info -f v > out; says "format names from vdkit plugins" "vmdk"
says "format names from vdkit plugins" "vdi"
complete_words vdkit help ch > out; says "vdkit help COMMAND" "check"
# zsh, when installed: the file parses.
if command -v zsh > /dev/null; then
    zsh -n "$zshc" && ok || bad "zsh -n _vdkit"
fi
finish

# bash completion for vdkit (installed by cmake --install into
# share/bash-completion/completions/vdkit). Commands and each command's
# options come from vdkit itself (`vdkit --help`, `vdkit help COMMAND`),
# format names from `vdkit plugins`, so they always match the binary.

_vdkit_commands() {
    vdkit --help 2>/dev/null | awk '/^SUBCOMMANDS:|^Subcommands:/ {on = 1; next} on && /^  [a-z]/ {sub(/,$/, "", $1); print $1}'
}
_vdkit_options() { # _vdkit_options COMMAND
    vdkit help "$1" 2>/dev/null | grep -oE '(^|[ ,])--?[A-Za-z][-A-Za-z]*' | tr -d ' ,' | sort -u
}
_vdkit_formats() {
    vdkit plugins 2>/dev/null | awk '$1 == "format" {print $2}'
}

_vdkit() {
    local cur prev cmd i
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD-1]}
    cmd=
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
            --config|--plugin-path|--progress) ((i++)) ;;
            -*) ;;
            *) cmd=${COMP_WORDS[i]}; break ;;
        esac
    done
    case $prev in
        -f|--format|-O|--output-format|-F|--backing-format|--second-format|--cache-format)
            COMPREPLY=($(compgen -W "$(_vdkit_formats)" -- "$cur")); return ;;
        --output) COMPREPLY=($(compgen -W "human json" -- "$cur")); return ;;
        --progress) COMPREPLY=($(compgen -W "json json:" -- "$cur")); return ;;
        --config|--plugin-path|--search-dir|-b|--backing|-B|--cache|--report|--from|--to)
            COMPREPLY=($(compgen -f -- "$cur")); return ;;
    esac
    if [[ -z $cmd ]]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "--config --plugin-path --progress -q --quiet -v --verbose -V --version -h --help" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$(_vdkit_commands)" -- "$cur"))
        fi
        return
    fi
    if [[ $cmd == help ]]; then
        COMPREPLY=($(compgen -W "$(_vdkit_commands)" -- "$cur"))
        return
    fi
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(_vdkit_options "$cmd")" -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
}
complete -o filenames -F _vdkit vdkit

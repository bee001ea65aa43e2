# NBD servers for the test suites (the nbd transport's and vdkit serve's), on
# Unix sockets in the suite's work directory, started and stopped through
# server_lib.sh (logs in $work/NAME.server.log). Source after script_lib.sh.
#   serve_qemu NAME FILE [qemu-nbd args...]   qemu-nbd -f raw exporting FILE as NAME
#   serve_nbdkit NAME [nbdkit args...]        nbdkit (foreground) on NAME.sock
#   serve_nbdkit_vdkit NAME [nbdkit args...]  the same, loading vdkit's nbdkit plugin
#   serve_vdkit NAME IMAGE [vdkit serve args...]  vdkit serve of IMAGE on NAME.sock
#   plugin_host_env                           env args for nbdkit loading vdkit's plugin
#   url NAME [EXPORT]                         nbd+unix URL of NAME.sock (export: NAME;
#                                             "" for the default export)
#   stop_server NAME                          (server_lib.sh) stop it, remove NAME.sock
#   same_data_map VDKIT_MAP NBDINFO_MAP       `vdkit map --output=json` and `nbdinfo --map
#                                             --json` name the same data ranges (merged; at
#                                             least 3); prints both, status 1 if they differ
. "$VDKIT_SOURCE_DIR/tests/support/server_lib.sh"

# _serve_on_socket NAME CMD...: start_server, then wait for NAME.sock (its log
# shown when it never comes).
_serve_on_socket() {
    local name=$1
    shift
    rm -f "$work/$name.sock"
    start_server "$name" "$@"
    wait_for_socket "$work/$name.sock" || { sed 's/^/    /' "$work/$name.server.log"; return 1; }
}

serve_qemu() {
    local name=$1 file=$2
    shift 2
    # -t: keep serving after a client leaves; --shared: several clients (vdkit
    # opens an image more than once: probe, open, extents).
    _serve_on_socket "$name" qemu-nbd -f raw -t --shared=8 -x "$name" --socket="$work/$name.sock" "$@" "$file"
}

serve_nbdkit() {
    local name=$1
    shift
    _serve_on_socket "$name" nbdkit -f --exit-with-parent -U "$work/$name.sock" "$@"
}

# serve_nbdkit_vdkit NAME [nbdkit args...]: serve_nbdkit of vdkit's nbdkit
# plugin (its path among the args), in plugin_host_env.
serve_nbdkit_vdkit() {
    local name=$1
    shift
    _serve_on_socket "$name" env "${plugin_host_env[@]}" nbdkit -f --exit-with-parent -U "$work/$name.sock" "$@"
}

serve_vdkit() {
    local name=$1 image=$2
    shift 2
    _serve_on_socket "$name" env "${plugin_host_env[@]}" "$VDKIT" serve --socket "$work/$name.sock" "$@" "$image"
}

# The environment of a program that is not built with vdkit's sanitizer but
# loads vdkit's code (nbdkit with vdkit's plugin, also when vdkit serve runs
# it): in an ASan or TSan build the sanitizer runtime preloaded
# (with_sanitizer_runtime) and no leak report about the host program's own
# allocations; in a normal build nothing changes. Use: env "${plugin_host_env[@]}" CMD.
plugin_host_env=(LD_PRELOAD="$(with_sanitizer_runtime)")
[ -n "$(with_sanitizer_runtime)" ] && plugin_host_env+=("$(no_leak_check)")

url() { echo "nbd+unix:///${2-$1}?socket=$work/$1.sock"; }

same_data_map() {
    python3 - "$1" "$2" <<'PY'
import json, sys
def merge(r):
    out = []
    for a, n in sorted(r):
        if out and out[-1][0] + out[-1][1] == a: out[-1][1] += n
        else: out.append([a, n])
    return out
v = merge((e["start"], e["length"]) for e in json.load(open(sys.argv[1])) if e["data"])
m = merge((e["offset"], e["length"]) for e in json.load(open(sys.argv[2])) if not e["type"] & 2)
print("vdkit  ", v)
print("nbdinfo", m)
sys.exit(0 if v == m and len(v) >= 3 else 1)
PY
}

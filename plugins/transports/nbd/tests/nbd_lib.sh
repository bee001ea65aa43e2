# NBD servers for the test suites, started in the suite's work directory on
# Unix sockets and stopped when it exits. Source after script_lib.sh.
#   serve_qemu NAME FILE [qemu-nbd args...]   qemu-nbd -f raw exporting FILE as NAME
#   serve_nbdkit NAME [nbdkit args...]          nbdkit (foreground) on NAME.sock
#   url NAME [EXPORT]                           nbd+unix URL of NAME.sock (export: NAME)
#   stop_server NAME                            stop it and wait until it has gone
declare -A _server_pid=()
at_exit 'for n in "${!_server_pid[@]}"; do stop_server "$n"; done'

# wait_for_socket PATH: until a server listens there (5 s at most).
wait_for_socket() {
    local i
    for i in $(seq 100); do
        [ -S "$1" ] && return 0
        sleep 0.05
    done
    bad "no server came up on $1"
    return 1
}

serve_qemu() {
    local name=$1 file=$2
    shift 2
    rm -f "$work/$name.sock"
    # -t: keep serving after a client leaves; --shared: several clients (vdkit
    # opens an image more than once: probe, open, extents).
    qemu-nbd -f raw -t --shared=8 -x "$name" --socket="$work/$name.sock" "$@" "$file" 2> "$work/$name.log" &
    _server_pid[$name]=$!
    wait_for_socket "$work/$name.sock"
}

serve_nbdkit() {
    local name=$1
    shift
    rm -f "$work/$name.sock"
    nbdkit -f --exit-with-parent -U "$work/$name.sock" "$@" 2> "$work/$name.log" &
    _server_pid[$name]=$!
    wait_for_socket "$work/$name.sock"
}

stop_server() {
    local pid=${_server_pid[$1]:-}
    [ -n "$pid" ] || return 0
    kill "$pid" 2> /dev/null
    wait "$pid" 2> /dev/null
    unset "_server_pid[$1]"
    rm -f "$work/$1.sock"
}

url() { echo "nbd+unix:///${2-$1}?socket=$work/$1.sock"; }

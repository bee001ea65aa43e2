# Servers for the test suites (NBD servers, vdkit serve, HTTP and S3
# stand-ins): started in the background from the suite's work directory,
# their output (stdout and stderr) in $work/NAME.server.log, stopped when
# the suite exits. Source after script_lib.sh.
#   start_server NAME CMD [ARGS...]  run CMD as server NAME ($! is its pid)
#   server_pid NAME                  its process id ("" when not running)
#   stop_server NAME                 stop it, wait until it has gone, and
#                                    remove its socket $work/NAME.sock if any
#   wait_for_socket PATH             until a Unix socket is there (5 s at most)
#   wait_for_file PATH               until a file (a port file) is not empty
#                                    (10 s at most); status 1 if it stays so
#   free_port                        a free TCP port on 127.0.0.1
#   wait_port PORT [SECONDS]         until something accepts connections there
#                                    (default 15 s); status 1 if nothing does
declare -A _server_pid=()
at_exit 'for n in "${!_server_pid[@]}"; do stop_server "$n"; done'

start_server() {
    local name=$1
    shift
    "$@" > "$work/$name.server.log" 2>&1 &
    _server_pid[$name]=$!
}

server_pid() { echo "${_server_pid[$1]:-}"; }

stop_server() {
    local pid=${_server_pid[$1]:-}
    [ -n "$pid" ] || return 0
    kill "$pid" 2> /dev/null
    wait "$pid" 2> /dev/null
    unset "_server_pid[$1]"
    rm -f "$work/$1.sock"
}

# _poll TRIES PAUSE CMD...: until CMD succeeds, at most TRIES times PAUSE seconds apart.
_poll() {
    local tries=$1 pause=$2
    shift 2
    for _ in $(seq "$tries"); do
        "$@" && return 0
        sleep "$pause"
    done
    return 1
}

wait_for_socket() { _poll 100 0.05 test -S "$1" || { bad "no server came up on $1"; return 1; }; }
wait_for_file() { _poll 100 0.1 test -s "$1"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() {
    python3 - "$1" "${2:-15}" <<'PY'
import socket, sys, time
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close(); sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)
PY
}

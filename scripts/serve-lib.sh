# Sourced by the measuring scripts: starts `lore serve` on a free loopback port with no
# embedder and no LLM, in a scratch folder, and reads its memory from /proc.
#   start_serve LORE_BINARY WORK_DIR   sets $pid, $port, $token; logs to WORK_DIR/serve.log
#   kib FIELD                          VmRSS, VmHWM, ... of the server, in KiB
#   stop_serve                         SIGTERM and wait

start_serve() {
    local lore=$1 work=$2
    mkdir -p "$work/data" "$work/tmp"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    token=measure-admin-token-0123456789
    LORE_STORE__DATA_DIR="$work/data" \
        LORE_EMBEDDING__PROVIDER=${LORE_EMBEDDING__PROVIDER:-none} \
        LORE_LLM__PROVIDER=${LORE_LLM__PROVIDER:-none} \
        LORE_HTTP__LISTEN="127.0.0.1:$port" \
        LORE_HTTP_TOKENS="$token:measure:admin" \
        LORE_LOG=${LORE_LOG:-warn} \
        TMPDIR="$work/tmp" \
        "$lore" serve >"$work/serve.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 600); do
        curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return 0
        kill -0 "$pid" 2>/dev/null || { cat "$work/serve.log" >&2; return 1; }
        sleep 0.1
    done
    echo "lore serve did not answer /healthz within 60 s" >&2
    return 1
}

kib() { awk -v k="$1" '$1 == k":" { print $2 }' "/proc/$pid/status"; }

stop_serve() {
    [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    pid=
}

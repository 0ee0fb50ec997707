#!/usr/bin/env bash
# Checks lore against a real 3-node Qdrant cluster on loopback:
#   1. starts three Qdrant nodes in distributed mode (node 0 bootstraps, 1 and 2 join),
#   2. runs the store conformance suite against it (LORE_TEST_QDRANT_URL, tests/store_conformance.rs),
#   3. with lore's release binary: creates a collection of 6 shards x 2 replicas through all
#      three gRPC URLs, ingests and searches, kills node 0 (the first URL), and checks that
#      searches (reads) and ingests (writes) continue and `lore stats --json` shows the dead
#      replicas.
#
# Usage: deploy/qdrant-cluster-check.sh /path/to/qdrant [work-dir]
# Needs curl, and cargo for step 2 (CARGO_TARGET_DIR is honoured). Ports 16333-16355 on
# 127.0.0.1 must be free. Everything runs from a temporary directory, removed at the end
# unless KEEP=1. Exit status 0 means every check passed.
set -euo pipefail

qdrant=${1:?usage: $0 /path/to/qdrant [work-dir]}
[ -x "$qdrant" ] || { echo "not an executable: $qdrant" >&2; exit 2; }
qdrant=$(cd "$(dirname "$qdrant")" && pwd)/$(basename "$qdrant")
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${2:-$(mktemp -d "${TMPDIR:-/tmp}/lore-qdrant-cluster.XXXXXX")}
mkdir -p "$work"
target=${CARGO_TARGET_DIR:-$repo/target}
lore="$target/release/lore"

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "${KEEP:-0}" != 1 ]; then rm -rf "$work"; else echo "kept $work"; fi
}
trap cleanup EXIT

http_port() { echo $((16333 + 10 * $1)); }
grpc_port() { echo $((16334 + 10 * $1)); }
p2p_port() { echo $((16335 + 10 * $1)); }

start_node() {
    local n=$1 dir="$work/node$n"
    mkdir -p "$dir/storage" "$dir/snapshots"
    local args=(--uri "http://127.0.0.1:$(p2p_port "$n")")
    if [ "$n" != 0 ]; then args=(--bootstrap "http://127.0.0.1:$(p2p_port 0)" "${args[@]}"); fi
    (
        cd "$dir"
        QDRANT__CLUSTER__ENABLED=true \
        QDRANT__CLUSTER__P2P__PORT="$(p2p_port "$n")" \
        QDRANT__SERVICE__HOST=127.0.0.1 \
        QDRANT__SERVICE__HTTP_PORT="$(http_port "$n")" \
        QDRANT__SERVICE__GRPC_PORT="$(grpc_port "$n")" \
        QDRANT__STORAGE__STORAGE_PATH="$dir/storage" \
        QDRANT__STORAGE__SNAPSHOTS_PATH="$dir/snapshots" \
        QDRANT__TELEMETRY_DISABLED=true \
        QDRANT_INIT_FILE_PATH="$dir/.qdrant-initialized" \
        exec "$qdrant" "${args[@]}"
    ) >"$work/node$n.log" 2>&1 &
    pids[n]=$!
}

# Polls until "$@" succeeds, at most $1 seconds.
wait_for() {
    local secs=$1; shift
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then return 1; fi
        sleep 1
    done
}

peers_joined() {
    # Three peers, each listed with its URI, in node 0's view of the cluster.
    [ "$(curl -fsS "http://127.0.0.1:$(http_port 0)/cluster" | grep -o '"uri"' | wc -l)" -ge 3 ]
}

fail() { echo "FAIL: $*" >&2; exit 1; }

echo "== starting 3 Qdrant nodes under $work"
start_node 0
wait_for 60 curl -fsS "http://127.0.0.1:$(http_port 0)/readyz" || fail "node 0 not ready (see $work/node0.log)"
start_node 1
start_node 2
for n in 1 2; do
    wait_for 60 curl -fsS "http://127.0.0.1:$(http_port "$n")/readyz" || fail "node $n not ready (see $work/node$n.log)"
done
wait_for 60 peers_joined || fail "the nodes did not form a 3-peer cluster"
echo "   3 peers joined"

echo "== conformance suite against the cluster (node 0)"
(
    cd "$repo"
    LORE_TEST_QDRANT_URL="http://127.0.0.1:$(grpc_port 0)" \
        cargo test --release --test store_conformance real_qdrant_server -- --nocapture
) || fail "conformance suite"

echo "== lore through all three URLs: 6 shards x 2 replicas"
[ -x "$lore" ] || (cd "$repo" && cargo build --release --bin lore) || fail "building lore"
urls="http://127.0.0.1:$(grpc_port 0),http://127.0.0.1:$(grpc_port 1),http://127.0.0.1:$(grpc_port 2)"
docs="$work/docs"
mkdir -p "$docs" "$work/lore-data"
printf '# Tea\n\nOolong is a partially oxidised tea from Fujian and Taiwan.\n' >"$docs/tea.md"
printf 'The borrow checker enforces ownership at compile time.\n' >"$docs/rust.txt"
run_lore() {
    LORE_STORE__BACKEND=qdrant \
    LORE_STORE__URL="$urls" \
    LORE_STORE__COLLECTION=lore_cluster_check \
    LORE_STORE__SHARD_NUMBER=6 \
    LORE_STORE__REPLICATION_FACTOR=2 \
    LORE_STORE__WRITE_CONSISTENCY_FACTOR=1 \
    LORE_STORE__PEER_WAIT_SECS=30 \
    LORE_STORE__DATA_DIR="$work/lore-data" \
    LORE_EMBEDDING__PROVIDER=none \
        "$lore" "$@"
}
run_lore ingest "$docs/tea.md" || fail "ingest"
run_lore search "oolong tea" --json | grep -q tea.md || fail "search before the kill"
stats=$(run_lore stats --json) || fail "stats"
echo "   $stats"
echo "$stats" | grep -q '"shard_number":6' || fail "the collection should have 6 shards"
[ "$(echo "$stats" | grep -o '"state":"Active"' | wc -l)" -eq 12 ] || fail "expected 12 active replicas"

echo "== killing node 0 (the first URL)"
kill -9 "${pids[0]}"
wait "${pids[0]}" 2>/dev/null || true
run_lore search "oolong tea" --json | grep -q tea.md || fail "read after the kill"
run_lore ingest "$docs/rust.txt" || fail "write after the kill"
run_lore search "borrow checker" --json | grep -q rust.txt || fail "reading the write after the kill"
stats=$(run_lore stats --json) || fail "stats after the kill"
echo "   $stats"
echo "$stats" | grep -q '"state":"Dead"' || echo "   (no replica reported Dead yet: Qdrant marks them on the next failed update)"
echo "OK: conformance suite passed on the cluster; reads and writes continued with node 0 down"

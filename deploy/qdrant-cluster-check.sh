#!/usr/bin/env bash
# Checks lore against a real 3-node Qdrant cluster on loopback (issue 19's "done means"):
#   1. starts node 0 alone and has lore create its collection (6 shards x 2 replicas, through
#      all three gRPC URLs) while nodes 1 and 2 join late: lore must wait for them and get
#      every shard and replica it was configured for;
#   2. runs the store conformance suite against the cluster (LORE_TEST_QDRANT_URL);
#   3. compares BM25 scores through the 6-shard collection with the embedded store's;
#   4. empties a tenant with `lore forget` and migrates the cluster into an embedded store;
#   5. kills node 0 (the first URL) and checks that searches and ingests go on; then brings
#      it back, waits until every replica is Active again, and does the same with node 1;
#   6. starts one more node with an API key and checks that a wrong or missing key gets
#      lore's message naming QDRANT_API_KEY, and the right key works.
#
# Usage: deploy/qdrant-cluster-check.sh /path/to/qdrant [work-dir]
# Needs curl, python3, and cargo for step 2 (CARGO_TARGET_DIR is honoured). Ports
# 16333-16365 on 127.0.0.1 must be free. Everything runs from a temporary directory,
# removed at the end unless KEEP=1. Exit status 0 means every check passed.
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

# start_node N [single API-KEY]: node N of the cluster (0 bootstraps it), or with "single"
# a node of its own that requires API-KEY.
start_node() {
    local n=$1 mode=${2:-cluster} key=${3:-} dir="$work/node$1"
    mkdir -p "$dir/storage" "$dir/snapshots"
    local args=(--uri "http://127.0.0.1:$(p2p_port "$n")")
    if [ "$n" != 0 ] && [ "$mode" = cluster ]; then args=(--bootstrap "http://127.0.0.1:$(p2p_port 0)" "${args[@]}"); fi
    local cluster=true
    if [ "$mode" = single ]; then cluster=false; args=(); fi
    (
        cd "$dir"
        if [ -n "$key" ]; then export QDRANT__SERVICE__API_KEY="$key"; fi
        QDRANT__CLUSTER__ENABLED=$cluster \
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

ready() { curl -fsS "http://127.0.0.1:$(http_port "$1")/readyz"; }

urls="http://127.0.0.1:$(grpc_port 0),http://127.0.0.1:$(grpc_port 1),http://127.0.0.1:$(grpc_port 2)"
docs="$work/docs"
mkdir -p "$docs"
printf '# Tea\n\nOolong is a partially oxidised tea from Fujian and Taiwan.\n\nGreen tea is not oxidised; black tea is fully oxidised.\n' >"$docs/tea.md"
printf 'The borrow checker enforces ownership at compile time.\n' >"$docs/rust.txt"
printf 'Pu-erh is a fermented tea from Yunnan, aged for years.\n' >"$docs/puerh.txt"
[ -x "$lore" ] || (cd "$repo" && cargo build --release --bin lore) || fail "building lore"
# lore against the cluster: the settings of deploy/settings/cluster.toml, given here as
# environment, every node's URL, a data dir of its own for conversation memory.
run_lore() {
    LORE_STORE__BACKEND=qdrant \
    LORE_STORE__URL="${LORE_URLS:-$urls}" \
    LORE_STORE__COLLECTION=lore_cluster_check \
    LORE_STORE__SHARD_NUMBER=${SHARDS:-6} \
    LORE_STORE__REPLICATION_FACTOR=${REPLICAS:-2} \
    LORE_STORE__WRITE_CONSISTENCY_FACTOR=1 \
    LORE_STORE__PEER_WAIT_SECS=90 \
    LORE_STORE__DATA_DIR="$work/lore-data" \
    LORE_EMBEDDING__PROVIDER=none \
        "$lore" "$@"
}
# The same documents in an embedded store, for comparing scores.
run_embedded() {
    LORE_STORE__DATA_DIR="$work/embedded-data" LORE_EMBEDDING__PROVIDER=none "$lore" "$@"
}

echo "== 1. node 0 alone; lore creates its collection while nodes 1 and 2 join late"
start_node 0
wait_for 60 ready 0 || fail "node 0 not ready (see $work/node0.log)"
run_lore ingest "$docs/tea.md" >"$work/first-ingest.log" 2>&1 &
first_ingest=$!
# lore must wait for peers, not keep a 1-node collection (Qdrant never adds the missing
# replicas later): it says so in its log; then the other nodes join.
wait_for 60 grep -q "waiting for more Qdrant peers" "$work/first-ingest.log" \
    || fail "lore did not wait for peers (see $work/first-ingest.log)"
start_node 1
start_node 2
for n in 1 2; do
    wait_for 60 ready "$n" || fail "node $n not ready (see $work/node$n.log)"
done
wait_for 60 peers_joined || fail "the nodes did not form a 3-peer cluster"
echo "   3 peers joined"
wait "$first_ingest" || { cat "$work/first-ingest.log"; fail "the first ingest"; }
stats=$(run_lore stats --json) || fail "stats"
echo "   $stats"
echo "$stats" | grep -q '"shard_number":6' || fail "the collection should have 6 shards"
[ "$(echo "$stats" | grep -o '"state":"Active"' | wc -l)" -eq 12 ] || fail "expected 12 active replicas"

echo "== 2. conformance suite against the cluster (node 0)"
(
    cd "$repo"
    LORE_TEST_QDRANT_URL="http://127.0.0.1:$(grpc_port 0)" \
        cargo test --release --workspace --locked --test store_conformance real_qdrant_server -- --nocapture
) || fail "conformance suite"

echo "== 3. BM25 scores through 6 shards equal the embedded store's"
run_lore ingest "$docs/puerh.txt" >/dev/null || fail "ingest"
run_embedded ingest "$docs/tea.md" >/dev/null || fail "embedded ingest"
run_embedded ingest "$docs/puerh.txt" >/dev/null || fail "embedded ingest"
scores() { python3 -c 'import json,sys; print(sorted((round(json.loads(l)["score"],4), json.loads(l)["source"]) for l in sys.stdin if l.strip()))'; }
for q in "oxidised tea" "fermented tea from Yunnan"; do
    a=$(run_lore search --mode sparse --chunks --json "$q" | scores) || fail "cluster search"
    b=$(run_embedded search --mode sparse --chunks --json "$q" | scores) || fail "embedded search"
    [ "$a" = "$b" ] || fail "sparse scores differ for '$q': cluster $a, embedded $b"
    echo "   '$q': $a"
done

echo "== 4. migrate after forget emptied a tenant"
LORE_TENANT=t9 run_lore ingest "$docs/rust.txt" >/dev/null || fail "ingest into t9"
LORE_TENANT=t9 run_lore forget rust.txt || fail "forget in t9"
LORE_STORE__DATA_DIR="$work/migrated" run_lore migrate --from qdrant --to embedded \
    || fail "migrate after forget"

echo "== 5. killing node 0 (the first URL)"
kill -9 "${pids[0]}"
wait "${pids[0]}" 2>/dev/null || true
run_lore search "oolong tea" --json | grep -q tea.md || fail "read after the kill"
run_lore ingest "$docs/rust.txt" || fail "write after the kill"
run_lore search "borrow checker" --json | grep -q rust.txt || fail "reading the write after the kill"
stats=$(run_lore stats --json) || fail "stats after the kill"
echo "   $stats"
echo "$stats" | grep -q '"state":"Dead"' || echo "   (no replica reported Dead yet: Qdrant marks them on the next failed update)"

echo "== 5b. node 0 back; once every replica is Active again, killing node 1"
start_node 0
wait_for 60 ready 0 || fail "node 0 did not come back (see $work/node0.log)"
all_active() { [ "$(run_lore stats --json 2>/dev/null | grep -o '"state":"Active"' | wc -l)" -eq 12 ]; }
started=$SECONDS
wait_for 300 all_active || fail "the replicas did not all become Active again after node 0 came back"
echo "   every replica Active again after $((SECONDS - started)) s"
kill -9 "${pids[1]}"
wait "${pids[1]}" 2>/dev/null || true
printf 'Sencha is a steamed Japanese green tea.\n' >"$docs/sencha.txt"
run_lore search "borrow checker" --json | grep -q rust.txt || fail "read with node 1 down"
run_lore ingest "$docs/sencha.txt" || fail "write with node 1 down"
run_lore search "steamed green tea" --json | grep -q sencha.txt || fail "reading the write with node 1 down"

echo "== 6. a node that requires an API key"
start_node 3 single check-key-1234
wait_for 60 curl -fsS -H "api-key: check-key-1234" "http://127.0.0.1:$(http_port 3)/readyz" \
    || fail "node 3 not ready (see $work/node3.log)"
keyed() {
    LORE_URLS="http://127.0.0.1:$(grpc_port 3)" SHARDS=1 REPLICAS=1 run_lore "$@"
}
for key in "" wrong-key; do
    if out=$(QDRANT_API_KEY=$key keyed ingest "$docs/tea.md" 2>&1); then
        fail "ingest with API key '$key' should fail"
    fi
    echo "   key '$key': $(echo "$out" | grep -m1 '^error')"
    echo "$out" | grep -q QDRANT_API_KEY || fail "the error for API key '$key' does not name QDRANT_API_KEY: $out"
    echo "$out" | grep -q MetadataMap && fail "a raw gRPC error for API key '$key': $out"
done
QDRANT_API_KEY=check-key-1234 keyed ingest "$docs/tea.md" >/dev/null || fail "ingest with the right key"
echo "OK: late joiners waited for, conformance suite, shard-independent scores, migrate after forget, reads and writes with node 0 and then node 1 down, API key messages"

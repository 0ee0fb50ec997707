#!/usr/bin/env bash
# Soak of `lore serve` (issue 16): ingests tests/fixtures, then keeps WORKERS clients asking
# /v1/ask (no conversation_id, extractive answers) and /v1/search for SECONDS, sampling
# the server's RSS and the data dir's size every 10 s. A server that holds flat memory and
# disk shows the same figures at the end as after the first minute.
#
#   scripts/soak.sh [LORE_BINARY] [SECONDS=600] [WORKERS=4]
set -euo pipefail
cd "$(dirname "$0")/.."
lore=${1:-${CARGO_TARGET_DIR:-$HOME/.cache/lore/target}/release/lore}
seconds=${2:-600}
workers=${3:-4}
[ -x "$lore" ] || { echo "no lore binary at $lore (build it: cargo build --release)" >&2; exit 2; }
. scripts/serve-lib.sh

work=$(mktemp -d)
trap 'stop_serve; rm -rf "$work"' EXIT
# The load is the point: lift the per-user and per-channel question limits.
export LORE_BOT__QUESTIONS_PER_USER_PER_MINUTE=${LORE_BOT__QUESTIONS_PER_USER_PER_MINUTE:-1000000}
export LORE_BOT__QUESTIONS_PER_CHANNEL_PER_MINUTE=${LORE_BOT__QUESTIONS_PER_CHANNEL_PER_MINUTE:-1000000}
start_serve "$lore" "$work"
for f in tests/fixtures/*.md tests/fixtures/*.srt; do
    [ -f "$f" ] || continue
    curl -fs -H "Authorization: Bearer $token" -F "file=@$f" \
        "http://127.0.0.1:$port/v1/ingest" >/dev/null
done

python3 - "$port" "$token" "$seconds" "$workers" "$pid" "$work/data" <<'PY'
import json, os, sys, threading, time, urllib.request

port, token, seconds, workers, pid, data = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
questions = ["What is prompt engineering?", "什么是提示工程？", "How should instructions be written?",
             "老师讲了什么？", "What are delimiters for?", "zorblax quintessa"]
counts = {"ask": 0, "search": 0, "errors": 0}
lock = threading.Lock()
stop = time.time() + seconds

def post(path, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        r.read()

def worker(n):
    i = n
    while time.time() < stop:
        q = questions[i % len(questions)]
        kind = "ask" if i % 2 else "search"
        try:
            post(f"/v1/{kind}", {"question": q} if kind == "ask" else {"query": q})
            key = kind
        except Exception:
            key = "errors"
        with lock:
            counts[key] += 1
        i += 1

def rss_kib():
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))

def disk_kib():
    total = 0
    for root, _, files in os.walk(data):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total // 1024

threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(workers)]
for t in threads:
    t.start()
start = time.time()
print("t_s  rss_mib  disk_mib  asks  searches  errors")
while time.time() < stop:
    time.sleep(10)
    with lock:
        c = dict(counts)
    print(f"{time.time() - start:4.0f}  {rss_kib() / 1024:7.1f}  {disk_kib() / 1024:8.1f}  "
          f"{c['ask']:5d}  {c['search']:8d}  {c['errors']:6d}", flush=True)
for t in threads:
    t.join()
PY

#!/usr/bin/env bash
# How much memory concurrent uploads cost `lore serve` (issue 16): starts serve with no
# embedder and no model, sends N concurrent curl uploads of SIZE MiB to /v1/ingest, samples
# VmRSS from /proc while they run, and prints the baseline, the peak (sampled and VmHWM)
# and the growth.
#
#   scripts/upload-rss.sh [LORE_BINARY] [N=4] [SIZE_MIB=40] [KIND=pdf]
#
# KIND=pdf (the default) uploads random bytes named .pdf: lore takes the whole upload, then
# finds no readable PDF in it, so the numbers are the upload path itself (receive, spool,
# read back once to load) and not the text pipeline. KIND=txt uploads text that is split
# and stored (slow: 40 MiB of text is ~280,000 chunks per file) and measures that as well.
# Extra settings come from the environment as usual (LORE_INGEST__MAX_INFLIGHT_MIB=...).
set -euo pipefail

lore=${1:-target/release/lore}
n=${2:-4}
size=${3:-40}
kind=${4:-pdf}
[ -x "$lore" ] || { echo "no lore binary at $lore (build it: cargo build --release)" >&2; exit 2; }

. "$(dirname "$0")/serve-lib.sh"
work=$(mktemp -d)
sampler=
cleanup() {
    [ -n "$sampler" ] && kill "$sampler" 2>/dev/null || true
    stop_serve
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/files"

for i in $(seq 1 "$n"); do
    if [ "$kind" = txt ]; then
        yes "Upload $i: oolong tea is partly oxidised and grown in Fujian and Taiwan." |
            head -c "${size}M" >"$work/files/upload-$i.txt"
    else
        head -c "${size}M" /dev/urandom >"$work/files/upload-$i.$kind"
    fi
done

start_serve "$lore" "$work"

baseline=$(kib VmRSS)
hwm_before=$(kib VmHWM)

# Sample VmRSS every 20 ms while the uploads run; the largest sample wins.
(
    peak=0
    while [ -r "/proc/$pid/status" ]; do
        rss=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
        [ "${rss:-0}" -gt "$peak" ] && peak=$rss && echo "$peak" >"$work/peak"
        sleep 0.02
    done
) &
sampler=$!

started=$(date +%s.%N)
uploads=()
for i in $(seq 1 "$n"); do
    curl -s -o "$work/reply-$i.json" -w "%{http_code}\n" \
        -H "Authorization: Bearer $token" \
        -F "file=@$work/files/upload-$i.$kind" \
        "http://127.0.0.1:$port/v1/ingest" >"$work/status-$i" &
    uploads+=($!)
done
wait "${uploads[@]}" || true
ended=$(date +%s.%N)
sleep 0.1
kill "$sampler" 2>/dev/null || true
sampler=

peak=$(cat "$work/peak" 2>/dev/null || echo "$baseline")
hwm=$(kib VmHWM)
statuses=$(cat "$work"/status-* | sort | uniq -c | awk '{ printf "%s×%s ", $1, $2 }')
echo "lore:             $lore"
echo "uploads:          $n × $size MiB ($kind), HTTP status: $statuses"
echo "time:             $(echo "$ended - $started" | bc) s"
echo "VmRSS baseline:   $((baseline / 1024)) MiB"
echo "VmRSS peak:       $((peak / 1024)) MiB (sampled every 20 ms)"
echo "VmHWM:            $((hwm / 1024)) MiB (before the uploads: $((hwm_before / 1024)) MiB)"
echo "growth:           $(((peak - baseline) / 1024)) MiB sampled, $(((hwm - baseline) / 1024)) MiB by VmHWM"
for i in $(seq 1 "$n"); do
    echo "reply $i: $(head -c 300 "$work/reply-$i.json")"
done

#!/usr/bin/env bash
# Hostile inputs against `lore ingest` (issue 16): each case is made fresh, ingested into a
# fresh data dir with the default settings, and timed with its peak RSS. A good file rides
# along in every case, so the line "good file stored" shows the rest still goes in.
#
#   scripts/hostile-inputs.sh [LORE_BINARY] [CASE ...]
#   cases: nested-html huge-line zip-bomb random-pdf bad-utf8 symlink-loop tiny-files
set -euo pipefail
cd "$(dirname "$0")/.."
lore=${1:-${CARGO_TARGET_DIR:-$HOME/.cache/lore/target}/release/lore}
shift || true
[ -x "$lore" ] || { echo "no lore binary at $lore (build it: cargo build --release)" >&2; exit 2; }
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(nested-html huge-line zip-bomb random-pdf bad-utf8 symlink-loop tiny-files)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

make_case() {
    local dir=$1
    mkdir -p "$dir"
    printf '# Oolong\n\nOolong tea is partly oxidised and comes from Fujian.\n' >"$dir/good.md"
    case $2 in
    nested-html) python3 -c "import sys; n=1_000_000; sys.stdout.write('<html><body>'+'<div>'*n+'deep'+'</div>'*n+'</body></html>')" >"$dir/nested.html" ;;
    huge-line) python3 -c "import sys,random; r=random.Random(1); w=['alpha','beta','gamma','delta','epsilon']; sys.stdout.write(' '.join(r.choice(w) for _ in range(35_000_000)))" >"$dir/huge.txt" ;;
    zip-bomb) python3 - "$dir/bomb.docx" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>')
    body = '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>' + "A" * (1 << 30) + "</w:t></w:r></w:p></w:body></w:document>"
    z.writestr("word/document.xml", body)
PY
    ;;
    random-pdf) head -c 5000000 /dev/urandom | { printf '%%PDF-1.7\n'; cat; } >"$dir/random.pdf" ;;
    bad-utf8) python3 -c "import sys,random; r=random.Random(3); sys.stdout.buffer.write(bytes(r.randrange(256) for _ in range(200_000)))" >"$dir/bad.txt" ;;
    symlink-loop) mkdir -p "$dir/loop" && ln -s .. "$dir/loop/up" && ln -s "$dir/loop" "$dir/loop/self" ;;
    tiny-files) mkdir -p "$dir/tiny" && python3 -c "
import sys
for i in range(20000):
    open(f'{sys.argv[1]}/note-{i}.txt','w').write(f'Note {i}: ticket {i} was closed by the on-call engineer.\n')
" "$dir/tiny" ;;
    *) echo "unknown case $2" >&2; exit 2 ;;
    esac
}

printf '%-13s %-6s %9s %10s  %s\n' case exit seconds "peak MiB" "what lore said (last lines)"
for c in "${cases[@]}"; do
    input="$work/in-$c" data="$work/data-$c"
    make_case "$input" "$c"
    set +e
    /usr/bin/time -f '%e %M' -o "$work/time" "$lore" --data-dir "$data" ingest "$input" >"$work/out" 2>&1
    code=$?
    set -e
    read -r secs kib <"$work/time"
    said=$(grep -v '^\s*$' "$work/out" | tail -n 3 | tr '\n' '|' | cut -c1-200)
    printf '%-13s %-6s %9s %10s  %s\n' "$c" "$code" "$secs" "$((kib / 1024))" "$said"
    # Captured first: `grep -q` stops reading at the first match, and under pipefail the
    # search's broken pipe would read as a miss.
    found=$("$lore" --data-dir "$data" search "partly oxidised" 2>/dev/null || true)
    if grep -q "good.md" <<<"$found"; then
        echo "              good file stored"
    else
        echo "              GOOD FILE MISSING"
    fi
    rm -rf "$input" "$data"
done

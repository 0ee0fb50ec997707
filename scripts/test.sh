#!/usr/bin/env bash
# The README's second command: install the local model (so the model tests run too), then
# build and run every test of the workspace. Everything runs in the release profile, the
# one profile lore builds, so a cold machine compiles the heavy crates once.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lore/target}"

scripts/fetch-model.sh
# tests/http.rs drives the web page in Debian's headless chromium; install it once.
if [ ! -x /usr/bin/chromium ]; then
  apt-get install -y chromium || { apt-get update && apt-get install -y chromium; }
fi
cargo test --release --workspace --locked "$@"

#!/usr/bin/env bash
# The README's first command: install the local model, install `lore` on the PATH
# (cargo install, into ~/.cargo/bin), ingest the sample knowledge base (lore's own docs, plus
# ../shared/data/knowledge_db when present), answer a sample question, then open `lore chat`
# on a terminal.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lore/target}"

scripts/fetch-model.sh
cargo install --locked --path . --bin lore
bin_dir="${CARGO_INSTALL_ROOT:-${CARGO_HOME:-$HOME/.cargo}}/bin"
if ! command -v lore >/dev/null 2>&1; then
  echo "demo: add $bin_dir to your PATH to run lore from anywhere (export PATH=\"$bin_dir:\$PATH\")"
  export PATH="$bin_dir:$PATH"
fi

samples=(docs)
[ -d ../shared/data/knowledge_db ] && samples+=(../shared/data/knowledge_db)
lore ingest "${samples[@]}"
lore stats
echo
echo '$ lore ask "How do I add documents to lore?"'
lore ask "How do I add documents to lore?"
if [ -d ../shared/data/knowledge_db ]; then
  echo
  echo '$ lore ask "什么是支持向量机的核函数？"'
  lore ask "什么是支持向量机的核函数？"
fi
if [ -t 0 ]; then
  lore chat
fi

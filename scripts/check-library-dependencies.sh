#!/usr/bin/env bash
# The library without its default features (how a project's own tests depend on it) must not
# depend on the CLI's own dependencies: clap and anyhow come only with the `cli` feature (anyhow
# may still arrive through another crate's dependencies; this looks at rlsgate's own).
set -euo pipefail
cd "$(dirname "$0")/.."
tree=$(cargo tree --locked -p rlsgate --no-default-features -e normal --depth 1 --prefix none --format '{p}')
for dep in clap anyhow; do
  if grep -q "^$dep v" <<<"$tree"; then
    echo "rlsgate without default features depends on $dep; keep it behind the cli feature" >&2
    exit 1
  fi
done
echo "the library depends on neither clap nor anyhow"

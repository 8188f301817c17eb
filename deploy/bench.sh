#!/usr/bin/env bash
# `make bench`: every benchmark, each beside its baseline measured in the same run.
# Results: tables on stdout, JSON in bench-results/. Needs `make services`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mkdir -p bench-results
# The end-to-end bench starts the release binaries.
cargo build -q --release --bins
for bench in "touchstream-attribution classify" "producer collector" "enricher throughput" "sink load" "touchstream-tests e2e" "touchstream-tests web"; do
  set -- $bench
  manifest="crates/$1/Cargo.toml"
  [ "$1" = touchstream-tests ] && manifest=tests/Cargo.toml
  if grep -q "name = \"$2\"" "$manifest" 2>/dev/null; then
    printf '\n### %s (%s)\n' "$2" "$1"
    cargo bench -q -p "$1" --bench "$2"
  fi
done

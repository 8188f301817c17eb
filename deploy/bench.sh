#!/usr/bin/env bash
# `make bench`: every benchmark, each beside its baseline measured in the same run.
# Results: tables on stdout, JSON in bench-results/. Needs `make services`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mkdir -p bench-results
for bench in "touchstream-attribution classify" "producer collector" "enricher throughput" "sink load"; do
  set -- $bench
  if grep -q "name = \"$2\"" "crates/$1/Cargo.toml" 2>/dev/null; then
    printf '\n### %s (%s)\n' "$2" "$1"
    cargo bench -q -p "$1" --bench "$2"
  fi
done

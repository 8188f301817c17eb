#!/usr/bin/env bash
# Runs every cargo-fuzz target in tests/fuzz/ for a bounded time (default 30 s each).
#
#   deploy/fuzz.sh [SECONDS] [TARGET...]
#
# Needs the nightly toolchain (cargo-fuzz builds with sanitizer flags only nightly has) and
# cargo-fuzz; the latter is installed from crates.io when missing (`cargo install cargo-fuzz`).
# The corpus in tests/fuzz/corpus/<target>/ is read but never written: libFuzzer writes the inputs it
# finds into a scratch copy, so the repository keeps its small, minimised seeds. A crash leaves
# its input in tests/fuzz/artifacts/<target>/ and fails the run.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_EACH="${1:-30}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(validate_event gzip_body avro_decode classify_touch)

log() { printf '[fuzz] %s\n' "$*" >&2; }

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  log "error: the nightly toolchain is missing: rustup toolchain install nightly"
  exit 1
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  log "installing cargo-fuzz from crates.io"
  cargo install cargo-fuzz --locked
fi

cd "$REPO"
log "building the fuzz targets (nightly, sanitizers)"
cargo +nightly fuzz build --fuzz-dir tests/fuzz >/dev/null

status=0
for target in "${TARGETS[@]}"; do
  scratch="$(mktemp -d)"
  log "$target: ${SECONDS_EACH}s from $(ls "tests/fuzz/corpus/$target" | wc -l) seeds"
  if ! cargo +nightly fuzz run --fuzz-dir tests/fuzz "$target" "$scratch" "tests/fuzz/corpus/$target" -- \
      -max_total_time="$SECONDS_EACH" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 \
      >"$scratch.log" 2>&1; then
    log "$target: FAILED; its output:"
    tail -n 60 "$scratch.log" >&2
    status=1
  else
    runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$scratch.log" | grep -o '[0-9]*$' || echo '?')"
    cov="$(grep -o 'cov: [0-9]*' "$scratch.log" | tail -n 1 || true)"
    log "$target: ok, $runs runs, $cov, $(ls "$scratch" | wc -l) new inputs (not kept)"
  fi
  rm -rf "$scratch" "$scratch.log"
done
exit $status

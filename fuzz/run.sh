#!/usr/bin/env bash
# Build the fuzz targets once, then run each (or those named) for a bounded time and print
# libFuzzer's summary line per target. Usage, from anywhere:
#   fuzz/run.sh [SECONDS] [TARGET...]   (default 120 s each; targets: webhook policy matchers address render)
# Needs cargo-fuzz (`cargo install cargo-fuzz`). On a stable compiler RUSTC_BOOTSTRAP=1 lets
# cargo-fuzz pass the nightly-only sanitizer flags. FUZZ_NO_BUILD=1 reuses the binaries
# already in fuzz/target. Logs go to fuzz/logs/TARGET.log, new corpus entries to
# fuzz/corpus/TARGET, crashing inputs to fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-120}"
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(webhook policy matchers address render)
export RUSTC_BOOTSTRAP="${RUSTC_BOOTSTRAP:-1}"
if [ -z "${FUZZ_NO_BUILD:-}" ]; then
  cargo fuzz build
fi
bin="fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release"
mkdir -p fuzz/logs
status=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  # Seeds: the repository's own examples where they fit, else fuzz/seeds/TARGET.
  case "$t" in
    webhook) seeds=(examples/alerts); extra=() ;;
    policy) seeds=(examples/policies); extra=() ;;
    matchers) seeds=(fuzz/seeds/matchers); extra=(-max_len=512 -len_control=0) ;;
    address) seeds=(fuzz/seeds/address); extra=() ;;
    render) seeds=(); extra=(-max_len=2048 -len_control=0) ;;
    *) echo "unknown target $t" >&2; exit 2 ;;
  esac
  if "$bin/$t" -artifact_prefix="fuzz/artifacts/$t/" -max_total_time="$seconds" \
      -dict="fuzz/dict/$t.dict" "${extra[@]}" "fuzz/corpus/$t" "${seeds[@]}" \
      >"fuzz/logs/$t.log" 2>&1; then
    echo "$t: $(grep -E '^#[0-9]+[[:space:]]+DONE' "fuzz/logs/$t.log" | tail -1)"
  else
    status=1
    echo "$t: FAILED, see fuzz/logs/$t.log and fuzz/artifacts/$t/"
    grep -m1 -A3 'panicked' "fuzz/logs/$t.log" || tail -5 "fuzz/logs/$t.log"
  fi
done
exit "$status"

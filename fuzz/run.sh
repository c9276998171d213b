#!/usr/bin/env bash
# Runs every fuzz target under libFuzzer for SECONDS each (default 60), on demand (CI runs the
# seed corpora through the same checks with plain `cargo test -p netstream-wire --test fuzz`).
#   fuzz/run.sh [SECONDS] [TARGET...]
# Seeds come from generated frames plus ../shared/pcaps when present: wire/tests/fuzz.rs builds
# them and writes them here when NETSTREAM_FUZZ_SEEDS is set. The corpus grows in fuzz/corpus/T;
# crashes land in fuzz/artifacts/T and fail the run. Prints, per target: seconds, executions,
# coverage (cov: edges, ft: features) and corpus size from libFuzzer's final status line.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"; shift || true
targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(parse_frame decode_value decode_key)

# cargo-fuzz is not on a fresh machine: pinned, locked install (about 1-2 minutes of build).
CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi
# cargo-fuzz passes nightly-only flags (-Z sanitizer); RUSTC_BOOTSTRAP=1 lets stable accept them.
export RUSTC_BOOTSTRAP=1

rm -rf corpus-seed
(cd .. && NETSTREAM_FUZZ_SEEDS="$PWD/fuzz/corpus-seed" cargo test -q -p netstream-wire --test fuzz \
  seed_corpora_pass_every_fuzz_check -- --nocapture 2>&1 | grep -E "^seeds:")

# Its own target dir (fuzz/target), whatever CARGO_TARGET_DIR says: the binaries are run from there.
env -u CARGO_TARGET_DIR cargo fuzz build -O "${targets[@]}"
bin="target/$(rustc -vV | sed -n 's/^host: //p')/release"
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log="artifacts/$t.log"
  start=$(date +%s)
  rc=0
  "$bin/$t" "corpus/$t" "corpus-seed/$t" -max_total_time="$secs" -print_final_stats=1 \
    -timeout=10 -rss_limit_mb=2048 -artifact_prefix="artifacts/$t/" >"$log" 2>&1 || rc=$?
  last=$(grep -E "^#[0-9]+" "$log" | tail -1 || true)
  execs=$(sed -n 's/^stat::number_of_executed_units: //p' "$log")
  echo "$t: $(( $(date +%s) - start ))s, ${execs:-?} executions; ${last#* }"
  if [ "$rc" -ne 0 ] || compgen -G "artifacts/$t/crash-*" >/dev/null \
    || compgen -G "artifacts/$t/timeout-*" >/dev/null || compgen -G "artifacts/$t/oom-*" >/dev/null; then
    grep -E "panicked|SUMMARY|ERROR" "$log" | head -5 || true
    echo "CRASH in $t (exit $rc): see fuzz/artifacts/$t/ and $log"; exit 1
  fi
done

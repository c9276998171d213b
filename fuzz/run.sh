#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60) with seed corpora from generated captures
# and, when present, ../shared/pcaps. cargo-fuzz needs nightly flags: RUSTC_BOOTSTRAP=1 lets the
# stable toolchain accept them (this machine has no nightly).
#   fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"; shift || true
targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(parse_frame decode_value decode_key)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1

root="$(cd .. && pwd)"
seeds=(); shopt -s nullglob
(cd "$root" && cargo run -q -p netstream-probe --example demo_pcap -- "$PWD/fuzz/demo.pcap" 2>/dev/null) || true
[ -f demo.pcap ] && seeds+=(demo.pcap)
for f in "$root"/../shared/pcaps/*.pcap; do seeds+=("$f"); done
python3 seed.py corpus-seed "${seeds[@]}"

for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  echo "== $t for ${secs}s"
  cargo fuzz run "$t" "corpus/$t" "corpus-seed/$t" -- -max_total_time="$secs" -print_final_stats=1 2>&1 \
    | grep -E "^(#[0-9]+.*DONE|Done|stat::|==[0-9]+==|SUMMARY|panicked)" || true
  if compgen -G "artifacts/$t/crash-*" >/dev/null || compgen -G "artifacts/$t/timeout-*" >/dev/null; then
    echo "CRASH in $t: see fuzz/artifacts/$t/"; exit 1
  fi
done

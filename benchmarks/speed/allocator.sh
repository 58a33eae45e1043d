#!/usr/bin/env bash
# The binary's allocator against peak memory and time: prunus built with mimalloc (the default)
# and with the system allocator (`--no-default-features`), each running SparseGPT 50% on the
# default model, in memory and streamed (--stream), and evaluating 8 perplexity windows of 512
# tokens, alternately, REPEATS times each. Prints one Markdown table row per run (peak RSS from
# the run report, pruning or evaluation seconds).
# Usage: benchmarks/speed/allocator.sh [REPEATS]    (about 2 minutes per repeat on 2 cores)
set -euo pipefail
repeats=${1:-2}
root=$(cd "$(dirname "$0")/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$root"
cargo build --release -q -p prunus-cli --no-default-features
cp "$target/release/prunus" "$work/prunus-system"
cargo build --release -q -p prunus-cli
cp "$target/release/prunus" "$work/prunus-mimalloc"
"$work/prunus-mimalloc" prune --method magnitude --sparsity 0 --eval none --out "$work/dense" >/dev/null
echo "| allocator | run | peak RSS GiB | seconds |"
echo "|---|---|---|---|"
for i in $(seq "$repeats"); do
  for alloc in system mimalloc; do
    for mode in in-memory streamed; do
      rm -rf "$work/out"
      flags=(--eval none)
      [ "$mode" = streamed ] && flags=(--stream)
      "$work/prunus-$alloc" prune --model "$work/dense" --method sparsegpt --calib-samples 2 --calib-seq-len 64 \
        "${flags[@]}" --out "$work/out" --report "$work/r.json" >/dev/null
      python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(f'| {sys.argv[2]} | {sys.argv[3]} | {r[\"peak_rss_bytes\"]/2**30:.2f} | {r[\"seconds\"][\"prune_total\"]:.1f} |')" \
        "$work/r.json" "$alloc" "$mode"
    done
    "$work/prunus-$alloc" eval --max-windows 8 --report "$work/e.json" >/dev/null
    python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(f'| {sys.argv[2]} | eval 8 x 512 | {r[\"peak_rss_bytes\"]/2**30:.2f} | {r[\"seconds\"][\"evaluation\"]:.1f} |')" \
      "$work/e.json" "$alloc"
  done
done
echo
ext=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -xE 'avx2|fma|avx512f|avx512bw|avx512_bf16|avx512_vnni|amx_tile|amx_bf16' | paste -sd, - | sed 's/,/, /g')
echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) ($ext), $(nproc) cores; commit $(git rev-parse --short=12 HEAD)"

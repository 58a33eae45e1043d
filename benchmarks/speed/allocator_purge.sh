#!/usr/bin/env bash
# mimalloc's purge, decommit (its default, MIMALLOC_PURGE_DECOMMITS=1) against reset (what
# prunus sets unless that variable is given): the release prunus binary run with each,
# alternately, REPEATS times: a fine-tuning run of 2 steps of 8 x 512 tokens and an evaluation
# of 16 perplexity windows of 512. Prints one line per run: seconds (the report's training or
# evaluation stage), peak RSS from the report, page faults from `perf stat`.
# Usage: benchmarks/speed/allocator_purge.sh [REPEATS]    (about 3 minutes per repeat on 2 cores)
set -euo pipefail
repeats=${1:-2}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
cargo build --release -q -p prunus-cli
prunus=$(cargo metadata --format-version 1 --no-deps | python3 -c "import json,sys; print(json.load(sys.stdin)['target_directory'])")/release/prunus
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
line() { # label setting report stage
  python3 -c "
import json, sys
r = json.load(open(sys.argv[3]))
faults = open(sys.argv[5]).read().strip().splitlines()[-1].split(',')[0]
print(f'| {sys.argv[1]} | {sys.argv[2]} | {r[\"seconds\"][sys.argv[4]]:.1f} | {r[\"peak_rss_bytes\"] / 2**30:.2f} | {faults} |')" "$@" "$work/faults"
}
echo "| run | purge | seconds | peak RSS GiB | page faults |"
echo "|---|---|---:|---:|---:|"
for _ in $(seq "$repeats"); do
  for setting in decommit reset; do
    env=()
    [ "$setting" = decommit ] && env=(MIMALLOC_PURGE_DECOMMITS=1)
    env "${env[@]}" perf stat -x, -e page-faults -o "$work/faults" "$prunus" finetune --steps 2 --batch 8 --accumulate 8 --window 512 --eval none --report "$work/f.json" >/dev/null 2>&1
    line "finetune 2 x (8 x 512)" "$setting" "$work/f.json" prune_total
    env "${env[@]}" perf stat -x, -e page-faults -o "$work/faults" "$prunus" eval --task ppl:wiki-vital --max-windows 16 --seq-len 512 --batch-size 4 --report "$work/e.json" >/dev/null 2>&1
    line "eval 16 x 512" "$setting" "$work/e.json" evaluation
  done
done
echo
ext=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -xE 'avx2|fma|avx512f|avx512bw|avx512_bf16|avx512_vnni|amx_tile|amx_bf16' | paste -sd, - | sed 's/,/, /g')
echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) ($ext), $(nproc) cores; commit $(git rev-parse --short=12 HEAD)"

#!/usr/bin/env bash
# Decoding speed of two prunus binaries (say, two commits), alternated on the same pruned model
# so that a shared machine's drifting load falls on both: each round runs `prunus generate`
# with every packing named, first with OLD, then with NEW. Prints the decode tokens/s of every
# run, then per binary and packing the median over the rounds, and the per-round ratio of each
# packing over `dense` (medians). The greedy texts of the two binaries must be identical.
#
# Usage: benchmarks/speed/ab_generate.sh OLD NEW MODEL [ROUNDS] [TOKENS] [PACKINGS...]
#   OLD, NEW  prunus binaries (e.g. built at two commits and copied aside)
#   MODEL     a pruned model directory (`prunus prune --method magnitude --pattern 2:4 --eval none --out DIR`)
#   ROUNDS    default 6; TOKENS default 256; PACKINGS default `dense auto 2:4`
# About 50 s per round on 2 cores with the defaults and SmolLM2-135M.
set -euo pipefail
[ $# -ge 3 ] || { sed -n '2,12p' "$0"; exit 2; }
old=$1 new=$2 model=$3 rounds=${4:-6} tokens=${5:-256}
shift $(($# < 5 ? $# : 5))
packings=("$@")
[ ${#packings[@]} -gt 0 ] || packings=(dense auto 2:4)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for r in $(seq "$rounds"); do
  for side in old new; do
    bin=$old
    [ "$side" = new ] && bin=$new
    for p in "${packings[@]}"; do
      "$bin" generate --model "$model" --prompt "The history of the city" --max-tokens "$tokens" --packing "$p" --json >"$work/$side-$p-$r.json"
      python3 -c "import json,sys; print(sys.argv[1], sys.argv[2], json.load(open(sys.argv[3]))['decode_tokens_per_second'])" "$side" "$p" "$work/$side-$p-$r.json" | tee -a "$work/runs"
    done
  done
done
python3 - "$work" "${packings[@]}" <<'EOF'
import json, statistics, sys, collections
work, packings = sys.argv[1], sys.argv[2:]
runs = collections.defaultdict(list)
for line in open(f"{work}/runs"):
    side, p, v = line.split()
    runs[(side, p)].append(float(v))
for side in ("old", "new"):
    for p in packings:
        print(f"{side} {p}: median {statistics.median(runs[(side, p)]):.1f} tokens/s")
        if p != "dense" and "dense" in packings:
            ratios = [a / d for a, d in zip(runs[(side, p)], runs[(side, "dense")])]
            print(f"{side} {p} / dense, per round: median {statistics.median(ratios):.2f}x")
texts = {(s, p): json.load(open(f"{work}/{s}-{p}-1.json"))["text"] for s in ("old", "new") for p in packings}
same = all(texts[("old", p)] == texts[("new", p)] for p in packings)
print("greedy texts identical" if same else "greedy texts DIFFER between the binaries")
EOF

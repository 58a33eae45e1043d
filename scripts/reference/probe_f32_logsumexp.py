#!/usr/bin/env python3
"""Explains the ~1.2e-4 relative ppl gap between `prunus eval` and the numpy references.

Runs the HF-convention numpy forward of check_hf_export.py on window 0 of the EVAL stream (dense export) and
scores it twice: log-sum-exp in float64 (as reference.py / check_hf_export.py do) and log-sum-exp with the
exp() in float32 and a *sequential* float32 sum over the 49,152 vocabulary entries (what
crates/prunus-model/src/kernels.rs RowLogSumExp does on CPU at commit fd62d46). Small terms below half an ulp of
the running sum are dropped, so the f32 sequential sum underestimates log Z and the ppl.
Result stored in fixtures/hf_export_check.json under "f32_logsumexp_probe".

Usage: python probe_f32_logsumexp.py [/tmp/hf_dense]
"""
import json, math, os, sys
import numpy as np
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import check_hf_export as c  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402
from transformers import LlamaConfig  # noqa: E402

d = sys.argv[1] if len(sys.argv) > 1 else "/tmp/hf_dense"
np.seterr(over="ignore")
cfg = LlamaConfig.from_pretrained(d)
W = load_file(os.path.join(d, "model.safetensors"))
m = c.HFLlama(W, cfg)
fx = json.load(open(os.path.join(HERE, "fixtures", "dense_ppl.json")))
ids = np.array(fx["first_window_token_ids"])
T = len(ids)
cos, sin = m.rope(T)
causal = np.triu(np.ones((T, T), bool), 1)
x = m.embed[ids]
for i in range(cfg.num_hidden_layers):
    x = m.layer(i, x, cos, sin, causal)
x = m.rms(x, W["model.norm.weight"])
lg = x[:-1] @ m.lm_head.T                                   # f32 logits
tgt = lg[np.arange(T - 1), ids[1:]].astype(np.float64)
l64 = lg.astype(np.float64)
mx = l64.max(1, keepdims=True)
lse64 = mx[:, 0] + np.log(np.exp(l64 - mx).sum(1))
mx32 = lg.max(1, keepdims=True)
seq32 = np.cumsum(np.exp(lg - mx32), axis=1, dtype=np.float32)[:, -1]   # sequential f32 accumulation
lse32 = (mx32[:, 0] + np.log(seq32)).astype(np.float64)
res = {"window": 0, "n_pred": T - 1}
for name, lse in (("lse_float64", lse64), ("lse_float32_sequential_sum", lse32)):
    s = float(np.sum(lse - tgt))
    res[name] = {"nll_sum": s, "ppl": math.exp(s / (T - 1))}
    print(f"{name}: nll_sum {s:.6f} ppl {math.exp(s / (T - 1)):.6f}")
res["fixture_nll_sum"] = fx["windows"][0]["nll_sum"]
res["prunus_eval_window0_ppl"] = 14.2271  # `prunus eval --model /tmp/hf_dense --max-windows 1` (and --model default)
out = os.path.join(HERE, "fixtures", "hf_export_check.json")
allr = json.load(open(out)) if os.path.exists(out) else {}
allr["f32_logsumexp_probe"] = res
json.dump(allr, open(out, "w"), indent=1)

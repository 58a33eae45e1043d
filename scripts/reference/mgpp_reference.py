#!/usr/bin/env python3
"""A numpy transcription of the PTMGP code's MGPP and PLATON arithmetic (pruners/MWA.py,
pruners/PLATON.py, read at the commit named in plugins/mgpp/README.md): the prior's gradient,
its spike/slab threshold, the slab weight's annealing, the cubic sparsity schedule, the global
threshold mask, and PLATON's windowed importance averages. Its output,
`fixtures/train/mgpp.json`, is what the plugins' tests reproduce.

Needs numpy only:  python3 scripts/reference/mgpp_reference.py

Written from the formulas of the code (f64 throughout, numpy's exp overflowing to inf as
torch's does, so p0 = 1/(1+inf) = 0), not from prunus's Rust.
"""

import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "train", "mgpp.json")


def prior_grad(theta, sigma0, sigma1, lam, n):
    c1 = np.log(lam) - np.log(1 - lam) + 0.5 * np.log(sigma0) - 0.5 * np.log(sigma1)
    c2 = 0.5 / sigma0 - 0.5 / sigma1
    with np.errstate(over="ignore"):
        p0 = 1.0 / (np.exp(theta**2 * c2 + c1) + 1.0)
    # p.grad.sub_(p * (p0 * (s0 - s1) / (n s0 s1) - 1 / (n s1)))
    return -(theta * (p0 * (sigma0 - sigma1) / (n * sigma0 * sigma1) - 1.0 / (n * sigma1))), p0


def prior_threshold(sigma0, sigma1, lam):
    return float(np.sqrt(np.log((1 - lam) / lam * np.sqrt(sigma1 / sigma0)) / (0.5 / sigma0 - 0.5 / sigma1)))


def annealed(t, lam, ai, af, t0, tend):
    if t < t0:
        a = 1.0
    elif t == t0:
        a = ai
    elif t < tend:
        a = af + (ai - af) * (1 - (t - t0) / (tend - t0))
    else:
        a = af
    return a * lam


def sparsity(t, si, sf, t0, tend, interval):
    if t < t0:
        return 0.0, False
    if t == t0:
        return si, True
    if t < tend:
        frac = 1 - (t - t0) / (tend - t0)
        return sf + (si - sf) * frac**3, t % interval == 0
    return sf, True


def main():
    thetas = [0.0, 1e-6, -1e-5, 3e-5, 4.9e-5, -6e-5, 1e-4, 4e-4, 1e-3, -1e-2, 0.1]
    prior_cases = []
    for sigma0, sigma1, lam, n in [(1e-10, 0.05, 0.1, 392702), (1e-9, 0.05, 0.1, 1000), (1e-10, 0.01, 1e-4, 5000), (1e-9, 0.1, 0.5, 64)]:
        g, p0 = prior_grad(np.array(thetas), sigma0, sigma1, lam, n)
        prior_cases.append({"sigma0": sigma0, "sigma1": sigma1, "lambda": lam, "n": n, "theta": thetas, "grad": g.tolist(), "p0": p0.tolist()})
    thresholds = [{"sigma0": s0, "sigma1": s1, "lambda": lam, "threshold": prior_threshold(s0, s1, lam)}
                  for s0, s1, lam in [(1e-10, 0.05, 0.1), (1e-10, 0.05, 1e-2), (1e-10, 0.05, 1e-3), (1e-10, 0.05, 1e-4), (1e-9, 0.05, 0.1), (1e-9, 0.1, 0.1)]]
    t0, tend, interval, si, sf = 7, 40, 5, 0.3, 0.9
    schedule = {"t0": t0, "t_end": tend, "interval": interval, "initial": si, "final": sf, "lambda": 0.1, "alpha_i": 1.0, "alpha_f": 0.001,
                "steps": []}
    for t in range(0, 46):
        s, prune = sparsity(t, si, sf, t0, tend, interval)
        schedule["steps"].append({"t": t, "sparsity": s, "prunes": bool(prune and s > 0), "lambda": annealed(t, 0.1, 1.0, 0.001, t0, tend)})
    # The global mask: threshold = kthvalue(all, int(N s)) (1-based k-th smallest), prune all < threshold.
    rng = np.random.default_rng(0)
    scores = [np.abs(rng.standard_normal(37)).astype(np.float32), np.abs(rng.standard_normal(64)).astype(np.float32)]
    scores[1][:10] = scores[1][10]  # ties
    allv = np.concatenate(scores)
    masks = []
    for s in [0.1, 0.5, 0.77]:
        k = int(allv.size * s)
        thr = np.sort(allv, kind="stable")[k - 1]
        masks.append({"sparsity": s, "threshold": float(thr), "keep": [(sc >= thr).tolist() for sc in scores]})
    # PLATON: windowed importance with interval 3 over 8 steps, beta1 0.85, beta2 0.95, f32 as torch computes it.
    b1, b2, win = 0.85, 0.95, 3
    ws = rng.standard_normal((8, 6)).astype(np.float32)
    gs = (rng.standard_normal((8, 6)) * 0.1).astype(np.float32)
    ipt = np.zeros(6, np.float32)
    avg = np.zeros(6, np.float32)
    unc = np.zeros(6, np.float32)
    f = np.float32
    for t in range(8):
        local = t % win
        now = np.abs(ws[t] * gs[t])
        if local == 0:
            avg = f(b1) * avg + f(1 - b1) * ipt
            unc = f(b2) * unc + f(1 - b2) * np.abs(ipt - avg)
            ipt = now
        else:
            ipt = (ipt * f(local) + now) / f(local + 1)
    platon = {"beta1": b1, "beta2": b2, "interval": win, "weights": ws.tolist(), "grads": gs.tolist(),
              "ipt": ipt.tolist(), "avg": avg.tolist(), "unc": unc.tolist(), "score": (avg * unc).tolist()}
    out = {"prior": prior_cases, "thresholds": thresholds, "schedule": schedule,
           "mask": {"scores": [s.tolist() for s in scores], "cases": masks}, "platon": platon}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as fh:
        json.dump(out, fh, indent=1)
    print("wrote", OUT)
    for t in thresholds:
        print(f"threshold sigma0={t['sigma0']} sigma1={t['sigma1']} lambda={t['lambda']}: {t['threshold']:.4g}")


if __name__ == "__main__":
    main()

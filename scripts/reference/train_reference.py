#!/usr/bin/env python3
"""PyTorch's AdamW, clip_grad_norm_ and transformers' warm-up schedules on fixed numbers: the
fixture `fixtures/train/optim.json` that prunus-train's tests reproduce.

Run from the throwaway torch venv (scripts/reference/requirements.txt):
  /tmp/torchenv/bin/python scripts/reference/train_reference.py

Written without prunus's code in view of the formulas: it calls torch.optim.AdamW (single-tensor
implementation, foreach=False, f32 parameters), torch.nn.utils.clip_grad_norm_, and
transformers' get_linear_schedule_with_warmup / get_cosine_schedule_with_warmup through a
LambdaLR on a dummy optimizer, and records what they produce.
"""

import json
import os

import torch
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "train", "optim.json")


def adamw_case(betas, eps, weight_decay, lrs):
    g = torch.Generator().manual_seed(0)
    p0 = [torch.randn(5, generator=g, dtype=torch.float32), torch.randn(3, generator=g, dtype=torch.float32)]
    grads = [[torch.randn(5, generator=g) * 0.1, torch.randn(3, generator=g) * 0.1] for _ in lrs]
    params = [torch.nn.Parameter(p.clone()) for p in p0]
    opt = torch.optim.AdamW(params, lr=lrs[0], betas=betas, eps=eps, weight_decay=weight_decay, foreach=False, fused=False)
    after = []
    for lr, gs in zip(lrs, grads):
        for group in opt.param_groups:
            group["lr"] = lr
        for p, gr in zip(params, gs):
            p.grad = gr.clone()
        opt.step()
        after.append([p.detach().tolist() for p in params])
    return {
        "betas": list(betas), "eps": eps, "weight_decay": weight_decay, "lrs": lrs,
        "initial": [p.tolist() for p in p0], "grads": [[x.tolist() for x in gs] for gs in grads], "after": after,
    }


def clip_case():
    g = torch.Generator().manual_seed(1)
    grads = [torch.randn(4, generator=g), torch.randn(6, generator=g)]
    params = [torch.nn.Parameter(torch.zeros_like(x)) for x in grads]
    for p, x in zip(params, grads):
        p.grad = x.clone()
    norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
    return {"max_norm": 1.0, "grads": [x.tolist() for x in grads], "norm": norm.item(), "clipped": [p.grad.tolist() for p in params]}


def schedule_case(make, warmup, total):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make(opt, warmup, total)
    lrs = []
    for _ in range(total + 2):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return {"warmup": warmup, "total": total, "lrs": lrs}


def main():
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    out = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "adamw": [
            adamw_case((0.9, 0.98), 1e-6, 0.0, [1e-3, 2e-3, 5e-4, 1e-3]),
            adamw_case((0.9, 0.999), 1e-8, 0.01, [3e-4, 3e-4, 1e-4]),
        ],
        "clip": clip_case(),
        "linear": schedule_case(transformers.get_linear_schedule_with_warmup, 3, 10),
        "cosine": schedule_case(transformers.get_cosine_schedule_with_warmup, 3, 10),
    }
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

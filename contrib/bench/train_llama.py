#!/usr/bin/env python3
"""train_llama.py - train the small Llama that bench-quality quantizes.

Corpus: real English text that every machine able to build qshard has, so
it does not move when an unrelated package is installed:
  /usr/share/common-licenses/*          (base-files: GPL, Apache, MPL, ...)
  /usr/share/doc/PKG/copyright          for the fixed list PACKAGES below
                                        (Debian's essential set and the
                                        packages contrib/quickstart.sh installs)
in that order, exact duplicates dropped (many copyright files repeat a
licence), missing files skipped. The text is cut into 2 KiB blocks; block i
goes to the train, calibration or held-out split by the SHA-256 of i
(80/10/10). The corpus's SHA-256 is printed and kept in meta.json, and
bench-quality's cache key includes it.

Tokens are bytes (vocabulary 256). The model is a Llama (llama_ref.py:
RMSNorm, rotary embeddings, grouped-query attention, SwiGLU), trained with
AdamW on random windows of the train split, on the CPU with a fixed seed and
a fixed thread count, so a rerun on the same machine gives the same weights.

Output (in --out, e.g. ~/.cache/qshard-bench/llama-<key>):
  ckpt/model.safetensors, ckpt/config.json   Hugging Face Llama folder
  train.txt calib.txt heldout.txt            the splits
  meta.json                                  corpus hash, sizes, losses
"""
import argparse
import glob
import hashlib
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import llama_ref  # noqa: E402


PACKAGES = """base-files bash coreutils dpkg apt libc6 gcc-12 binutils make
perl-base python3.11 tar gzip grep sed findutils diffutils util-linux
libzstd1 liburing2 libxxhash0 libopenblas0-pthread libcmocka0 libjansson4
autoconf automake libtool pkg-config python3-numpy python3-torch xz-utils
bzip2 openssl git ca-certificates valgrind clang-14 qemu-user""".split()
BLOCK = 2048


def corpus_documents(limit):
    paths = sorted(glob.glob("/usr/share/common-licenses/*"))
    paths += ["/usr/share/doc/%s/copyright" % p for p in PACKAGES]
    seen, docs, total = set(), [], 0
    for p in paths:
        if not os.path.isfile(p):
            continue
        with open(p, "rb") as f:
            b = f.read()
        h = hashlib.sha256(b).digest()
        if h in seen or not b.strip():
            continue
        seen.add(h)
        if total + len(b) > limit:
            break
        docs.append((p, b))
        total += len(b)
    return docs


def split_of(i):
    v = hashlib.sha256(str(i).encode()).digest()[0] % 10
    return "heldout" if v == 0 else "calib" if v == 1 else "train"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--corpus-bytes", type=int, default=6 << 20)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--ff", type=int, default=768)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()

    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    docs = corpus_documents(a.corpus_bytes)
    splits = {"train": [], "calib": [], "heldout": []}
    text = b"\n".join(b for _, b in docs)
    for i in range(0, len(text), BLOCK):
        splits[split_of(i // BLOCK)].append(text[i: i + BLOCK])
    corpus_sha = hashlib.sha256(b"".join(b for _, b in docs)).hexdigest()
    for k, v in splits.items():
        with open(os.path.join(a.out, k + ".txt"), "wb") as f:
            f.write(b"".join(v))
    train = torch.tensor(list(b"".join(splits["train"])), dtype=torch.long)
    held = torch.tensor(list(b"".join(splits["heldout"])), dtype=torch.long)

    cfg = llama_ref.llama_config(256, a.dim, a.ff, a.layers, a.heads, a.kv_heads, a.ctx)
    model = llama_ref.Llama(cfg)
    for n, p in model.named_parameters():  # HF Llama: normal(0, 0.02), norms at 1
        if p.dim() == 2:
            torch.nn.init.normal_(p, 0.0, 0.02)
    nparams = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() == 2]
    nodecay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": nodecay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(a.seed)
    warm = max(1, a.steps // 15)
    t0 = time.time()
    print("train_llama: %d parameters, corpus %d bytes (sha256 %s), train %d / calib %d / "
          "held-out %d bytes" % (nparams, sum(len(b) for _, b in docs), corpus_sha[:16],
                                 train.numel(), sum(map(len, splits["calib"])), held.numel()),
          file=sys.stderr)
    loss_v = float("nan")
    for step in range(a.steps):
        lr = a.lr * (step + 1) / warm if step < warm else \
            a.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * (step - warm) / (a.steps - warm))))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.randint(0, train.numel() - a.ctx - 1, (a.batch,), generator=gen)
        x = torch.stack([train[i: i + a.ctx + 1] for i in idx.tolist()])
        loss = F.cross_entropy(model(x[:, :-1]).reshape(-1, 256), x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss_v = loss.item()
        if step % 10 == 0 or step == a.steps - 1:
            print("train_llama: step %d/%d loss %.3f (%.0f s)" % (step + 1, a.steps, loss_v,
                                                                 time.time() - t0),
                  file=sys.stderr)
    model.eval()
    with torch.no_grad():
        n = (min(held.numel() - 1, 32 * a.ctx) // a.ctx) * a.ctx
        x, y = held[:n].view(-1, a.ctx), held[1: n + 1].view(-1, a.ctx)
        hl = F.cross_entropy(model(x).reshape(-1, 256), y.reshape(-1)).item()
    llama_ref.save_hf(model, os.path.join(a.out, "ckpt"))
    meta = {"parameters": nparams, "corpus_sha256": corpus_sha, "documents": len(docs),
            "train_loss": loss_v, "heldout_loss_nats_per_byte": hl,
            "seconds": round(time.time() - t0), "args": vars(a)}
    with open(os.path.join(a.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    print("train_llama: held-out loss %.3f nats/byte, %.0f s" % (hl, time.time() - t0),
          file=sys.stderr)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""synth_ckpt.py - a synthetic checkpoint with statistics unlike mkckpt's,
for judging schemes on weights qshard's own generator did not make.

Per tensor (rows = output features, cols = input features):
  body       Student-t with nu = 4 degrees of freedom (heavy tails, unlike
             mkckpt's Gaussian-with-outliers bodies), unit scale
  row scale  log-normal, sigma 0.6: rows differ by ~3.3x between the 10th
             and 90th percentile, as trained output features do
  hot input  1% of input columns multiplied by 4 (the channels that
  channels   massive activations meet in trained LLMs)
  salient    0.05% of weights set to +-(8..20) times their row scale
global scale 0.02 (a trained Llama's typical weight magnitude).

Calibration statistics come from synthetic activations X (tokens x cols):
a low-rank correlated part (rank 16) plus independent noise, with the same
hot channels 10x larger, so H = X^T X / tokens is far from diagonal and the
hot channels dominate it, as in real layers. Written next to the checkpoint:
  hessian.safetensors     NAME -> f32[cols, cols]       (--hessian)
  importance.safetensors  NAME -> f32[cols] = diag(H)   (--importance)
  hessian-eval.safetensors  the same from independent tokens, for scoring
Everything follows from --seed (numpy's PCG64).

For throughput benchmarks (bench-cost): --layers N repeats the layer N
times (fresh weights each), --dtype bf16 stores the weights as bf16
(rounded to nearest even, as torch does) and --no-stats skips the
statistics, so a multi-GB bf16 checkpoint from another generator than
mkckpt is written in a few minutes.  --shard-size cuts it into shards
with a model.safetensors.index.json.
"""
import argparse
import json
import os
import struct

import numpy as np


def to_bf16(a):
    """f32 -> bf16 bits, round to nearest even (the data here is finite)."""
    u = np.ascontiguousarray(a, dtype="<f4").view("<u4")
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype("<u2")


def write_st(path, tensors):
    hdr, off, blobs = {}, 0, []
    for name, a in tensors:
        if a.dtype == np.uint16:  # bf16 bits from to_bf16
            b, dt = a.tobytes(), "BF16"
        else:
            b, dt = np.ascontiguousarray(a, dtype="<f4").tobytes(), "F32"
        hdr[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    hj = json.dumps(hdr, separators=(",", ":")).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(path + ".partial", "wb") as f:
        f.write(struct.pack("<Q", len(hj)) + hj)
        for b in blobs:
            f.write(b)
    os.replace(path + ".partial", path)


def weight(rng, rows, cols, hot):
    w = rng.standard_t(4, size=(rows, cols))
    w *= np.exp(rng.normal(0.0, 0.6, size=(rows, 1)))
    w[:, hot] *= 4.0
    n_sal = max(1, rows * cols // 2000)
    r = rng.integers(0, rows, n_sal)
    c = rng.integers(0, cols, n_sal)
    rs = np.exp(rng.normal(0.0, 0.6, size=n_sal))
    w[r, c] = rng.choice([-1.0, 1.0], n_sal) * rng.uniform(8, 20, n_sal) * rs
    return (0.02 * w).astype(np.float32)


def hessian(rng, basis, hot, tokens):
    cols = basis.shape[1]
    x = rng.normal(size=(tokens, 16)) @ basis + rng.normal(size=(tokens, cols))
    x[:, hot] *= 10.0
    return (x.T @ x / tokens).astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--ff", type=int, default=2816)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--no-stats", action="store_true")
    ap.add_argument("--shard-size", type=int, default=0, help="bytes per shard (0: one file)")
    a = ap.parse_args()
    if a.no_stats:
        return bulk(a)
    rng = np.random.Generator(np.random.PCG64(a.seed))
    d, ff = a.dim, a.ff
    shapes = [("self_attn.q_proj", d, d), ("self_attn.k_proj", d // 4, d),
              ("self_attn.v_proj", d // 4, d), ("self_attn.o_proj", d, d),
              ("mlp.gate_proj", ff, d), ("mlp.up_proj", ff, d), ("mlp.down_proj", d, ff)]
    os.makedirs(a.out, exist_ok=True)
    ws, hs, hes, imps = [], [], [], []
    hot_by_cols = {}
    for short, rows, cols in shapes:
        name = "model.layers.0.%s.weight" % short
        if cols not in hot_by_cols:
            hot_by_cols[cols] = rng.choice(cols, max(1, cols // 100), replace=False)
        hot = hot_by_cols[cols]
        ws.append((name, weight(rng, rows, cols, hot)))
        basis = rng.normal(size=(16, cols)) / 4.0  # shared by both token sets
        h = hessian(rng, basis, hot, 4 * cols)
        hs.append((name, h))
        imps.append((name, np.diag(h).copy()))
        hes.append((name, hessian(rng, basis, hot, 4 * cols)))
    write_st(os.path.join(a.out, "model.safetensors"), ws)
    write_st(os.path.join(a.out, "hessian.safetensors"), hs)
    write_st(os.path.join(a.out, "importance.safetensors"), imps)
    write_st(os.path.join(a.out, "hessian-eval.safetensors"), hes)


def bulk(a):
    """Weights only, --layers layers, shards of about --shard-size bytes."""
    rng = np.random.Generator(np.random.PCG64(a.seed))
    d, ff = a.dim, a.ff
    shapes = [("self_attn.q_proj", d, d), ("self_attn.k_proj", d // 4, d),
              ("self_attn.v_proj", d // 4, d), ("self_attn.o_proj", d, d),
              ("mlp.gate_proj", ff, d), ("mlp.up_proj", ff, d), ("mlp.down_proj", d, ff)]
    os.makedirs(a.out, exist_ok=True)
    hot = {c: rng.choice(c, max(1, c // 100), replace=False) for c in (d, ff)}
    shards, cur, size = [], [], 0
    for layer in range(a.layers):
        for short, rows, cols in shapes:
            w = weight(rng, rows, cols, hot[cols])
            if a.dtype == "bf16":
                w = to_bf16(w)
            nb = w.size * w.itemsize
            if cur and a.shard_size and size + nb > a.shard_size:
                shards.append(cur)
                cur, size = [], 0
            cur.append(("model.layers.%d.%s.weight" % (layer, short), w))
            size += nb
    shards.append(cur)
    if len(shards) == 1:
        write_st(os.path.join(a.out, "model.safetensors"), shards[0])
        return
    wmap = {}
    for i, ts in enumerate(shards):
        fn = "model-%05d-of-%05d.safetensors" % (i + 1, len(shards))
        write_st(os.path.join(a.out, fn), ts)
        wmap.update({name: fn for name, _ in ts})
    with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": wmap}, f, indent=1)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""mkexperthessian.py MODE CHECKPOINT.safetensors OUT.safetensors [EXPERT]

Writes a --hessian file for the stacked expert tensors ([E, rows, cols],
names holding ".experts.") of a synthetic checkpoint, a different
H_e = X_e^T X_e / n for every expert e (random activations with hot input
channels that depend on e), laid out as MODE says:
  stacked  NAME -> f32[E, cols, cols]
  names    the per-expert names "...experts.<e>.PROJ" -> f32[cols, cols]
  shared   NAME -> f32[cols, cols]: expert EXPERT's matrix, for all
  badcount NAME -> f32[E + 1, cols, cols] (a file that does not fit)
The same (tensor, expert) always gets the same matrix, whatever MODE."""
import json, os, struct, sys, zlib
import numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_read

mode, src, dst = sys.argv[1:4]
only = int(sys.argv[4]) if len(sys.argv) > 4 else 0
n, header, _ = st_read.read_header(src)


def hessian(name, e, cols):
    rng = np.random.default_rng(zlib.crc32(name.encode()) * 1000 + e)
    x = rng.standard_normal((256, cols)).astype(np.float32)
    x[:, rng.choice(cols, 8, replace=False)] *= 10
    return (x.T @ x / 256).astype(np.float32)


out, blobs, at = {}, [], 0


def put(key, arr):
    global at
    raw = np.ascontiguousarray(arr, dtype="<f4").tobytes()
    out[key] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [at, at + len(raw)]}
    blobs.append(raw)
    at += len(raw)


for name, t in sorted(header.items()):
    if len(t["shape"]) != 3 or ".experts." not in name:
        continue
    experts, cols = t["shape"][0], t["shape"][2]
    if mode == "stacked":
        put(name, np.stack([hessian(name, e, cols) for e in range(experts)]))
    elif mode == "badcount":
        put(name, np.stack([hessian(name, e, cols) for e in range(experts + 1)]))
    elif mode == "names":
        head, tail = name.rsplit(".experts.", 1)
        for e in range(experts):
            put(f"{head}.experts.{e}.{tail}", hessian(name, e, cols))
    elif mode == "shared":
        put(name, hessian(name, only, cols))
    else:
        sys.exit(f"unknown mode {mode}")
text = json.dumps(out).encode()
text += b" " * ((8 - (8 + len(text)) % 8) % 8)
with open(dst, "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text)
    for b in blobs:
        f.write(b)

#!/usr/bin/env python3
"""mkhessian.py CHECKPOINT.safetensors OUT.safetensors [SEED]

Writes a --hessian file for a synthetic checkpoint: for every 2-D tensor
but the embeddings, H = X^T X / n of random activations (a few hot input
channels, as real ones have), f32[cols, cols].  Used by the --part tests
and benchmarks to run gptq on its compute-bound path."""
import json, os, struct, sys
import numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_read

src, dst = sys.argv[1], sys.argv[2]
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 3
n, header, _ = st_read.read_header(src)
rng = np.random.default_rng(seed)
out, blobs, at = {}, [], 0
for name, t in sorted(header.items()):
    if len(t["shape"]) != 2 or "embed" in name:
        continue
    cols = t["shape"][1]
    x = rng.standard_normal((256, cols)).astype(np.float32)
    x[:, rng.choice(cols, 4, replace=False)] *= 10
    raw = (x.T @ x / 256).astype(np.float32).tobytes()
    out[name] = {"dtype": "F32", "shape": [cols, cols], "data_offsets": [at, at + len(raw)]}
    blobs.append(raw)
    at += len(raw)
text = json.dumps(out).encode()
text += b" " * ((8 - (8 + len(text)) % 8) % 8)
with open(dst, "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text)
    for b in blobs:
        f.write(b)

#!/usr/bin/env python3
"""mkstats.py CHECKPOINT.safetensors OUTDIR - synthetic calibration
statistics for the CLI tests: activations X (512 samples) with hot channels
for every 2-D tensor but the embedding, written as safetensors files of
per-column importance (diag of H) and Hessians H = X^T X / n
(hessian.safetensors lacks model.layers.0.mlp.down_proj.weight on purpose),
a wrong-sized importance file, and X of up_proj (x-up.npy) so tests can
measure ||(W - Wq) X||."""
import json, struct, sys
import numpy as np
sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(__file__)))
import st_read

def write_st(path, tensors):
    header, data = {}, b""
    for name, arr in tensors.items():
        raw = np.ascontiguousarray(arr, dtype=np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape),
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    open(path, "wb").write(struct.pack("<Q", len(text)) + text + data)

n, header, _ = st_read.read_header(sys.argv[1])
rng = np.random.default_rng(1)
hess, imp, xs = {}, {}, {}
for name, t in header.items():
    if len(t["shape"]) != 2 or "embed" in name:
        continue
    cols = t["shape"][1]
    x = rng.standard_normal((512, cols)).astype(np.float32)
    hot = rng.choice(cols, max(1, cols // 64), replace=False)
    x[:, hot] *= 20
    h = x.T @ x / x.shape[0]
    hess[name] = h
    imp[name] = np.diag(h).copy()
    xs[name] = x
out = sys.argv[2]
missing = "model.layers.0.mlp.down_proj.weight"
write_st(out + "/hessian.safetensors", {k: v for k, v in hess.items() if k != missing})
write_st(out + "/importance.safetensors", imp)
write_st(out + "/bad-importance.safetensors",
         {**imp, "model.layers.0.mlp.up_proj.weight": np.ones(7, np.float32)})
np.save(out + "/x-up.npy", xs["model.layers.0.mlp.up_proj.weight"])

#!/usr/bin/python3
"""add_bias.py DIR - adds q/k/v projection biases (BF16, small deterministic
values) to the single-file checkpoint in DIR (model.safetensors, as mkckpt
--preset tiny writes it), for the Qwen2 and attention-bias export tests.
Rewrites the file: header with the new tensors appended, data unchanged."""
import json
import math
import os
import struct
import sys

d = sys.argv[1]
path = os.path.join(d, "model.safetensors")
b = open(path, "rb").read()
n = struct.unpack_from("<Q", b)[0]
hdr = json.loads(b[8:8 + n])
data = bytearray(b[8 + n:])
layers = sorted({int(k.split(".")[2]) for k in hdr if k.startswith("model.layers.")})
for l in layers:
    for proj in ("q_proj", "k_proj", "v_proj"):
        w = hdr["model.layers.%d.self_attn.%s.weight" % (l, proj)]
        rows = w["shape"][0]
        vals = [0.05 * math.sin(0.7 * i + 3 * l + len(proj)) for i in range(rows)]
        # bf16: the top half of the f32 bits (these values round exactly enough)
        raw = b"".join(struct.pack("<H", struct.unpack("<I", struct.pack("<f", v))[0] >> 16)
                       for v in vals)
        hdr["model.layers.%d.self_attn.%s.bias" % (l, proj)] = {
            "dtype": "BF16", "shape": [rows], "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
text = json.dumps(hdr).encode()
text += b" " * ((8 - (8 + len(text)) % 8) % 8)
open(path, "wb").write(struct.pack("<Q", len(text)) + text + bytes(data))

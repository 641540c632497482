#!/usr/bin/env python3
# mkseeds_calib.py [FUZZDIR] - writes the seed corpora of the importance and
# hessian harnesses (corpus/importance, corpus/hessian): small valid files
# of every kind the readers accept, holding the names the harnesses ask
# for at the column counts they ask with.  Deterministic; standard library
# only.
import json
import os
import struct
import sys

here = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))


def f32s(vals):
    return struct.pack("<%df" % len(vals), *vals)


def ramp(n, scale=0.25):
    return [scale * ((i % 7) + 1) for i in range(n)]


def safetensors(tensors, meta=None):
    """tensors: list of (name, dtype, shape, bytes), laid out in order."""
    hdr = {}
    if meta:
        hdr["__metadata__"] = meta
    off = 0
    for name, dtype, shape, data in tensors:
        hdr[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
    js = json.dumps(hdr, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 8)
    return struct.pack("<Q", len(js)) + js + b"".join(t[3] for t in tensors)


def gguf_str(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf(kvs, tensors, alignment=32, version=3):
    """kvs: list of (key, type, packed value); tensors: (name, ne, f32 list)."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for key, typ, val in kvs:
        out += gguf_str(key) + struct.pack("<I", typ) + val
    data = b""
    for name, ne, vals in tensors:
        data += b"\0" * (-len(data) % alignment)
        out += gguf_str(name) + struct.pack("<I", len(ne))
        out += b"".join(struct.pack("<Q", d) for d in ne)
        out += struct.pack("<IQ", 0, len(data))
        data += f32s(vals)
    out += b"\0" * (-len(out) % alignment)
    return out + data


def dat(entries, trailer=None):
    """entries: (name, ncall, values); trailer: (last_call, dataset)."""
    out = struct.pack("<i", len(entries))
    for name, ncall, vals in entries:
        b = name.encode()
        out += struct.pack("<i", len(b)) + b + struct.pack("<ii", ncall, len(vals)) + f32s(vals)
    if trailer:
        b = trailer[1].encode()
        out += struct.pack("<ii", trailer[0], len(b)) + b
    return out


def write(sub, name, data):
    d = os.path.join(here, "corpus", sub)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- importance ----
kv_common = [
    ("general.type", 8, gguf_str("imatrix")),
    ("general.alignment", 4, struct.pack("<I", 32)),
    ("imatrix.chunk_count", 4, struct.pack("<I", 10)),
    ("imatrix.chunk_size", 4, struct.pack("<I", 512)),
    ("imatrix.datasets", 9, struct.pack("<IQ", 8, 1) + gguf_str("wiki.train.raw")),
]
write("importance", "gguf_llama_names", gguf(kv_common, [
    ("blk.0.attn_q.weight.in_sum2", [16, 1], ramp(16, 5.0)),
    ("blk.0.attn_q.weight.counts", [1, 1], [10.0]),
    ("output.weight.in_sum2", [16, 1], ramp(16, 2.0)),
    ("output.weight.counts", [1, 1], [4.0]),
    # expert-stacked: 16 columns x 2 experts, merged by the reader
    ("blk.1.ffn_down.weight.in_sum2", [16, 2], ramp(32, 1.0)),
    ("blk.1.ffn_down.weight.counts", [1, 2], [3.0, 5.0]),
]))
write("importance", "gguf_v2_hf_names", gguf([
    ("general.alignment", 4, struct.pack("<I", 16)),
    ("imatrix.arr", 9, struct.pack("<IQ", 5, 3) + struct.pack("<3i", 1, 2, 3)),
    ("f64", 12, struct.pack("<d", 1.5)),
    ("flag", 7, b"\1"),
], [
    ("model.embed_tokens.weight.in_sum2", [1, 1], [2.0]),
    ("model.embed_tokens.weight.counts", [1, 1], [1.0]),
    ("lm_head.weight.in_sum2", [16], ramp(16)),
    ("lm_head.weight.counts", [1], [0.0]),  # no calls: reads as missing
    ("something.else", [2], [1.0, 2.0]),
], alignment=16, version=2))
write("importance", "dat_legacy", dat([
    ("blk.0.attn_q.weight", 8, ramp(16, 3.0)),
    ("token_embd.weight", 2, [6.0]),
    ("model.layers.1.mlp.down_proj.weight", 4, ramp(48, 1.0)),  # 3 experts
], trailer=(8, "calibration.txt")))
write("importance", "dat_4096", dat([
    ("lm_head.weight", 1, ramp(4096, 0.5)),
]))
write("importance", "st_vectors", safetensors([
    ("model.layers.0.self_attn.q_proj.weight", "F32", [16], f32s(ramp(16))),
    ("model.embed_tokens.weight", "F32", [1], f32s([3.0])),
    ("lm_head.weight", "BF16", [16], b"\x80\x3f" * 16),  # not f32: missing
    ("model.layers.1.mlp.down_proj.weight.hessian", "F32", [2, 2], f32s([1, 0, 0, 1])),
], meta={"format": "qshard-importance"}))

# ---- hessian ----
def eye_ish(n):
    return [float(n - abs(i - j)) if abs(i - j) < 3 else 0.0 for i in range(n) for j in range(n)]


write("hessian", "full_and_diag", safetensors([
    ("model.layers.0.self_attn.q_proj.weight", "F32", [16, 16], f32s(eye_ish(16))),
    ("lm_head.weight.hessian_diag", "F32", [16], f32s(ramp(16))),
    ("model.embed_tokens.weight", "F32", [1, 1], f32s([2.0])),
]))
write("hessian", "suffixes_and_mismatch", safetensors([
    ("model.layers.1.mlp.down_proj.weight.hessian", "F32", [16, 16], f32s(eye_ish(16))),
    ("lm_head.weight.hessian", "F16", [16, 16], b"\x00\x3c" * 256),  # wrong dtype
    ("model.embed_tokens.weight.hessian_diag", "F32", [1], f32s([1.0])),
    ("model.layers.0.self_attn.q_proj.weight", "F32", [4, 4], f32s(eye_ish(4))),  # wrong size
], meta={"collector": "collect_stats.py"}))
write("hessian", "diag_2048", safetensors([
    ("model.layers.0.self_attn.q_proj.weight.hessian_diag", "F32", [2048], f32s(ramp(2048))),
]))

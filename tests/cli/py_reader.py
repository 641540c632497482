#!/usr/bin/python3
"""py_reader.py - checks of the Python binding (contrib/python/qshard),
run by py_reader.sh:

  py_reader.py FILE UNPACK_F32 UNPACK_BF16 DAMAGED_FILE DAMAGED_TENSOR

Every tensor read through qshard.open() is bit for bit what `qshard unpack`
wrote (whole, row ranges, from several threads at once); info() agrees
with the record; an rtn chunk's packed payload, decoded here from the
layout man/qshard.5 gives, is the same float32 values; verify() passes on
the intact file and names the damaged tensor on the other, whose read
fails while the others read; load_torch() matches unpack's bf16 and f32
tensors when torch is installed (else that part says it is skipped).
"""
import json
import os
import struct
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import qshard

path, un_f32, un_bf16, bad_path, victim = sys.argv[1:6]


def unpacked(folder):
    """name -> raw bytes of every tensor unpack wrote into folder."""
    idx = os.path.join(folder, "model.safetensors.index.json")
    shards = (sorted(set(json.load(open(idx))["weight_map"].values()))
              if os.path.exists(idx) else ["model.safetensors"])
    out = {}
    for s in shards:
        with open(os.path.join(folder, s), "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
            data = f.read()
        header.pop("__metadata__", None)
        for name, t in header.items():
            b, e = t["data_offsets"]
            out[name] = (t["dtype"], data[b:e])
    return out


want32, want16 = unpacked(un_f32), unpacked(un_bf16)
f = qshard.open(path)
assert sorted(f) == sorted(want32), "tensor names differ from unpack's"
assert len(f) == len(want32) and victim in f and "no.such" not in f
try:
    f["no.such"]
    raise AssertionError("a missing tensor read")
except KeyError as e:
    assert "no.such" in str(e)

checked = 0
for name in f:
    info = f.info(name)
    raw = info["scheme"] == "raw"
    # as unpack --dtype f32 / bf16 wrote them: quantized as asked, raw as stored
    a32 = f.read(name, dtype="native" if raw else "f32")
    a16 = f.read(name, dtype="native" if raw else "bf16")
    assert a32.tobytes() == want32[name][1], f"{name}: f32 differs from unpack's"
    assert a16.tobytes() == want16[name][1], f"{name}: bf16 differs from unpack's"
    assert a32.shape == info["shape"], (name, a32.shape, info["shape"])
    # the mapping's default: float32 (raw bf16 widened exactly)
    d = f[name]
    assert d.dtype == np.float32
    if raw and info["dtype"] == "BF16":
        widened = (np.frombuffer(want16[name][1], np.uint16).astype(np.uint32) << 16)
        assert d.tobytes() == widened.astype("<u4").tobytes(), name
    elif not raw:
        assert d.tobytes() == want32[name][1], name
    # row ranges across chunk boundaries
    if len(info["shape"]) >= 2:
        rows = int(np.prod(info["shape"][:-1]))
        cols = info["shape"][-1]
        flat = a32.reshape(rows, cols)
        for a, b in ((0, 1), (rows // 3, rows // 3 + 129), (rows - 5, rows)):
            part = f.read(name, dtype="native" if raw else "f32", rows=(a, b))
            assert part.shape == (b - a, cols) and np.array_equal(
                part.view(np.uint8), flat[a:b].view(np.uint8)), f"{name} rows {a}:{b}"
    checked += 1

# info agrees with the record
i = f.info("model.layers.0.self_attn.q_proj.weight")
assert i["scheme_name"] == "rtn" and i["params"] == {"bits": "4", "group": "128"}, i
assert i["dtype"] == "BF16" and i["chunks"] >= 1 and i["payload_bytes"] > 0, i
assert f.info("model.norm.weight")["scheme"] == "raw"

# several threads reading from the one open file
with ThreadPoolExecutor(4) as pool:
    names = list(f) * 2
    got = list(pool.map(lambda n: f.read(n, dtype="native" if f.info(n)["scheme"] == "raw"
                                         else "f32").tobytes(), names))
assert all(g == want32[n][1] for n, g in zip(names, got)), "threaded reads differ"

# an rtn chunk decoded from its packed payload (qshard.5: R*G fp16 scales,
# R*G fp16 minimums, then R*C codes as one LSB-first bitstream; w = min +
# code * scale in f32) gives the values qs_qfile_read returns
name = "model.layers.1.mlp.gate_proj.weight"
info, full = f.info(name), f.read(name).reshape(-1, f.info(name)["shape"][-1])
assert info["scheme_name"] == "rtn", info
bits, group = int(info["params"]["bits"]), int(info["params"]["group"])
chunks = f.chunks(name)
assert len(chunks) > 1, "want a multi-chunk rtn tensor"
for c, ch in enumerate(chunks):
    p = f.payload(name, c)
    R, C = ch["row_count"], full.shape[1]
    G = -(-C // group)
    assert len(p) == ch["payload_bytes"] == 4 * R * G + -(-R * C * bits // 8), (c, len(p))
    scale = p[:2 * R * G].view("<f2").astype(np.float32).reshape(R, G)
    mn = p[2 * R * G:4 * R * G].view("<f2").astype(np.float32).reshape(R, G)
    bitstream = np.unpackbits(p[4 * R * G:], bitorder="little")[:R * C * bits]
    codes = (bitstream.reshape(-1, bits).astype(np.uint32) << np.arange(bits)).sum(1)
    codes = codes.reshape(R, C).astype(np.float32)
    gi = np.arange(C) // group
    w = mn[:, gi] + codes * scale[:, gi]
    want = full[ch["row_begin"]:ch["row_begin"] + R]
    assert w.tobytes() == want.tobytes(), f"{name} chunk {c}: payload decode differs"
f.verify()
f.close()

# damage: verify names the tensor; its read fails, the others read
with qshard.open(bad_path) as g:
    try:
        g.verify()
        raise AssertionError("verify passed a damaged file")
    except qshard.ChecksumError as e:
        assert any(victim == what for what, _ in e.damage), e.damage
    try:
        g.read(victim)
        raise AssertionError("a damaged tensor read")
    except qshard.ChecksumError as e:
        assert f"tensor '{victim}'" in str(e) and "chunk " in str(e), str(e)
    for name in g:
        if name != victim:
            raw = g.info(name)["scheme"] == "raw"
            assert g.read(name, dtype="native" if raw else "f32").tobytes() == \
                want32[name][1], name
print(f"py_reader: {checked} tensors equal to unpack's")

try:
    import torch
except ImportError:
    print("py_reader: torch not installed, load_torch not checked")
    sys.exit(0)
sd = qshard.load_torch(path)
assert list(sd) == list(qshard.open(path))
for name, t in sd.items():
    assert t.dtype == torch.bfloat16, (name, t.dtype)
    assert t.view(torch.int16).numpy().tobytes() == want16[name][1], f"torch {name}"
sd32 = qshard.load_torch(path, dtype=torch.float32)
for name, t in sd32.items():
    if want32[name][0] == "F32":
        assert t.numpy().tobytes() == want32[name][1], f"torch f32 {name}"
print(f"py_reader: load_torch: {len(sd)} tensors equal to unpack's (torch {torch.__version__})")

#!/usr/bin/python3
"""st_read.py - an independent safetensors reader (written from the format
specification, not from qshard's code) and the checks the CLI tests make on
unpacked checkpoints.  Needs numpy (Debian: python3-numpy).

usage:
  st_read.py check-unpack SRC_DIR OUT_DIR BITS GROUP [KEEP_REGEX]
      every tensor of OUT_DIR loads; shards, index and config match SRC_DIR;
      quantized tensors are within half a quantization step of the source,
      stored ones byte-identical
  st_read.py list FILE        names, dtypes and shapes
"""
import json
import os
import re
import struct
import sys

import numpy as np

DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": "bf16", "I64": np.int64,
          "I32": np.int32, "U8": np.uint8, "I8": np.int8, "F64": np.float64,
          "I16": np.int16, "U16": np.uint16, "BOOL": np.bool_}


def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    size = os.path.getsize(path)
    meta = header.pop("__metadata__", None)
    end = 0
    for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        b, e = t["data_offsets"]
        if b != end:
            raise ValueError(f"{path}: {name}: hole or overlap at {b}")
        end = e
    if 8 + n + end != size:
        raise ValueError(f"{path}: data area is {size - 8 - n}, tensors end at {end}")
    return n, header, meta


def load(path, name, header, n):
    t = header[name]
    b, e = t["data_offsets"]
    with open(path, "rb") as f:
        f.seek(8 + n + b)
        raw = f.read(e - b)
    dt = DTYPES[t["dtype"]]
    if dt == "bf16":
        u = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
        arr = u.view(np.float32)
    else:
        arr = np.frombuffer(raw, dtype=dt)
    return arr.reshape(t["shape"]), raw


def shards(d):
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            wm = json.load(f)["weight_map"]
        return sorted(set(wm.values())), wm
    return ["model.safetensors"], None


def check_unpack(src, out, bits, group, keep=None):
    bits, group = int(bits), int(group)
    qmax = (1 << bits) - 1
    s_shards, s_map = shards(src)
    o_shards, o_map = shards(out)
    assert s_shards == o_shards, f"shards differ: {s_shards} vs {o_shards}"
    assert s_map == o_map, "index weight_map differs"
    if os.path.exists(os.path.join(src, "config.json")):
        with open(os.path.join(src, "config.json")) as a, open(os.path.join(out, "config.json")) as b:
            assert json.load(a) == json.load(b), "config.json differs"
    checked = 0
    for sh in s_shards:
        sn, sh_h, _ = read_header(os.path.join(src, sh))
        on, oh_h, _ = read_header(os.path.join(out, sh))
        assert sorted(sh_h) == sorted(oh_h), f"{sh}: tensor names differ"
        for name in sh_h:
            w, wraw = load(os.path.join(src, sh), name, sh_h, sn)
            d, draw = load(os.path.join(out, sh), name, oh_h, on)
            assert list(w.shape) == list(d.shape), f"{name}: shape"
            quantized = (w.ndim >= 2 and sh_h[name]["dtype"] in ("BF16", "F16", "F32")
                         and not (keep and re.search(keep, name)))
            if not quantized:
                assert wraw == draw, f"{name}: stored tensor changed"
                continue
            cols = w.shape[-1]
            w2 = w.reshape(-1, cols).astype(np.float64)
            d2 = d.reshape(-1, cols).astype(np.float64)
            # blocks of rows bound memory on 128k-row embeddings
            for r0 in range(0, w2.shape[0], 4096):
                wb, db = w2[r0:r0 + 4096], d2[r0:r0 + 4096]
                for g0 in range(0, cols, group):
                    wg, dg = wb[:, g0:g0 + group], db[:, g0:g0 + group]
                    mn = wg.min(axis=1, keepdims=True)
                    mx = wg.max(axis=1, keepdims=True)
                    step = (mx - mn) / qmax
                    # half a step; fp16 rounding of scale and min adds
                    # under 1%, and an all-equal group is exact to fp16
                    tol = 0.5 * step * 1.01 + np.abs(wg) * 2.0 ** -10 + 1e-12
                    err = np.abs(dg - wg)
                    bad = err > tol
                    if bad.any():
                        i = np.argwhere(bad)[0]
                        raise AssertionError(
                            f"{name}: row {r0 + i[0]} col {g0 + i[1]}: |{dg[i[0], i[1]]} - "
                            f"{wg[i[0], i[1]]}| > {tol[i[0], i[1]]}")
            checked += 1
    print(f"st_read: {checked} quantized tensors within half a step, shards/index/config match")


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "check-unpack":
        check_unpack(*sys.argv[2:])
    elif len(sys.argv) == 3 and sys.argv[1] == "list":
        n, h, _ = read_header(sys.argv[2])
        for name, t in h.items():
            print(name, t["dtype"], t["shape"])
    else:
        print(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()

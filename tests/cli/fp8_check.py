#!/usr/bin/python3
"""fp8_check.py - checks qshard's handling of FP8 checkpoints against an
independent dequantization written here from the OCP FP8 specification and
DeepSeek-V3's block-scale rule (value = fp8 * scale_inv[i // 128][j // 128]),
not from qshard's code.  Needs numpy.

usage:
  fp8_check.py halfstep SRC OUT BITS GROUP
      every F8_E4M3 weight of SRC comes out of OUT (unpacked with --dtype f32)
      within half an rtn step of fp8 * scale; no scale tensor is in OUT;
      OUT's config.json has no quantization_config
  fp8_check.py sqnr SRC OUT MIN_DB
      every FP8 weight's SQNR against fp8 * scale is at least MIN_DB
  fp8_check.py keep SRC OUT REGEX
      FP8 weights matching REGEX and their scales are byte-identical in OUT
  fp8_check.py mxfp4 SRC OUT BITS GROUP
      every MXFP4 pair P_blocks/P_scales of SRC (OCP MX: e2m1 codes, low
      nibble first, times 2^(scale - 127)) comes out of OUT as P within half
      an rtn step; neither part is in OUT
  fp8_check.py mxfp4-keep SRC OUT
      every MXFP4 pair is in OUT byte for byte
"""
import json
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_read  # noqa: E402  (the independent safetensors reader)

BLOCK = 128


def e4m3_to_f32(b):
    """OCP E4M3 ("fn"): bias 7, subnormals at exponent 0, S.1111.111 NaN."""
    b = b.astype(np.int32)
    sign = np.where(b & 0x80, -1.0, 1.0)
    e = (b >> 3) & 0xF
    m = (b & 7).astype(np.float64)
    v = np.where(e == 0, m / 8.0 * 2.0 ** -6, (1.0 + m / 8.0) * 2.0 ** (e - 7.0))
    v = np.where((e == 15) & (m == 7), np.nan, v)
    return (sign * v).astype(np.float32)


def tensors(d):
    """name -> (shard path, header, header length) over every shard of d."""
    out = {}
    names, _ = st_read.shards(d)
    for sh in names:
        path = os.path.join(d, sh)
        n, h, _ = st_read.read_header(path)
        for name in h:
            out[name] = (path, h, n)
    return out


def raw(tab, name):
    path, h, n = tab[name]
    t = h[name]
    b, e = t["data_offsets"]
    with open(path, "rb") as f:
        f.seek(8 + n + b)
        return f.read(e - b), t


def reference(src, name):
    """fp8 * scale, computed in float32 as DeepSeek's weight_dequant does."""
    wb, wt = raw(src, name)
    sb, st = raw(src, name + "_scale_inv")
    w = e4m3_to_f32(np.frombuffer(wb, dtype=np.uint8)).reshape(wt["shape"])
    s = np.frombuffer(sb, dtype=np.float32).reshape(st["shape"])
    rows, cols = w.shape
    full = np.repeat(np.repeat(s, BLOCK, axis=0), BLOCK, axis=1)[:rows, :cols]
    return (w * full.astype(np.float32)).astype(np.float32)


def fp8_weights(src):
    return sorted(n for n, (_, h, _) in src.items() if h[n]["dtype"] == "F8_E4M3")


def loaded(out, name):
    path, h, n = out[name]
    arr, _ = st_read.load(path, name, h, n)
    return arr.astype(np.float64)


def halfstep(srcdir, outdir, bits, group):
    bits, group = int(bits), int(group)
    qmax = (1 << bits) - 1
    src, out = tensors(srcdir), tensors(outdir)
    names = fp8_weights(src)
    assert names, "no FP8 weights in the source"
    for name in names:
        assert name + "_scale_inv" not in out, f"{name}_scale_inv was stored"
        assert out[name][1][name]["dtype"] == "F32", f"{name}: not unpacked as F32"
        ref = reference(src, name).astype(np.float64)
        d = loaded(out, name)
        assert d.shape == ref.shape, f"{name}: shape {d.shape} vs {ref.shape}"
        for g0 in range(0, ref.shape[1], group):
            wg, dg = ref[:, g0:g0 + group], d[:, g0:g0 + group]
            mn = wg.min(axis=1, keepdims=True)
            mx = wg.max(axis=1, keepdims=True)
            # half a step; fp16 rounding of scale and min adds under 1%
            tol = 0.5 * (mx - mn) / qmax * 1.01 + np.abs(wg) * 2.0 ** -10 + 1e-12
            bad = np.abs(dg - wg) > tol
            if bad.any():
                i = np.argwhere(bad)[0]
                raise AssertionError(f"{name}: row {i[0]} col {g0 + i[1]}: "
                                     f"{dg[i[0], i[1]]} vs fp8*scale {wg[i[0], i[1]]}")
    with open(os.path.join(outdir, "config.json")) as f:
        assert "quantization_config" not in json.load(f), "quantization_config kept"
    print(f"fp8_check: {len(names)} FP8 weights within half a step of fp8 * scale")


def sqnr(srcdir, outdir, min_db):
    src, out = tensors(srcdir), tensors(outdir)
    worst = None
    for name in fp8_weights(src):
        ref = reference(src, name).astype(np.float64)
        err = loaded(out, name) - ref
        db = 10 * np.log10((ref ** 2).sum() / max((err ** 2).sum(), 1e-30))
        worst = db if worst is None else min(worst, db)
        assert db >= float(min_db), f"{name}: SQNR {db:.2f} dB < {min_db}"
    print(f"fp8_check: worst FP8 weight SQNR {worst:.2f} dB")


def keep(srcdir, outdir, regex):
    src, out = tensors(srcdir), tensors(outdir)
    n = 0
    for name in fp8_weights(src):
        if not re.search(regex, name):
            continue
        for t in (name, name + "_scale_inv"):
            a, at = raw(src, t)
            b, bt = raw(out, t)
            assert a == b and at["dtype"] == bt["dtype"], f"{t}: not kept byte for byte"
            n += 1
    assert n, "no tensor matched"
    print(f"fp8_check: {n} FP8 weights and scales kept byte for byte")


E2M1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6],
                dtype=np.float32)


def mxfp4_reference(src, base):
    bb, bt = raw(src, base + "_blocks")
    sb, _ = raw(src, base + "_scales")
    codes = np.frombuffer(bb, dtype=np.uint8).reshape(bt["shape"])
    scales = np.frombuffer(sb, dtype=np.uint8).astype(np.int32)
    vals = np.empty(codes.shape[:-1] + (32,), dtype=np.float32)
    vals[..., 0::2] = E2M1[codes & 15]
    vals[..., 1::2] = E2M1[codes >> 4]
    vals = vals * np.ldexp(np.float32(1), scales - 127).reshape(codes.shape[:-1] + (1,))
    return vals.reshape(codes.shape[:-2] + (codes.shape[-2] * 32,))


def mxfp4_pairs(src):
    return sorted(n[:-len("_blocks")] for n in src if n.endswith("_blocks"))


def mxfp4(srcdir, outdir, bits, group):
    bits, group = int(bits), int(group)
    qmax = (1 << bits) - 1
    src, out = tensors(srcdir), tensors(outdir)
    bases = mxfp4_pairs(src)
    assert bases, "no MXFP4 tensors in the source"
    for base in bases:
        assert base + "_blocks" not in out and base + "_scales" not in out, f"{base}: parts stored"
        ref = mxfp4_reference(src, base).astype(np.float64)
        d = loaded(out, base)
        assert d.shape == ref.shape, f"{base}: shape {d.shape} vs {ref.shape}"
        r2, d2 = ref.reshape(-1, ref.shape[-1]), d.reshape(-1, ref.shape[-1])
        for g0 in range(0, r2.shape[1], group):
            wg, dg = r2[:, g0:g0 + group], d2[:, g0:g0 + group]
            step = (wg.max(axis=1, keepdims=True) - wg.min(axis=1, keepdims=True)) / qmax
            tol = 0.5 * step * 1.01 + np.abs(wg) * 2.0 ** -10 + 1e-12
            bad = np.abs(dg - wg) > tol
            assert not bad.any(), f"{base}: {int(bad.sum())} values off by more than half a step"
    print(f"fp8_check: {len(bases)} MXFP4 tensors within half a step of their dequantization")


def mxfp4_keep(srcdir, outdir):
    src, out = tensors(srcdir), tensors(outdir)
    for base in mxfp4_pairs(src):
        for t in (base + "_blocks", base + "_scales"):
            assert raw(src, t)[0] == raw(out, t)[0], f"{t}: not kept byte for byte"
    print("fp8_check: MXFP4 tensors kept byte for byte")


def main():
    cmds = {"halfstep": halfstep, "sqnr": sqnr, "keep": keep, "mxfp4": mxfp4,
            "mxfp4-keep": mxfp4_keep}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        print(__doc__)
        sys.exit(2)
    cmds[sys.argv[1]](*sys.argv[2:])


if __name__ == "__main__":
    main()

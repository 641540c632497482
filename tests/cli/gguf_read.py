#!/usr/bin/python3
"""gguf_read.py - an independent GGUF v3 reader for the export tests
(layout from ggml's docs/gguf.md; block layouts from ggml-common.h).

  gguf_read.py kv FILE            metadata as JSON (arrays of > 8 elements
                                  shortened to their length and first 8)
  gguf_read.py kvfull FILE KEY    one key's full value as JSON
  gguf_read.py tensors FILE       name, type, dims, offset per tensor
  gguf_read.py sha256 FILE NAME   sha256 of one tensor's data bytes
  gguf_read.py same FILE_A FILE_B checks every tensor of A dequantizes to
                                  exactly the f32 values of B's tensor of
                                  the same name (types F32/F16/BF16/Q8_0/
                                  Q4_1), prints the count of tensors checked
"""
import json
import struct
import sys

TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 10: "Q2_K",
         11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 30: "BF16"}
BLOCK = {0: (1, 4), 1: (1, 2), 30: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24),
         8: (32, 34), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210)}


class R:
    def __init__(self, b):
        self.b, self.p = b, 0

    def take(self, n):
        if self.p + n > len(self.b):
            raise ValueError("truncated")
        v = self.b[self.p:self.p + n]
        self.p += n
        return v

    def u(self, fmt):
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt)))[0]

    def s(self):
        return self.take(self.u("Q")).decode("utf-8")


SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def value(r, t):
    if t == 8:
        return r.s()
    if t == 9:
        et, n = r.u("I"), r.u("Q")
        return [value(r, et) for _ in range(n)]
    return r.u(SCALAR[t])


def parse(path):
    b = open(path, "rb").read()
    r = R(b)
    if r.take(4) != b"GGUF":
        raise ValueError("bad magic")
    ver, nt, nkv = r.u("I"), r.u("Q"), r.u("Q")
    kv = {}
    for _ in range(nkv):
        k = r.s()
        kv[k] = value(r, r.u("I"))
    ts = []
    for _ in range(nt):
        name = r.s()
        nd = r.u("I")
        dims = [r.u("Q") for _ in range(nd)]
        ts.append({"name": name, "dims": dims, "type": r.u("I"), "offset": r.u("Q")})
    align = kv.get("general.alignment", 32)
    data = (r.p + align - 1) // align * align
    return b, ver, kv, ts, data


def f16(h):
    return struct.unpack("<e", struct.pack("<H", h))[0]


def bf16(h):
    return struct.unpack("<f", struct.pack("<I", h << 16))[0]


def f32r(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def dequant(b, t, off, n):
    """f32 values (as Python floats rounded to f32 per operation)."""
    if t["type"] == 0:
        return list(struct.unpack_from("<%df" % n, b, off))
    if t["type"] == 1:
        return [f16(h) for h in struct.unpack_from("<%dH" % n, b, off)]
    if t["type"] == 30:
        return [bf16(h) for h in struct.unpack_from("<%dH" % n, b, off)]
    out = []
    if t["type"] == 8:  # block_q8_0: fp16 d, int8 qs[32]; x = d*q
        for blk in range(n // 32):
            p = off + blk * 34
            d = f16(struct.unpack_from("<H", b, p)[0])
            qs = struct.unpack_from("<32b", b, p + 2)
            out += [f32r(q * d) for q in qs]
        return out
    if t["type"] == 3:  # block_q4_1: fp16 d, m, qs[16]; x = d*q + m
        for blk in range(n // 32):
            p = off + blk * 20
            d, m = (f16(v) for v in struct.unpack_from("<2H", b, p))
            qs = b[p + 4:p + 20]
            lo = [f32r(f32r((q & 15) * d) + m) for q in qs]
            hi = [f32r(f32r((q >> 4) * d) + m) for q in qs]
            out += lo + hi
        return out
    raise ValueError("type %d not handled" % t["type"])


def main():
    cmd = sys.argv[1]
    b, ver, kv, ts, data = parse(sys.argv[2])
    if cmd == "kv":
        short = {k: (v if not isinstance(v, list) or len(v) <= 8 else {"len": len(v), "head": v[:8]})
                 for k, v in kv.items()}
        print(json.dumps({"version": ver, "kv": short}, indent=1))
    elif cmd == "kvfull":
        print(json.dumps(kv.get(sys.argv[3])))
    elif cmd == "sha256":
        import hashlib
        t = [t for t in ts if t["name"] == sys.argv[3]][0]
        blk, size = BLOCK[t["type"]]
        n = 1
        for d in t["dims"]:
            n *= d
        off = data + t["offset"]
        print(hashlib.sha256(b[off:off + n // blk * size]).hexdigest())
    elif cmd == "tensors":
        for t in ts:
            print(t["name"], TYPES.get(t["type"], t["type"]), t["dims"], t["offset"])
    elif cmd == "same":
        b2, _, _, ts2, data2 = parse(sys.argv[3])
        other = {t["name"]: t for t in ts2}
        checked = 0
        for t in ts:
            n = 1
            for d in t["dims"]:
                n *= d
            u = other[t["name"]]
            va = dequant(b, t, data + t["offset"], n)
            vb = dequant(b2, u, data2 + u["offset"], n)
            for i, (x, y) in enumerate(zip(va, vb)):
                if x != y and not (x != x and y != y):
                    print("tensor %s element %d: %r != %r" % (t["name"], i, x, y))
                    sys.exit(1)
            checked += 1
        print("same %d" % checked)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""ggml_same.py LIBGGML_BASE A.gguf B.gguf - checks that ggml itself (the
type traits' to_float of libggml-base.so, the library llama.cpp runs on)
reads every tensor of A as exactly the F32 values of B's tensor of the
same name, whatever A's type (K-quants included; a tensor of the same
raw type in both is compared byte for byte); prints the count.  The
struct layout is ggml.h's struct ggml_type_traits."""
import ctypes
import struct
import sys

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import gguf_read as g  # noqa: E402

TO_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_int64)


class Traits(ctypes.Structure):
    _fields_ = [("type_name", ctypes.c_char_p), ("blck_size", ctypes.c_int64),
                ("blck_size_interleave", ctypes.c_int64), ("type_size", ctypes.c_size_t),
                ("is_quantized", ctypes.c_bool), ("to_float", ctypes.c_void_p),
                ("from_float_ref", ctypes.c_void_p)]


lib = ctypes.CDLL(sys.argv[1])
lib.ggml_get_type_traits.restype = ctypes.POINTER(Traits)
lib.ggml_get_type_traits.argtypes = [ctypes.c_int]
ba, _, _, ta, da = g.parse(sys.argv[2])
bb, _, _, tb, db = g.parse(sys.argv[3])
other = {t["name"]: t for t in tb}
checked = 0
for t in ta:
    u = other[t["name"]]
    n = 1
    for d in t["dims"]:
        n *= d
    if u["dims"] != t["dims"]:
        sys.exit("%s: B's tensor has another shape" % t["name"])
    if u["type"] == t["type"] and u["type"] != 0:  # raw in both (BF16, F16): the same bytes
        bs, size = g.BLOCK[t["type"]]
        if ba[da + t["offset"]:da + t["offset"] + n // bs * size] != bb[db + u["offset"]:db + u["offset"] + n // bs * size]:
            sys.exit("%s: the %s bytes differ" % (t["name"], g.TYPES[t["type"]]))
        checked += 1
        continue
    if u["type"] != 0:
        sys.exit("%s: B's tensor is not F32" % t["name"])
    want = struct.unpack_from("<%df" % n, bb, db + u["offset"])
    if t["type"] == 0:
        got = struct.unpack_from("<%df" % n, ba, da + t["offset"])
    else:
        tr = lib.ggml_get_type_traits(t["type"]).contents
        size = n // tr.blck_size * tr.type_size
        src = ctypes.create_string_buffer(ba[da + t["offset"]:da + t["offset"] + size], size)
        out = (ctypes.c_float * n)()
        if tr.to_float:
            TO_FLOAT(tr.to_float)(ctypes.cast(src, ctypes.c_void_p), out, n)
        else:
            sys.exit("%s: ggml has no to_float for type %d" % (t["name"], t["type"]))
        got = list(out)
    for i, (x, y) in enumerate(zip(got, want)):
        if x != y and not (x != x and y != y):
            sys.exit("tensor %s element %d: ggml reads %r, the f32 export holds %r" % (t["name"], i, x, y))
    checked += 1
print(checked)

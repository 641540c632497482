"""ggml_peer.py - ggml's own k-quant quantizers (q2_K, q3_K, q4_K, q5_K,
q6_K) as peers for bench-quality, called through ctypes in libggml-base.so
from the npm package @node-llama-cpp/linux-x64 (llama.cpp's ggml built by
node-llama-cpp). Nothing of ggml is reimplemented here: the weights go
through ggml's quantize_<type>() (the function llama-quantize calls, with or
without an importance matrix) and back through dequantize_row_<type>().

The library is looked up in $GGML_BASE_LIB, then under /opt/node-llama-cpp
and ~/.cache/qshard-bench/node-llama-cpp (npm install --prefix DIR
@node-llama-cpp/linux-x64).
"""
import ctypes
import glob
import os

import numpy as np

# ggml.h enum ggml_type: these values have been stable since the k-quants
# were added (GGML_TYPE_Q2_K = 10 ... GGML_TYPE_Q6_K = 14); checked at load
# time against ggml_type_name().
TYPES = {"q2_K": 10, "q3_K": 11, "q4_K": 12, "q5_K": 13, "q6_K": 14}
QK_K = 256


def find_lib():
    cands = [os.environ.get("GGML_BASE_LIB", "")]
    for root in ("/opt/node-llama-cpp", os.path.expanduser("~/.cache/qshard-bench/node-llama-cpp")):
        cands += sorted(glob.glob(root + "/node_modules/@node-llama-cpp/linux-x64/bins/*/libggml-base.so"))
    for c in cands:
        if c and os.path.isfile(c):
            return c
    return None


class Ggml:
    def __init__(self, path):
        self.path = path
        self.lib = ctypes.CDLL(path)
        self.lib.ggml_type_name.restype = ctypes.c_char_p
        self.lib.ggml_type_name.argtypes = [ctypes.c_int]
        self.lib.ggml_row_size.restype = ctypes.c_size_t
        self.lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
        for name, t in TYPES.items():
            got = self.lib.ggml_type_name(t).decode()
            if got != name:
                raise RuntimeError("%s: type %d is %s, not %s" % (path, t, got, name))
            q = getattr(self.lib, "quantize_" + name)
            q.restype = ctypes.c_size_t
            q.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                          ctypes.c_void_p]
            d = getattr(self.lib, "dequantize_row_" + name)
            d.restype = None
            d.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]

    def bpw(self, name):
        return self.lib.ggml_row_size(TYPES[name], QK_K) * 8.0 / QK_K

    def roundtrip(self, name, w, imatrix=None):
        """w: float32 [rows, cols], cols a multiple of 256 -> dequantized copy."""
        w = np.ascontiguousarray(w, dtype=np.float32)
        rows, cols = w.shape
        if cols % QK_K:
            raise ValueError("ggml k-quants need rows of a multiple of %d weights" % QK_K)
        rs = self.lib.ggml_row_size(TYPES[name], cols)
        buf = np.zeros(rows * rs, dtype=np.uint8)
        im = None
        if imatrix is not None:
            im = np.ascontiguousarray(imatrix, dtype=np.float32)
        n = getattr(self.lib, "quantize_" + name)(
            w.ctypes.data, buf.ctypes.data, rows, cols,
            im.ctypes.data if im is not None else None)
        if n != rows * rs:
            raise RuntimeError("quantize_%s wrote %d bytes, expected %d" % (name, n, rows * rs))
        out = np.empty_like(w)
        getattr(self.lib, "dequantize_row_" + name)(buf.ctypes.data, out.ctypes.data, rows * cols)
        return out

"""qshard - load tensors from qshard files from Python.

A ctypes binding over libqshard (no compiled extension): every read goes
through qs_qfile_read(3), so each chunk's checksums are verified as it is
read and a damaged chunk raises ChecksumError naming the tensor and the
chunk.  Needs numpy; load_torch() also needs torch.

    import qshard
    with qshard.open("model.qshard") as f:
        w = f["model.layers.0.mlp.up_proj.weight"]   # numpy float32, read now
        print(f.info("model.layers.0.mlp.up_proj.weight")["scheme"])
        f.verify()                                    # every checksum
    state = qshard.load_torch("model.qshard")         # name -> torch.bfloat16

The library is found through $QSHARD_LIBRARY (a path), else the system's
libqshard.so.0 (`make install`).  Reads release the GIL, and one open file
may be read from several threads at once.
"""
import ctypes
import ctypes.util
import os
from collections.abc import Mapping

import numpy as np

__all__ = ["open", "load_torch", "QFile", "Error", "ChecksumError", "FormatError"]

# ---------------------------------------------------------------- the ABI
# Mirrors include/qshard.h; the tests compare every read with `qshard
# unpack`, so a drift here cannot go unnoticed.

QS_EFORMAT, QS_EDTYPE, QS_ECHECKSUM, QS_EUSAGE = 2000, 2001, 2002, 2003
QS_MAX_DIMS = 8
QS_SCHEME_MAX_PARAMS = 16

# enum qs_dtype value -> (safetensors name, numpy dtype).  numpy has no
# bfloat16: bf16 values are returned as their uint16 bit patterns, as are
# fp8 ones as uint8.
_DTYPES = {
    0: ("BOOL", np.bool_), 1: ("U8", np.uint8), 2: ("I8", np.int8),
    3: ("U16", np.uint16), 4: ("I16", np.int16), 5: ("F16", np.float16),
    6: ("BF16", np.uint16), 7: ("U32", np.uint32), 8: ("I32", np.int32),
    9: ("F32", np.float32), 10: ("U64", np.uint64), 11: ("I64", np.int64),
    12: ("F64", np.float64), 13: ("F8_E4M3", np.uint8), 14: ("F8_E5M2", np.uint8),
    # a quantized tensor whose source was MXFP4 (blocks + scales); never raw
    15: ("MXFP4", np.uint8),
}
_F16, _BF16, _F32 = 5, 6, 9
_FLOATS = (_F16, _BF16, _F32)
_BY_NAME = {"f32": _F32, "float32": _F32, "f16": _F16, "float16": _F16,
            "bf16": _BF16, "bfloat16": _BF16}


class _TensorInfo(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p), ("dtype", ctypes.c_int), ("ndim", ctypes.c_uint32),
        ("shape", ctypes.c_uint64 * QS_MAX_DIMS), ("source_bytes", ctypes.c_uint64),
        ("file", ctypes.c_char_p), ("scheme", ctypes.c_char_p),
        ("payload_bytes", ctypes.c_uint64), ("stored_bytes", ctypes.c_uint64),
        ("chunks", ctypes.c_uint32), ("bpw_nominal", ctypes.c_double),
        ("bpw_on_disk", ctypes.c_double), ("source_xxh3", ctypes.c_uint64),
    ]


class _Diag(ctypes.Structure):
    _fields_ = [("msg", ctypes.c_char * 1024)]


class _ChunkInfo(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in (
        "row_begin", "row_count", "payload_bytes", "frame_offset", "frame_bytes",
        "payload_xxh3")]


class _SchemeParam(ctypes.Structure):
    _fields_ = [("key", ctypes.c_char * 32), ("value", ctypes.c_char * 32)]


class _SchemeInfo(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char * 32), ("nparams", ctypes.c_uint),
                ("params", _SchemeParam * QS_SCHEME_MAX_PARAMS)]


_DAMAGE_FN = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p)
_lib = None


def _library():
    global _lib
    if _lib is not None:
        return _lib
    path = (os.environ.get("QSHARD_LIBRARY") or ctypes.util.find_library("qshard")
            or "libqshard.so.0")
    lib = ctypes.CDLL(path)
    P, S, U64, I = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint64, ctypes.c_int
    diag = ctypes.POINTER(_Diag)
    sigs = {
        "qs_qfile_open": (I, [ctypes.c_char_p, ctypes.POINTER(P), diag]),
        "qs_qfile_free": (None, [P]),
        "qs_qfile_count": (S, [P]),
        "qs_qfile_tensor": (None, [P, S, ctypes.POINTER(_TensorInfo)]),
        "qs_qfile_find": (I, [P, ctypes.c_char_p, ctypes.POINTER(S)]),
        "qs_qfile_read_rows": (I, [P, S, U64, U64, I, P, S, diag]),
        "qs_qfile_chunk": (I, [P, S, ctypes.c_uint32, ctypes.POINTER(_ChunkInfo)]),
        "qs_qfile_read_payload": (I, [P, S, ctypes.c_uint32, P, S, diag]),
        "qs_qfile_scheme": (I, [P, S, ctypes.POINTER(_SchemeInfo), diag]),
        "qs_verify": (I, [ctypes.c_char_p, ctypes.c_char_p, _DAMAGE_FN, P, diag]),
        "qs_strerror": (ctypes.c_char_p, [I]),
        "qs_version": (ctypes.c_char_p, []),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    _lib = lib
    return lib


# ---------------------------------------------------------------- errors

class Error(Exception):
    """A libqshard failure; .code is the negative return value."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


class ChecksumError(Error):
    """Damage: a checksum does not hold (.damage lists the parts verify found)."""

    def __init__(self, code, message, damage=()):
        super().__init__(code, message)
        self.damage = list(damage)


class FormatError(Error):
    """A malformed file, or a dtype or scheme this library cannot read."""


def _raise(rc, diag):
    msg = diag.msg.decode("utf-8", "replace") or _library().qs_strerror(rc).decode()
    code = -rc
    if code == QS_ECHECKSUM:
        raise ChecksumError(rc, msg)
    if code in (QS_EFORMAT, QS_EDTYPE):
        raise FormatError(rc, msg)
    if code == QS_EUSAGE:
        raise ValueError(msg)
    if code < QS_EFORMAT:
        raise OSError(code, msg)
    raise Error(rc, msg)


# ---------------------------------------------------------------- reading

def open(path):  # noqa: A001 - like gzip.open
    """Opens a qshard file: a QFile, a lazy mapping of names to arrays."""
    return QFile(path)


class QFile(Mapping):
    """An open qshard file.  f[name] reads that tensor (and only its
    chunks) now, as float32 for float tensors and in the stored dtype for
    integer ones; read() chooses the dtype and rows.  Nothing is cached."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self._lib = _library()
        self._qf = ctypes.c_void_p()
        diag = _Diag()
        rc = self._lib.qs_qfile_open(os.fsencode(self.path), ctypes.byref(self._qf),
                                     ctypes.byref(diag))
        if rc < 0:
            self._qf = None
            _raise(rc, diag)
        self._infos = []
        for i in range(self._lib.qs_qfile_count(self._qf)):
            t = _TensorInfo()
            self._lib.qs_qfile_tensor(self._qf, i, ctypes.byref(t))
            self._infos.append(t)
        self._names = [t.name.decode() for t in self._infos]
        self._index = {n: i for i, n in enumerate(self._names)}

    # -- lifetime
    def close(self):
        if self._qf:
            self._lib.qs_qfile_free(self._qf)
            self._qf = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if getattr(self, "_qf", None):
            self.close()

    # -- the mapping
    def __getitem__(self, name):
        return self.read(name)

    def __iter__(self):
        return iter(self._names)

    def __len__(self):
        return len(self._names)

    def __contains__(self, name):
        return name in self._index

    def _find(self, name):
        if not self._qf:
            raise ValueError(f"'{self.path}' is closed")
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"'{self.path}': no tensor '{name}'") from None

    def info(self, name):
        """The tensor's record: dtype, shape, scheme and its parameters,
        chunk count and sizes, bits per weight, source checksum."""
        i = self._find(name)
        t = self._infos[i]
        s, diag = _SchemeInfo(), _Diag()
        rc = self._lib.qs_qfile_scheme(self._qf, i, ctypes.byref(s), ctypes.byref(diag))
        if rc < 0:
            _raise(rc, diag)
        return {
            "name": name,
            "dtype": _DTYPES[t.dtype][0],
            "shape": tuple(t.shape[d] for d in range(t.ndim)),
            "scheme": t.scheme.decode(),
            "scheme_name": s.name.decode(),
            "params": {s.params[k].key.decode(): s.params[k].value.decode()
                       for k in range(s.nparams)},
            "chunks": t.chunks,
            "payload_bytes": t.payload_bytes,
            "stored_bytes": t.stored_bytes,
            "source_bytes": t.source_bytes,
            "bpw": t.bpw_nominal,
            "bpw_on_disk": t.bpw_on_disk,
            "source_xxh3": f"{t.source_xxh3:016x}",
        }

    def _geometry(self, i):
        t = self._infos[i]
        shape = tuple(t.shape[d] for d in range(t.ndim))
        cols = shape[-1] if shape else 1
        rows = int(np.prod(shape[:-1], dtype=np.uint64)) if len(shape) > 1 else 1
        return shape, rows, cols

    def _dtype_id(self, i, dtype):
        t = self._infos[i]
        raw = t.scheme == b"raw"
        if dtype is None:
            return _F32 if (not raw or t.dtype in _FLOATS) else t.dtype
        if dtype == "native":
            return t.dtype
        key = np.dtype(dtype).name if not isinstance(dtype, str) else dtype.lower()
        if key not in _BY_NAME:
            raise ValueError(f"dtype must be f32, f16, bf16 or native, not {dtype!r}")
        return _BY_NAME[key]

    def read(self, name, dtype=None, rows=None):
        """Reads tensor name as dtype: None (float32 for float tensors, the
        stored dtype for integer ones), "f32", "f16", "bf16" (uint16 bit
        patterns) or "native" (the source dtype).  rows=(a, b) reads rows
        a..b-1 (rows: all dimensions but the last) as an array of shape
        (b - a, cols); else the whole tensor in its shape."""
        i = self._find(name)
        shape, nrows, cols = self._geometry(i)
        dt = self._dtype_id(i, dtype)
        if rows is None:
            begin, count, out_shape = 0, nrows, shape
        else:
            begin, end = rows
            if not 0 <= begin <= end <= nrows:
                raise ValueError(f"'{self.path}': tensor '{name}' has {nrows} rows; "
                                 f"{begin}:{end} is outside them")
            count, out_shape = end - begin, (end - begin, cols)
        out = np.empty(out_shape, dtype=_DTYPES[dt][1])
        diag = _Diag()
        rc = self._lib.qs_qfile_read_rows(self._qf, i, begin, count, dt,
                                          out.ctypes.data_as(ctypes.c_void_p), out.nbytes,
                                          ctypes.byref(diag))
        if rc < 0:
            _raise(rc, diag)
        return out

    def chunks(self, name):
        """The tensor's row-chunks: row range, payload and frame sizes."""
        i = self._find(name)
        out = []
        for c in range(self._infos[i].chunks):
            ci = _ChunkInfo()
            self._lib.qs_qfile_chunk(self._qf, i, c, ctypes.byref(ci))
            out.append({f: getattr(ci, f) for f, _ in _ChunkInfo._fields_})
        return out

    def payload(self, name, chunk):
        """Chunk's packed payload (man qshard.5, SCHEME PAYLOADS) as uint8,
        checksums verified, for code that dequantizes it itself."""
        i = self._find(name)
        ci = _ChunkInfo()
        if self._lib.qs_qfile_chunk(self._qf, i, chunk, ctypes.byref(ci)) < 0:
            raise IndexError(f"'{self.path}': tensor '{name}' has no chunk {chunk}")
        out = np.empty(ci.payload_bytes, dtype=np.uint8)
        diag = _Diag()
        rc = self._lib.qs_qfile_read_payload(self._qf, i, chunk,
                                             out.ctypes.data_as(ctypes.c_void_p), out.nbytes,
                                             ctypes.byref(diag))
        if rc < 0:
            _raise(rc, diag)
        return out

    def verify(self):
        """Checks every checksum of the file (qs_verify); raises
        ChecksumError listing each damaged part, else returns None."""
        damage = []

        def report(what, detail, _user):
            damage.append((what.decode(), detail.decode()))

        cb = _DAMAGE_FN(report)
        diag = _Diag()
        rc = self._lib.qs_verify(os.fsencode(self.path), None, cb, None, ctypes.byref(diag))
        if rc < 0:
            if -rc in (QS_ECHECKSUM, QS_EFORMAT):
                raise ChecksumError(rc, diag.msg.decode("utf-8", "replace"), damage)
            _raise(rc, diag)


def load_torch(path, dtype=None, device="cpu"):
    """Every tensor of a qshard file as a dict name -> torch.Tensor, float
    tensors as dtype (default torch.bfloat16; bf16 and f16 rounded from the
    dequantized f32 exactly as `qshard unpack` does), integer ones as
    stored.  Tensors are read one at a time."""
    import torch

    if dtype is None:
        dtype = torch.bfloat16
    names = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}
    if dtype not in names:
        raise ValueError(f"dtype must be torch.float32, float16 or bfloat16, not {dtype}")
    out = {}
    with QFile(path) as f:
        for name in f:
            i = f._index[name]
            floating = f._infos[i].scheme != b"raw" or f._infos[i].dtype in _FLOATS
            a = f.read(name, dtype=names[dtype] if floating else "native")
            if floating and dtype == torch.bfloat16:
                # torch has no uint16: reinterpret the bit patterns
                t = torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
            else:
                t = torch.from_numpy(a)
            out[name] = t.to(device) if device != "cpu" else t
    return out

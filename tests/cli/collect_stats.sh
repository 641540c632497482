#!/bin/sh
# collect_stats.sh - contrib/python/collect_stats.py on the built-in tiny
# Llama-like model: output headers, names, shapes, H symmetric and positive
# semi-definite, importance = diag(H), --diag-only.  Skipped (77) when
# /usr/bin/python3 cannot import torch.
. "$top_srcdir/tests/cli/lib.sh"
"$PY" -c 'import torch' 2>/dev/null || { echo "SKIP: no torch for $PY"; exit 77; }
CS=$top_srcdir/contrib/python/collect_stats.py

"$PY" -c 'import random
random.seed(1)
w = ["the", "model", "quantized", "layer", "of", "weights", "hessian", "calibration"]
print(" ".join(random.choice(w) for _ in range(3000)))' >"$T/text.txt"

expect_exit 0 "$PY" "$CS" --text "$T/text.txt" --tokens 700 --ctx 256 \
	--out-hessian "$T/h.safetensors" --out-importance "$T/i.safetensors"
expect_exit 0 "$PY" "$CS" --text "$T/text.txt" --tokens 700 --ctx 256 --diag-only \
	--out-hessian "$T/hd.safetensors"
expect_exit 2 "$PY" "$CS" --text "$T/text.txt"
expect_err "nothing to do"

"$PY" - "$T" <<'PYEOF' || fail "collect_stats output check"
import json, struct, sys
import numpy as np
d = sys.argv[1]

def load(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    meta = hdr.pop("__metadata__", {})
    out, end = {}, 0
    for k, v in hdr.items():
        assert v["dtype"] == "F32", k
        a, b = v["data_offsets"]
        end = max(end, b)
        out[k] = np.frombuffer(raw[8 + n + a: 8 + n + b], dtype="<f4").reshape(v["shape"])
    assert 8 + n + end == len(raw), "data area size"
    return out, meta

H, meta = load(d + "/h.safetensors")
I, _ = load(d + "/i.safetensors")
D, _ = load(d + "/hd.safetensors")
assert meta["tokens"] == "700", meta
# 2 layers x 7 linears + lm_head
assert len(H) == 15 and set(H) == set(I), sorted(H)
assert H["model.layers.0.mlp.up_proj.weight"].shape == (64, 64)
assert H["model.layers.1.mlp.down_proj.weight"].shape == (128, 128)
assert I["model.layers.1.mlp.down_proj.weight"].shape == (128,)
for k, h in H.items():
    h = h.astype(np.float64)
    assert np.allclose(h, h.T, rtol=1e-5, atol=1e-6), k
    ev = np.linalg.eigvalsh(h)
    assert ev.min() >= -1e-5 * max(ev.max(), 1e-30), (k, ev.min(), ev.max())
    assert np.allclose(np.diag(h), I[k], rtol=1e-4, atol=1e-7), k
    assert np.allclose(D[k + ".hessian_diag"], I[k], rtol=1e-4, atol=1e-7), k
assert set(D) == {k + ".hessian_diag" for k in H}
PYEOF
exit 0

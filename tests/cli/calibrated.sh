#!/bin/bash
# Calibration-aware schemes end to end through the pipeline: --hessian for
# gptq/athena/claq and --importance for daq, written as safetensors from
# synthetic activations with hot channels.  gptq's output error ||(W-Ŵ)X||
# must beat rtn's on the same grid; missing entries give a notice, a wrong
# size an error naming the tensor, and a window too small for a Hessian
# fails before anything is read.
. "$top_srcdir/tests/cli/lib.sh"
need_numpy

"$MKCKPT" --preset tiny --layers 1 -o "$T/ck" >/dev/null || fail mkckpt
"$PY" - "$T/ck/model.safetensors" "$T" <<'PY' || fail "writing statistics"
import json, struct, sys
import numpy as np
sys.path.insert(0, __import__("os").environ["top_srcdir"] + "/tests/cli")
import st_read

def write_st(path, tensors):
    header, data = {}, b""
    for name, arr in tensors.items():
        raw = np.ascontiguousarray(arr, dtype=np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape),
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    open(path, "wb").write(struct.pack("<Q", len(text)) + text + data)

n, header, _ = st_read.read_header(sys.argv[1])
rng = np.random.default_rng(1)
hess, imp, xs = {}, {}, {}
for name, t in header.items():
    if len(t["shape"]) != 2 or "embed" in name:
        continue
    cols = t["shape"][1]
    x = rng.standard_normal((512, cols)).astype(np.float32)
    hot = rng.choice(cols, max(1, cols // 64), replace=False)
    x[:, hot] *= 20
    h = x.T @ x / x.shape[0]
    hess[name] = h
    imp[name] = np.diag(h).copy()
    xs[name] = x
out = sys.argv[2]
missing = "model.layers.0.mlp.down_proj.weight"
write_st(out + "/hessian.safetensors", {k: v for k, v in hess.items() if k != missing})
write_st(out + "/importance.safetensors", imp)
write_st(out + "/bad-importance.safetensors",
         {**imp, "model.layers.0.mlp.up_proj.weight": np.ones(7, np.float32)})
np.save(out + "/x-up.npy", xs["model.layers.0.mlp.up_proj.weight"])
PY

# gptq with Hessians (one tensor has none: notice, quantized as with H = I)
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/g.qshard" --progress none \
	--scheme gptq:bits=3 --hessian "$T/hessian.safetensors"
expect_err "tensor 'model.layers.0.mlp.down_proj.weight': no Hessian entry"
expect_exit 0 "$QSHARD" verify "$T/g.qshard"
expect_exit 0 "$QSHARD" unpack "$T/g.qshard" -o "$T/ug" --dtype f32
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/r.qshard" --progress none --scheme rtn:bits=3
expect_exit 0 "$QSHARD" unpack "$T/r.qshard" -o "$T/ur" --dtype f32
"$PY" - "$T" <<'PY' || fail "gptq output error is not below rtn's"
import sys, os
import numpy as np
sys.path.insert(0, os.environ["top_srcdir"] + "/tests/cli")
import st_read
t = sys.argv[1]
name = "model.layers.0.mlp.up_proj.weight"
def load(d):
    n, h, _ = st_read.read_header(d + "/model.safetensors")
    return st_read.load(d + "/model.safetensors", name, h, n)[0].astype(np.float64)
w, g, r = load(t + "/ck"), load(t + "/ug"), load(t + "/ur")
x = np.load(t + "/x-up.npy").astype(np.float64)
eg = np.linalg.norm((w - g) @ x.T)
er = np.linalg.norm((w - r) @ x.T)
print(f"||(W-Wq)X||: gptq {eg:.4f}, rtn {er:.4f}")
assert eg < er
PY

# athena and the importance-weighted schemes run through the pipeline too
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/a.qshard" --progress none \
	--scheme athena:bits=3 --hessian "$T/hessian.safetensors"
expect_exit 0 "$QSHARD" verify "$T/a.qshard"
for s in daq:bits=4,format=nf4; do
	expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/d.qshard" --progress none --scheme "$s" \
		--importance "$T/importance.safetensors"
	expect_exit 0 "$QSHARD" verify "$T/d.qshard"
	expect_exit 0 "$QSHARD" unpack "$T/d.qshard" -o "$T/ud" --dtype f32
	rm -rf "$T/ud" "$T/d.qshard"
done

# claq fits each column's code book over all rows, so a tensor is one chunk
# and the data does not depend on --memory (48M cuts rtn's embed_tokens into
# 3 chunks; 256M and 4G are the figures the issue names)
for m in 48M 256M 4G; do
	expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/c$m.qshard" --progress none -T 2 \
		--memory "$m" --scheme claq:bits=3.12 --hessian "$T/hessian.safetensors"
done
# (the header records the options, --memory among them: compare the data)
for m in 48M 256M 4G; do
	expect_exit 0 "$QSHARD" verify "$T/c$m.qshard"
	expect_exit 0 "$QSHARD" unpack "$T/c$m.qshard" -o "$T/uc$m" --dtype f32
done
cmp -s "$T/uc48M/model.safetensors" "$T/uc4G/model.safetensors" ||
	fail "claq output depends on --memory (48M)"
cmp -s "$T/uc256M/model.safetensors" "$T/uc4G/model.safetensors" ||
	fail "claq output depends on --memory (256M)"
rm -rf "$T"/uc* "$T"/c*.qshard
# a window too small for a whole tensor fails before anything is read
expect_exit 7 "$QSHARD" convert "$T/ck" -o "$T/cm.qshard" --progress none -T 1 \
	--memory 16M --scheme claq
expect_err "quantizes all"
[ ! -e "$T/cm.qshard.partial" ] || fail "a refused window left a .partial"

# a wrong-sized entry is an error naming the file and the tensor
expect_exit 3 "$QSHARD" convert "$T/ck" -o "$T/b.qshard" --progress none --force \
	--scheme daq:bits=4 --importance "$T/bad-importance.safetensors"
expect_err "bad-importance.safetensors"
expect_err "model.layers.0.mlp.up_proj.weight"

# a window too small for one Hessian fails before anything is read
expect_exit 7 "$QSHARD" convert "$T/ck" -o "$T/m.qshard" --progress none -T 1 \
	--memory 12M --scheme gptq:bits=3 --hessian "$T/hessian.safetensors"
expect_err "per-tensor state"
[ ! -e "$T/m.qshard.partial" ] || fail "a refused window left a .partial"
echo "PASS calibrated"

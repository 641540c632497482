#!/bin/bash
# FP8 checkpoints with block scales and MoE layers (DeepSeek-V3 layout, from
# mkckpt --dtype fp8 --moe): every dequantized weight is within half a step
# of fp8 * scale computed independently (tests/cli/fp8_check.py), no scale
# tensor is stored or quantized, routers stay raw, --keep round-trips the
# FP8 bytes, verify --source covers the scales, and a missing or misshapen
# scale is an error naming both tensors.  Stacked 3-D experts convert
# expert by expert.
. "$top_srcdir/tests/cli/lib.sh"
need_numpy
CHECK="$top_srcdir/tests/cli/fp8_check.py"

"$MKCKPT" --preset tiny --layers 2 --dtype fp8 --moe 4 --seed 7 --shard-size 4M \
	-o "$T/ck" >/dev/null || fail "mkckpt fp8"
grep -q '"quant_method": "fp8"' "$T/ck/config.json" || fail "mkckpt wrote no quantization_config"

# --- rtn (the default scheme): within half a step of fp8 * scale
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/r.qs" --progress none -T 2
expect_exit 0 "$QSHARD" verify "$T/r.qs" --source "$T/ck"
expect_exit 0 "$QSHARD" inspect "$T/r.qs" --json
"$PY" - "$T/out" <<'PY' || fail "inspect: scales or routers"
import json, sys
j = json.load(open(sys.argv[1]))
s = {t["name"]: t for t in j["tensors"]}
assert not [n for n in s if n.endswith("_scale_inv")], "a scale tensor was stored"
assert s["model.layers.0.mlp.gate.weight"]["scheme"] == "raw", "router quantized"
e = s["model.layers.1.mlp.experts.3.down_proj.weight"]
assert e["dtype"] == "F8_E4M3" and e["scheme"].startswith("rtn:"), e
PY
expect_exit 0 "$QSHARD" unpack "$T/r.qs" -o "$T/ur" --dtype f32
"$PY" "$CHECK" halfstep "$T/ck" "$T/ur" 4 128 || fail "rtn: FP8 weights off fp8 * scale"
# bf16 is the default dtype of dequantized FP8 weights
expect_exit 0 "$QSHARD" unpack "$T/r.qs" -o "$T/ub"
for f in "$T/ub/"*.safetensors; do
	"$PY" "$top_srcdir/tests/cli/st_read.py" list "$f"
done >"$T/list"
grep -q 'layers.0.self_attn.q_proj.weight BF16' "$T/list" || fail "default unpack dtype is not BF16"

# identical bytes for any -T / --io with the scale reads beside the weights
for args in "-T 1 --io pread" "-T 3 --io mmap" "-T 2 --io uring --memory 64M"; do
	# shellcheck disable=SC2086
	expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/x.qs" $args --progress none --force
	if [ "$args" = "-T 2 --io uring --memory 64M" ]; then
		# a different window may cut chunks differently: compare the values
		expect_exit 0 "$QSHARD" unpack "$T/x.qs" -o "$T/ux" --dtype f32
		"$PY" "$CHECK" halfstep "$T/ck" "$T/ux" 4 128 || fail "values with $args"
	else
		cmp -s "$T/r.qs" "$T/x.qs" || fail "output differs with $args"
	fi
done

# --- adpq and gptq read the same dequantized values
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/a.qs" --scheme adpq:bits=3 --progress none
expect_exit 0 "$QSHARD" unpack "$T/a.qs" -o "$T/ua" --dtype f32
"$PY" "$CHECK" sqnr "$T/ck" "$T/ua" 12 || fail "adpq: FP8 weights"
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/g.qs" --scheme gptq:bits=4 --progress none
expect_exit 0 "$QSHARD" unpack "$T/g.qs" -o "$T/ug" --dtype f32
# without a Hessian gptq rounds on the rtn grid (H = I)
"$PY" "$CHECK" halfstep "$T/ck" "$T/ug" 4 128 || fail "gptq: FP8 weights"

# --- --keep stores weight and scale exactly as they were
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/k.qs" --keep 'self_attn' --progress none
expect_exit 0 "$QSHARD" verify "$T/k.qs" --source "$T/ck"
expect_exit 0 "$QSHARD" unpack "$T/k.qs" -o "$T/uk" --dtype f32
"$PY" "$CHECK" keep "$T/ck" "$T/uk" 'self_attn' || fail "--keep of FP8 weights"
grep -q quantization_config "$T/uk/config.json" ||
	fail "quantization_config dropped although FP8 tensors were kept"

# --- a router is quantized only when a rule names it
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/q.qs" --progress none \
	--scheme 'mlp\.gate\.weight=rtn:bits=8'
expect_exit 0 "$QSHARD" inspect "$T/q.qs"
grep 'mlp.gate.weight ' "$T/out" | grep -q 'rtn:bits=8' || fail "router rule ignored"

# --- verify --source sees a changed scale
cp -r "$T/ck" "$T/ck2"
"$PY" - "$T/ck2" <<'PY' || fail "could not edit a scale"
import json, os, struct, sys
d = sys.argv[1]
wm = json.load(open(os.path.join(d, "model.safetensors.index.json")))["weight_map"]
name = "model.layers.0.self_attn.q_proj.weight_scale_inv"
path = os.path.join(d, wm[name])
with open(path, "r+b") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    h = json.loads(f.read(n))
    f.seek(8 + n + h[name]["data_offsets"][0])
    v = struct.unpack("<f", f.read(4))[0]
    f.seek(8 + n + h[name]["data_offsets"][0])
    f.write(struct.pack("<f", v * 2))
PY
expect_exit 4 "$QSHARD" verify "$T/r.qs" --source "$T/ck2"
expect_err "model.layers.0.self_attn.q_proj.weight"

# --- a missing or misshapen scale names both tensors
"$PY" - "$T" <<'PY' || fail "could not write bad FP8 checkpoints"
import json, os, struct, sys
def st(path, tensors):
    header, data = {}, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").write(struct.pack("<Q", len(text)) + text + data)
w = bytes(range(64)) * 4 * 256  # 256 x 256 E4M3 values
st(os.path.join(sys.argv[1], "noscale", "model.safetensors"),
   [("x.weight", "F8_E4M3", [256, 256], w)])
st(os.path.join(sys.argv[1], "badscale", "model.safetensors"),
   [("x.weight", "F8_E4M3", [256, 256], w),
    ("x.weight_scale_inv", "F32", [3, 2], struct.pack("<6f", *[1.0] * 6))])
st(os.path.join(sys.argv[1], "mxnoscale", "model.safetensors"),
   [("x_blocks", "U8", [2, 32, 1, 16], bytes(1024))])
st(os.path.join(sys.argv[1], "tscale", "model.safetensors"),
   [("x.weight", "F8_E4M3", [256, 256], w),
    ("x.weight_scale", "F32", [], struct.pack("<f", 0.5))])
PY
expect_exit 3 "$QSHARD" convert "$T/noscale" -o "$T/bad.qs" --progress none
expect_err "'x.weight'"
expect_err "'x.weight_scale_inv'"
[ ! -e "$T/bad.qs" ] && [ ! -e "$T/bad.qs.partial" ] || fail "output left after a refused input"
expect_exit 3 "$QSHARD" convert "$T/badscale" -o "$T/bad.qs" --progress none
expect_err "'x.weight_scale_inv' has shape [3,2]"
expect_err "'x.weight'"
expect_exit 3 "$QSHARD" convert "$T/mxnoscale" -o "$T/bad.qs" --progress none
expect_err "'x_blocks'"
expect_err "'x_scales'"
# a per-tensor scale (0-D) multiplies every weight
expect_exit 0 "$QSHARD" convert "$T/tscale" -o "$T/t.qs" --scheme rtn:bits=8 --progress none
expect_exit 0 "$QSHARD" unpack "$T/t.qs" -o "$T/ut" --dtype f32
"$PY" - "$T/ut/model.safetensors" "$CHECK" <<'PY' || fail "per-tensor FP8 scale"
import importlib.util, sys
import numpy as np
spec = importlib.util.spec_from_file_location("fp8_check", sys.argv[2])
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
import st_read
n, h, _ = st_read.read_header(sys.argv[1])
assert "x.weight_scale" not in h, "per-tensor scale stored"
d, _ = st_read.load(sys.argv[1], "x.weight", h, n)
ref = m.e4m3_to_f32(np.frombuffer(bytes(range(64)) * 4 * 256, dtype=np.uint8)).reshape(256, 256) * 0.5
step = (ref.max(axis=1) - ref.min(axis=1)).max() / 255
assert np.abs(d - ref).max() <= step, np.abs(d - ref).max()
PY

# --- stacked 3-D experts [E, rows, cols]: converted expert by expert
"$MKCKPT" --preset tiny --layers 1 --moe 3 --fused-experts --seed 9 -o "$T/fused" >/dev/null ||
	fail "mkckpt fused"
expect_exit 0 "$QSHARD" convert "$T/fused" -o "$T/f.qs" --progress none --memory 32M
expect_exit 0 "$QSHARD" unpack "$T/f.qs" -o "$T/uf" --dtype f32
"$PY" "$top_srcdir/tests/cli/st_read.py" check-unpack "$T/fused" "$T/uf" 4 128 'mlp\.gate\.weight' ||
	fail "unpacked stacked experts"
# --- MXFP4 experts (gpt-oss layout): within half a step of an independent
# dequantization; --keep stores both parts as they were
"$MKCKPT" --preset tiny --layers 1 --moe 3 --fused-experts --mxfp4 --seed 11 -o "$T/mx" \
	>/dev/null || fail "mkckpt mxfp4"
expect_exit 0 "$QSHARD" convert "$T/mx" -o "$T/m.qs" --progress none --memory 32M -T 2
expect_exit 0 "$QSHARD" verify "$T/m.qs" --source "$T/mx"
expect_exit 0 "$QSHARD" unpack "$T/m.qs" -o "$T/um" --dtype f32
"$PY" "$CHECK" mxfp4 "$T/mx" "$T/um" 4 128 || fail "MXFP4 experts"
expect_exit 0 "$QSHARD" convert "$T/mx" -o "$T/mk.qs" --progress none --keep 'experts'
expect_exit 0 "$QSHARD" unpack "$T/mk.qs" -o "$T/umk" --dtype f32
"$PY" "$CHECK" mxfp4-keep "$T/mx" "$T/umk" || fail "MXFP4 --keep"
echo "PASS fp8_moe"

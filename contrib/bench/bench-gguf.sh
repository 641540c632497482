#!/bin/sh
# bench-gguf.sh - the gguf scheme against ggml's own quantizer
# (contrib/bench/bench-gguf.c) on two checkpoints, generated on first use:
# a mkckpt 1b checkpoint (1 layer) and a numpy-written one whose layer-0
# weights have Student-t (3 degrees of freedom) bodies and log-normal row
# scales, unlike anything mkckpt writes.  Needs libggml-base.so
# (contrib/quickstart.sh installs it; QSHARD_GGML_BASE= to point at one).
#
# usage: contrib/bench/bench-gguf.sh [bench-gguf options: -r ROWS -n TOKENS -t SECONDS -T TYPE -H]
# env:   BUILD (default build/ next to contrib/), BENCH_DIR (default $TMPDIR),
#        PYTHON (with numpy; default /usr/bin/python3)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${BUILD:-$here/../../build}
bin=$build/contrib/bench/bench-gguf
mk=$build/contrib/mkckpt/mkckpt
if [ ! -x "$bin" ] || [ ! -x "$mk" ]; then
	make -C "$build" contrib/bench/bench-gguf contrib/mkckpt/mkckpt >&2
fi
dir=${BENCH_DIR:-${TMPDIR:-/tmp}}
ck1=$dir/qshard-bench-1b-1l
ck2=$dir/qshard-bench-student-t
[ -f "$ck1/model.safetensors" ] || "$mk" --preset 1b --layers 1 -o "$ck1" >&2
if [ ! -f "$ck2/model.safetensors" ]; then
	mkdir -p "$ck2"
	"${PYTHON:-/usr/bin/python3}" - "$ck2/model.safetensors" <<'PY'
import json, struct, sys
import numpy as np
rng = np.random.default_rng(7)
h, f = 2048, 5632
shapes = {"q_proj": (h, h), "k_proj": (256, h), "v_proj": (256, h), "o_proj": (h, h),
          "gate_proj": (f, h), "up_proj": (f, h), "down_proj": (h, f)}
header, chunks, off = {}, [], 0
for short, shape in shapes.items():
    part = "self_attn" if short[0] in "qkvo" else "mlp"
    name = "model.layers.0.%s.%s.weight" % (part, short)
    body = rng.standard_t(3, size=shape) * 0.01
    scale = np.exp(rng.normal(0.0, 0.5, size=(shape[0], 1)))
    w = (body * scale).astype(np.float32)
    u = w.view(np.uint32).astype(np.uint64)
    bf = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)  # round to nearest even
    raw = bf.tobytes()
    header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + len(raw)]}
    chunks.append(raw)
    off += len(raw)
text = json.dumps(header).encode()
text += b" " * ((8 - (8 + len(text)) % 8) % 8)
with open(sys.argv[1], "wb") as out:
    out.write(struct.pack("<Q", len(text)) + text)
    for c in chunks:
        out.write(c)
PY
fi
for ck in "$ck1" "$ck2"; do
	"$bin" "$ck" "$@"
done

#!/bin/bash
# adpq with --hessian (AdpQ's separation, then GPTQ's compensation) through
# the pipeline: the statistics change every tensor they cover and lower the
# output error tr((W-Wq) H (W-Wq)^T) summed over them; the file is a plain
# adpq file of the same size (the reader needs nothing new); and the bytes
# do not depend on -T or --memory (chunks of other row counts).
. "$top_srcdir/tests/cli/lib.sh"
need_numpy

"$MKCKPT" --preset tiny --layers 1 -o "$T/ck" >/dev/null || fail mkckpt
"$PY" "$top_srcdir/tests/cli/mkstats.py" "$T/ck/model.safetensors" "$T" || fail "writing statistics"

expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/h1.qshard" --progress none -T 1 \
	--scheme adpq:bits=3 --hessian "$T/hessian.safetensors"
expect_err "no Hessian entry"
expect_exit 0 "$QSHARD" verify "$T/h1.qshard"
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/h2.qshard" --progress none -T 2 \
	--scheme adpq:bits=3 --hessian "$T/hessian.safetensors"
cmp "$T/h1.qshard" "$T/h2.qshard" || fail "adpq --hessian output depends on -T"
# at 32M gate_proj (which has a Hessian) is cut in two chunks, at the
# default in one; the header records the chunking, so compare the weights
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/h3.qshard" --progress none -T 2 \
	--memory 32M --scheme adpq:bits=3 --hessian "$T/hessian.safetensors"
chunks() {
	"$QSHARD" inspect "$1" --json | "$PY" -c '
import json, sys
for t in json.load(sys.stdin)["tensors"]:
    if t["name"] == "model.layers.0.mlp.gate_proj.weight":
        print(t["chunks"])'
}
c1=$(chunks "$T/h1.qshard") c3=$(chunks "$T/h3.qshard")
[ -n "$c3" ] && [ "$c3" -gt 1 ] && [ "$c1" != "$c3" ] ||
	fail "gate_proj chunks: $c1 at the default, $c3 at 32M; the test needs them to differ"
expect_exit 0 "$QSHARD" unpack "$T/h3.qshard" -o "$T/u3" --dtype f32
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/p.qshard" --progress none -T 1 \
	--scheme adpq:bits=3
expect_exit 0 "$QSHARD" unpack "$T/h1.qshard" -o "$T/uh" --dtype f32
expect_exit 0 "$QSHARD" unpack "$T/p.qshard" -o "$T/up" --dtype f32
cmp "$T/uh/model.safetensors" "$T/u3/model.safetensors" ||
	fail "adpq --hessian weights depend on --memory"
"$PY" - "$T" <<'PY' || fail "adpq: --hessian has no effect or does not lower the output error"
import sys, os
import numpy as np
sys.path.insert(0, os.environ["top_srcdir"] + "/tests/cli")
import st_read
t = sys.argv[1]
def tensors(path):
    n, h, _ = st_read.read_header(path)
    return {k: st_read.load(path, k, h, n)[0].astype(np.float64) for k in h}
src = tensors(t + "/ck/model.safetensors")
withh = tensors(t + "/uh/model.safetensors")
plain = tensors(t + "/up/model.safetensors")
stats = tensors(t + "/hessian.safetensors")
ew = eo = 0.0
changed = 0
for name, s in stats.items():
    w = src[name]
    dw, do = w - withh[name], w - plain[name]
    changed += not np.array_equal(withh[name], plain[name])
    ew += np.einsum("ij,jk,ik->", dw, s, dw)
    eo += np.einsum("ij,jk,ik->", do, s, do)
print(f"adpq --hessian: {changed}/{len(stats)} tensors changed; output error {ew:.6g} with, {eo:.6g} without ({10*np.log10(eo/ew):.2f} dB)")
assert changed == len(stats)
assert ew < 0.9 * eo
PY
echo "PASS adpq_hessian"

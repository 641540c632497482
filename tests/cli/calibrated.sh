#!/bin/bash
# Calibration-aware schemes end to end through the pipeline: --hessian for
# gptq/athena/claq/daq and --importance for daq, written as safetensors from
# synthetic activations with hot channels (tests/cli/mkstats.py).  gptq's
# output error ||(W-Ŵ)X|| must beat rtn's on the same grid; for each
# scheme the statistics must change every tensor they cover and lower the
# error they target; missing entries give a notice, a wrong size an error
# naming the tensor, and a window too small for a Hessian fails before
# anything is read.
. "$top_srcdir/tests/cli/lib.sh"
need_numpy

"$MKCKPT" --preset tiny --layers 1 -o "$T/ck" >/dev/null || fail mkckpt
"$PY" "$top_srcdir/tests/cli/mkstats.py" "$T/ck/model.safetensors" "$T" || fail "writing statistics"

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

# The statistics reach each scheme and do what they are for: with them the
# weights come out different, and the error they target is lower than
# without them, summed over every tensor that has statistics:
#   --hessian (gptq, athena, claq, daq):  tr((W-Wq) H (W-Wq)^T) = ||(W-Wq) X^T||^2 / n
#   --importance (daq):                   sum_j imp_j * sum_i (W-Wq)_ij^2
# (each scheme also runs without them: the comparison needs both.)
compare_stats() {  # SCHEME OPTION FILE METRIC
	local scheme=$1 opt=$2 file=$3 metric=$4
	expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/with.qshard" --progress none --force \
		--scheme "$scheme" "$opt" "$file"
	expect_exit 0 "$QSHARD" verify "$T/with.qshard"
	expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/without.qshard" --progress none --force \
		--scheme "$scheme"
	rm -rf "$T/uw" "$T/uo"
	expect_exit 0 "$QSHARD" unpack "$T/with.qshard" -o "$T/uw" --dtype f32
	expect_exit 0 "$QSHARD" unpack "$T/without.qshard" -o "$T/uo" --dtype f32
	"$PY" - "$T" "$file" "$metric" "$scheme $opt" <<'PY' || fail "$scheme: $opt has no effect or does not lower the error it targets"
import sys, os
import numpy as np
sys.path.insert(0, os.environ["top_srcdir"] + "/tests/cli")
import st_read
t, stats_file, metric, what = sys.argv[1:5]
def tensors(path):
    n, h, _ = st_read.read_header(path)
    return {k: st_read.load(path, k, h, n)[0].astype(np.float64) for k in h}
src = tensors(t + "/ck/model.safetensors")
withs = tensors(t + "/uw/model.safetensors")
without = tensors(t + "/uo/model.safetensors")
stats = tensors(stats_file)
ew = eo = 0.0
changed = 0
for name, s in stats.items():
    w = src[name]
    dw, do = w - withs[name], w - without[name]
    changed += not np.array_equal(withs[name], without[name])
    if metric == "hessian":
        ew += np.einsum("ij,jk,ik->", dw, s, dw)
        eo += np.einsum("ij,jk,ik->", do, s, do)
    else:
        ew += float(((dw * dw) * s[None, :]).sum())
        eo += float(((do * do) * s[None, :]).sum())
print(f"{what}: {changed}/{len(stats)} tensors changed; target error {ew:.6g} with, {eo:.6g} without")
assert changed == len(stats), "the statistics did not change every tensor they cover"
assert ew < eo, "the statistics did not lower the error they target"
PY
}
compare_stats gptq:bits=3 --hessian "$T/hessian.safetensors" hessian
compare_stats athena:bits=3 --hessian "$T/hessian.safetensors" hessian
compare_stats daq:bits=4,format=nf4 --importance "$T/importance.safetensors" importance
compare_stats daq:bits=4,format=nf4,iters=20 --hessian "$T/hessian.safetensors" hessian
compare_stats claq:bits=3.12 --hessian "$T/hessian.safetensors" hessian

# claq fits its code books over whole matrices: every claq tensor is one
# chunk whose frame holds the same bytes for --memory 4G, 256M and 36M (at
# 36M rtn cuts the MLP matrices in two; the files as a whole differ by the
# other tensors' chunking, which the header's fingerprint carries); a
# window too small for one matrix fails before reading, naming the
# --memory it needs
READ=$top_builddir/tests/api/read_every
for mem in 4G 256M 36M; do
	expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/claq-$mem.qshard" --progress none -T 2 \
		--scheme layers=claq --hessian "$T/hessian.safetensors" --memory "$mem"
done
for name in self_attn.q_proj mlp.up_proj mlp.down_proj; do
	for mem in 4G 256M 36M; do
		expect_exit 0 "$READ" --locate "$T/claq-$mem.qshard" "model.layers.0.$name.weight" 0
		read -r off size <"$T/out"
		tail -c +$((off + 1)) "$T/claq-$mem.qshard" | head -c "$size" >"$T/frame-$mem"
		expect_exit 1 "$READ" --locate "$T/claq-$mem.qshard" "model.layers.0.$name.weight" 1
	done
	cmp "$T/frame-4G" "$T/frame-256M" || fail "claq: $name differs for --memory 256M and 4G"
	cmp "$T/frame-4G" "$T/frame-36M" || fail "claq: $name differs for --memory 36M and 4G"
done
expect_exit 7 "$QSHARD" convert "$T/ck" -o "$T/claq-small.qshard" --progress none -T 1 \
	--scheme layers=claq --memory 24M
expect_err "quantizes all 1280 rows of a matrix at once and needs --memory of at least"
[ ! -e "$T/claq-small.qshard.partial" ] || fail "a refused window left a .partial"

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

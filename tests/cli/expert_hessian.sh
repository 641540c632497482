#!/bin/bash
# Per-expert Hessians for stacked MoE experts ([E, rows, cols]): gptq uses
# expert e's Hessian for expert e's rows.  The proof: converting with every
# expert's Hessian (stacked f32[E, cols, cols], or one per expert under the
# per-expert Hugging Face names: the same bytes) gives, for each expert e,
# exactly the rows a run with e's Hessian shared by all experts gives, and
# rows that differ from a run with one shared Hessian for the others.  A
# stacked entry of the wrong expert count is an error naming file and
# tensor, and the final output never appears.
. "$top_srcdir/tests/cli/lib.sh"
need_numpy
MK="$top_srcdir/tests/cli/mkexperthessian.py"
E=4

"$MKCKPT" --preset tiny --layers 1 --moe $E --fused-experts --seed 5 -o "$T/ck" >/dev/null ||
	fail mkckpt
st="$T/ck/model.safetensors"
"$PY" "$MK" stacked "$st" "$T/stacked.st" || fail mkexperthessian
"$PY" "$MK" names "$st" "$T/names.st" || fail mkexperthessian
for e in $(seq 0 $((E - 1))); do
	"$PY" "$MK" shared "$st" "$T/shared$e.st" "$e" || fail mkexperthessian
done
"$PY" "$MK" badcount "$st" "$T/bad.st" || fail mkexperthessian

# run TAG HESSIAN: gptq on the experts (rtn elsewhere), unpacked as f32
run() {
	expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/$1.qs" --scheme 'experts=gptq:bits=3' \
		--hessian "$2" --memory 48M -T 2 --progress plain
	grep -q "no Hessian entry" "$T/err" && fail "$1: an expert went without its Hessian: $(cat "$T/err")"
	expect_exit 0 "$QSHARD" unpack "$T/$1.qs" -o "$T/u$1" --dtype f32
}
run stacked "$T/stacked.st"
run names "$T/names.st"
for e in $(seq 0 $((E - 1))); do
	run "shared$e" "$T/shared$e.st"
done

"$PY" - "$T" "$E" <<'PY' || fail "experts were not quantized with their own Hessians"
import os, sys
sys.path.insert(0, os.environ["top_srcdir"] + "/tests/cli")
import st_read
import numpy as np
t, E = sys.argv[1], int(sys.argv[2])
def tensors(tag):
    path = f"{t}/u{tag}/model.safetensors"
    n, h, _ = st_read.read_header(path)
    return {k: st_read.load(path, k, h, n)[0] for k in h if ".experts." in k}
stacked, names = tensors("stacked"), tensors("names")
shared = [tensors(f"shared{e}") for e in range(E)]
assert stacked and len(stacked) == 3, sorted(stacked)
for k, a in stacked.items():
    assert a.ndim == 3 and a.shape[0] == E, (k, a.shape)
    assert np.array_equal(a, names[k]), f"{k}: stacked and per-expert names differ"
    for e in range(E):
        # expert e: exactly what e's Hessian gives it
        assert np.array_equal(a[e], shared[e][k][e]), f"{k}: expert {e} not from H_{e}"
        if e:
            # and not what a single shared Hessian gives it
            assert not np.array_equal(a[e], shared[0][k][e]), f"{k}: expert {e} same under H_0"
print("per-expert Hessians: ok for", sorted(stacked))
PY

# the same bytes from parts that split the stacked tensors between experts,
# and for any -T
for k in 1 2 3; do
	expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/p.qs" --scheme 'experts=gptq:bits=3' \
		--hessian "$T/stacked.st" --memory 48M -T 2 --part "$k/3"
done
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/p.qs" --scheme 'experts=gptq:bits=3' \
	--hessian "$T/stacked.st" --memory 48M -T 2 --part 2/3 --plan-only
grep -q 'experts.*(split)' "$T/out" || fail "no stacked tensor split between parts"
expect_exit 0 "$QSHARD" merge "$T/p.qs" "$T"/p.qs.part-*-of-3.qshard
cmp -s "$T/p.qs" "$T/stacked.qs" || fail "parts with per-expert Hessians differ from one run"
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/t3.qs" --scheme 'experts=gptq:bits=3' \
	--hessian "$T/stacked.st" --memory 48M -T 3
cmp -s "$T/t3.qs" "$T/stacked.qs" || fail "per-expert Hessians: -T 3 differs from -T 2"

expect_exit 3 "$QSHARD" convert "$T/ck" -o "$T/bad.qs" --scheme 'experts=gptq' \
	--hessian "$T/bad.st" --memory 48M
expect_err "bad.st': tensor 'model.layers.0.mlp.experts."
expect_err "(one per expert)"
# (the .partial keeps the tensors before it, as after any failed run)
[ ! -e "$T/bad.qs" ] || fail "a refused Hessian left a complete-looking output"
echo "PASS expert_hessian"

#!/bin/bash
# A second-order tensor's preparation runs on a worker (pipeline.c,
# tensor_prep.c): when it fails (a Hessian holding NaN), every chunk of the
# tensor fails with its message, the run exits 3 naming the file's tensor,
# no complete output appears, and the tensors before it are kept in the
# .partial; with the next tensors' preparations already queued behind it
# (-T 3, several states in the window at once) the run still ends.
. "$top_srcdir/tests/cli/lib.sh"
need_numpy

"$MKCKPT" --preset tiny --layers 2 -o "$T/ck" >/dev/null || fail mkckpt
"$PY" "$top_srcdir/tests/cli/mkhessian.py" "$T/ck/model.safetensors" "$T/h.safetensors" ||
	fail "writing Hessians"
bad=model.layers.1.self_attn.k_proj.weight
"$PY" - "$T/h.safetensors" "$bad" <<'PY' || fail "poisoning the Hessian"
import json, struct, sys
path, name = sys.argv[1], sys.argv[2]
with open(path, "r+b") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    t = json.loads(f.read(n))[name]
    cols = t["shape"][1]
    f.seek(8 + n + t["data_offsets"][0] + 4 * (3 * cols + 5))
    f.write(struct.pack("<f", float("nan")))
PY

for t in 1 3; do
	rm -f "$T/o.qshard" "$T/o.qshard.partial"
	expect_exit 3 "$QSHARD" convert "$T/ck" -o "$T/o.qshard" --progress none -T "$t" \
		--memory 64M --scheme 'layers=gptq:bits=3' --hessian "$T/h.safetensors"
	expect_err "tensor '$bad': Hessian holds NaN or Inf at [3, 5]"
	[ ! -e "$T/o.qshard" ] || fail "-T $t: a complete-looking output after a failed preparation"
	[ -e "$T/o.qshard.partial" ] || fail "-T $t: no .partial kept"
done
echo "PASS prep_failure"

#!/bin/bash
# --plan-only's time estimate for daq --hessian follows daq's cost, which
# is linear in the columns (the Hessian enters only in group-sized
# diagonal blocks, daq_qform.c), not the rows x cols^2 of gptq: per weight
# a 2048-column tensor is estimated like a 512-column one (the old model
# made it 4 times dearer), and the total is within 3x of the core-seconds
# (getrusage, --progress json) the real conversion spends.
. "$top_srcdir/tests/cli/lib.sh"
need_numpy

"$MKCKPT" --preset tiny --layers 1 --inter 2048 --vocab 256 -o "$T/ck" >/dev/null || fail mkckpt
"$PY" "$top_srcdir/tests/cli/mkhessian.py" "$T/ck/model.safetensors" "$T/h.safetensors" ||
	fail mkhessian
S=daq:iters=20
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/m.qshard" --plan-only --json -T 1 \
	--scheme "$S" --keep 'embed_tokens|lm_head' --hessian "$T/h.safetensors"
cp "$T/out" "$T/plan.json"
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/m.qshard" --progress json -T 1 \
	--scheme "$S" --keep 'embed_tokens|lm_head' --hessian "$T/h.safetensors"
grep '"event":"done"' "$T/out" > "$T/done.json" || fail "no done event: $(cat "$T/out")"
"$PY" - "$T/plan.json" "$T/done.json" <<'PY' || fail "estimate does not follow daq's cost"
import json, sys
plan = json.load(open(sys.argv[1]))
done = json.load(open(sys.argv[2]))
ns = {}
for t in plan["tensors"]:
    if t["name"].endswith(("up_proj.weight", "down_proj.weight")):
        ns[t["cols"]] = t["est_core_seconds"] * 1e9 / (t["rows"] * t["cols"])
assert set(ns) == {512, 2048}, ns
ratio = ns[2048] / ns[512]
assert 0.67 < ratio < 1.5, "ns per weight at 2048 cols / at 512: %.2f" % ratio
real = done["user_seconds"] + done["sys_seconds"]
est = plan["est_core_seconds"]
assert real / 3 < est < real * 3, "estimated %.2f core-s, the run took %.2f" % (est, real)
print("ns/weight %s, estimated %.2f core-s, real %.2f" % (ns, est, real))
PY
exit 0

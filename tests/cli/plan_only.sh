#!/bin/bash
# convert --plan-only: reads headers only, writes nothing, and its figures
# are the run's.  Per tensor the nominal size and chunk count are exactly
# what the real conversion writes, the Hessian state is cols^2 floats, the
# expected on-disk sizes are close; the predicted peak memory is within
# 10% of the peak RSS the real run reaches (getrusage, reported by convert
# --progress json), for rtn and for gptq with --hessian, at two --memory
# values each (the window, scheme state, zstd contexts, threads and the
# process itself all count).
. "$top_srcdir/tests/cli/lib.sh"
need_numpy

"$MKCKPT" --preset tiny -o "$T/ck" >/dev/null || fail mkckpt
"$PY" "$top_srcdir/tests/cli/mkhessian.py" "$T/ck/model.safetensors" "$T/h.safetensors" ||
	fail mkhessian
mkdir "$T/o"

# nothing written, not even a .partial or a lock
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/o/m.qshard" --plan-only
[ -z "$(ls -A "$T/o")" ] || fail "--plan-only wrote $(ls -A "$T/o")"
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/o/m.qshard" --plan-only --json
[ -z "$(ls -A "$T/o")" ] || fail "--plan-only --json wrote $(ls -A "$T/o")"
grep -q '^peak memory: ' <("$QSHARD" convert "$T/ck" -o "$T/o/m.qshard" --plan-only) ||
	fail "--plan-only table has no peak memory line"

# check NAME MEMORY ARGS...: plan, then convert for real, then compare
CK=$T/ck
check() {
	local name=$1 mem=$2
	shift 2
	expect_exit 0 "$QSHARD" convert "$CK" -o "$T/o/$name.qshard" --memory "$mem" -T 2 \
		"$@" --plan-only --json
	cp "$T/out" "$T/$name.plan"
	[ ! -e "$T/o/$name.qshard" ] && [ ! -e "$T/o/$name.qshard.partial" ] ||
		fail "$name: --plan-only wrote a file"
	expect_exit 0 "$QSHARD" convert "$CK" -o "$T/o/$name.qshard" --memory "$mem" -T 2 \
		"$@" --progress json
	cp "$T/out" "$T/$name.done"
	expect_exit 0 "$QSHARD" inspect "$T/o/$name.qshard" --json
	cp "$T/out" "$T/$name.inspect"
	"$PY" - "$T/$name.plan" "$T/$name.done" "$T/$name.inspect" \
		"$(wc -c <"$T/o/$name.qshard")" "$name" <<'PY' || fail "$name: plan and run disagree"
import json, sys
plan = json.load(open(sys.argv[1]))
done = json.loads(open(sys.argv[2]).read().splitlines()[-1])
got = {t["name"]: t for t in json.load(open(sys.argv[3]))["tensors"]}
size, name = int(sys.argv[4]), sys.argv[5]
assert len(plan["tensors"]) == len(got), (len(plan["tensors"]), len(got))
disk = 0
for t in plan["tensors"]:
    g = got[t["name"]]
    assert t["scheme"] == g["scheme"], (t["name"], t["scheme"], g["scheme"])
    assert t["nchunks"] == g["chunks"], (t["name"], t["nchunks"], g["chunks"])
    # nominal: the packed payload the run wrote, byte for byte
    want = g["payload_bytes"] if g["scheme"] != "raw" else g["source_bytes"]
    assert t["nominal_bytes"] == want, (t["name"], t["nominal_bytes"], want)
    assert t["memory_bytes"] == t["chunk_bytes"] + t["state_bytes"], t
    assert t["rows_per_chunk"] >= 1 and t["chunk_bytes"] > 0, t
    if t["scheme"].startswith("gptq"):
        assert t["hessian_bytes"] == 4 * t["cols"] ** 2, t
        assert t["state_bytes"] > t["hessian_bytes"], t  # Cholesky factor, work space
    else:
        assert t["state_bytes"] == 0, t
    disk += g["stored_bytes"]
    assert t["est_core_seconds"] >= 0, t
assert abs(plan["output_bytes"] - size) <= 0.10 * size, (plan["output_bytes"], size)
assert plan["nominal_bytes"] == sum(t["nominal_bytes"] for t in plan["tensors"])
peak, rss = plan["peak_bytes"], done["peak_rss_bytes"]
parts = plan["peak"]
assert peak == sum(parts.values()), (peak, parts)
assert plan["est_core_seconds"] > 0 and plan["est_wall_seconds"] > 0, plan
print(f"{name}: plan peak {peak / 2**20:.1f} MiB {parts}, measured {rss / 2**20:.1f} MiB "
      f"({100 * (peak - rss) / rss:+.1f}%); output {plan['output_bytes']} vs {size}")
assert abs(peak - rss) <= 0.10 * rss, "peak memory off by more than 10%"
PY
}
check rtn48 48M
check rtn96 96M
check gptq40 40M --scheme gptq --hessian "$T/h.safetensors"
check gptq64 64M --scheme gptq:bits=3 --hessian "$T/h.safetensors"
# stacked MoE experts with a Hessian each: prepared expert by expert
"$MKCKPT" --preset tiny --layers 3 --moe 8 --fused-experts -o "$T/moe" >/dev/null || fail mkckpt
"$PY" "$top_srcdir/tests/cli/mkexperthessian.py" stacked "$T/moe/model.safetensors" \
	"$T/moe-h.safetensors" || fail mkexperthessian
CK=$T/moe
check moe40 40M --scheme 'experts=gptq' --hessian "$T/moe-h.safetensors"
CK=$T/ck
"$PY" -c '
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
assert a["peak"]["ring"] < b["peak"]["ring"], "more --memory, the same ring"
assert a["peak"]["state"] > 0' "$T/gptq40.plan" "$T/gptq64.plan" || fail "gptq plans"

# inspect on a checkpoint shows the same plan: the same columns and values
# (but the measured ones: time, the process's resident size)
expect_exit 0 "$QSHARD" inspect "$T/ck" --json --memory 40M -T 2 --scheme gptq \
	--hessian "$T/h.safetensors"
"$PY" - "$T/out" "$T/gptq40.plan" <<'PY' || fail "inspect's plan differs from --plan-only's"
import json, sys
got, want = json.load(open(sys.argv[1]))["plan"], json.load(open(sys.argv[2]))
measured = {"est_core_seconds", "est_wall_seconds", "sample_seconds", "peak_bytes", "peak", "path"}
for k, v in want.items():
    if k == "tensors":
        for a, b in zip(got[k], v):
            assert {x: y for x, y in a.items() if x != "est_core_seconds"} == \
                   {x: y for x, y in b.items() if x != "est_core_seconds"}, (a, b)
    elif k not in measured:
        assert got[k] == v, (k, got[k], v)
assert got["peak"]["ring"] == want["peak"]["ring"] and got["peak"]["state"] == want["peak"]["state"]
PY
expect_exit 0 "$QSHARD" inspect "$T/ck" --memory 40M
grep -q '^model.layers.0.mlp.up_proj.weight .*rtn:bits=4,group=128 ' "$T/out" ||
	fail "inspect: no plan row for up_proj"
grep -q '^peak memory: .* MiB = ring ' "$T/out" || fail "inspect: no peak memory line"
grep -q '^estimated time: ' "$T/out" || fail "inspect: no estimated time line"
expect_exit 2 "$QSHARD" inspect "$T/o/rtn48.qshard" --memory 40M
expect_err "a qshard file has no plan"
echo "PASS plan_only"

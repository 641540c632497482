#!/bin/bash
# The summary and the "done" JSON event report the CPU cost (user + sys
# core-seconds) and the seconds each stage took, summed over threads: read
# wait, quantize, compress, hash, write.  A run that quantizes nothing
# spends (almost) nothing in the quantize stage.
. "$top_srcdir/tests/cli/lib.sh"
need_numpy

"$MKCKPT" --preset tiny --layers 2 --seed 4 -o "$T/ck" >/dev/null || fail "mkckpt"
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/a.qs" --scheme adpq:bits=3 --progress json -T 2
tail -n 1 "$T/out" >"$T/q.json"
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/b.qs" --keep '.' --progress json -T 2
tail -n 1 "$T/out" >"$T/raw.json"
"$PY" - "$T/q.json" "$T/raw.json" <<'PY' || fail "stage accounting"
import json, sys
q, r = (json.load(open(p)) for p in sys.argv[1:3])
for j in (q, r):
    assert j["event"] == "done"
    assert set(j["stages"]) == {"read_wait", "quantize", "compress", "hash", "write"}, j
    assert all(v >= 0 for v in j["stages"].values()), j
    assert j["user_seconds"] + j["sys_seconds"] > 0, j
# adpq costs CPU in the quantize stage; storing everything raw does not
assert q["stages"]["quantize"] > 0.01, q["stages"]
assert r["stages"]["quantize"] < q["stages"]["quantize"] / 4, (r["stages"], q["stages"])
assert q["stages"]["compress"] > 0 and q["stages"]["hash"] > 0, q["stages"]
print("stages", q["stages"], "raw", r["stages"])
PY
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/c.qs" --progress none
grep -q 'core-seconds (.* user + .* sys), .* per GB read; thread-seconds: read wait' "$T/out" ||
	fail "summary lacks the CPU cost line: $(cat "$T/out")"
echo "PASS stage_accounting"

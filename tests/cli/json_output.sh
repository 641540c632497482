#!/bin/bash
# Every JSON qshard prints is valid JSON whatever the paths hold: convert
# --progress json (one object per stderr line: progress events and
# notices) and its summary on stdout, and inspect --json, for an output
# path with a double quote, a backslash, a tab and bytes that are not
# UTF-8.  The values must round-trip: the summary's "output" and inspect's
# "path" are the path given.
. "$top_srcdir/tests/cli/lib.sh"

"$MKCKPT" --preset tiny --layers 1 -o "$T/ck" >/dev/null || fail mkckpt
dir="$T/a \"quoted\" \\dir"
mkdir -p "$dir"
out="$dir/out\"put	tab.qshard"
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$out" --progress json -T 2
"$PY" - "$out" "$T/out" "$T/err" <<'PY' || fail "convert --progress json: invalid JSON or wrong values"
import json, sys
path, out, err = sys.argv[1:4]
events = [json.loads(l) for l in open(err, encoding="ascii")]
assert events and all(e["event"] in ("progress", "notice") for e in events), events
last = [e for e in events if e["event"] == "progress"][-1]
assert last["tensors_done"] == last["tensors_total"] == 12, last
lines = open(out, encoding="ascii").read().splitlines()
assert len(lines) == 1, lines
done = json.loads(lines[0])
assert done["event"] == "done" and done["output"] == path, (done, path)
assert done["tensors"] == 12 and done["bpw"] > 4, done
PY
expect_exit 0 "$QSHARD" inspect "$out" --json
"$PY" -c 'import json, sys; d = json.load(open(sys.argv[2])); assert d["path"] == sys.argv[1], d["path"]; assert len(d["tensors"]) == 12' \
	"$out" "$T/out" || fail "inspect --json: invalid JSON or wrong path"

# a notice in json mode is an event, not a line of text
printf 'not json' >"$T/ck/config.json"
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$out" --progress json --force
"$PY" -c '
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
n = [e for e in ev if e["event"] == "notice"]
assert n and "config.json" in n[0]["message"], ev' "$T/err" || fail "notice not a JSON event"

# a path that is not UTF-8 still gives valid JSON (bytes become U+FFFD)
bad=$(printf '%s/bad\377name.qshard' "$T")
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$bad" --progress json
"$PY" -c 'import json, sys; d = json.loads(open(sys.argv[1]).read()); assert "\ufffd" in d["output"], d' \
	"$T/out" || fail "non-UTF-8 path: invalid JSON"
expect_exit 0 "$QSHARD" inspect "$bad" --json
"$PY" -c 'import json, sys; json.load(open(sys.argv[1]))' "$T/out" || fail "inspect: invalid JSON"
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$bad" --plan-only --json
"$PY" -c 'import json, sys; d = json.loads(open(sys.argv[1]).read()); assert "\ufffd" in d["path"], d["path"]' \
	"$T/out" || fail "--plan-only, non-UTF-8 path: invalid JSON"
# --plan-only --json: valid for the same path, the path round-trips, and
# it carries the plan's columns and totals (qshard-convert(1))
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$out" --plan-only --json
"$PY" - "$out" "$T/out" <<'PY' || fail "--plan-only --json: invalid JSON or fields missing"
import json, sys
path, out = sys.argv[1:3]
lines = open(out, encoding="ascii").read().splitlines()
assert len(lines) == 1, lines
p = json.loads(lines[0])
assert p["path"] == path, (p["path"], path)
for k in ("part", "parts", "tensors_total", "chunks", "chunks_total", "source_bytes", "hash_bytes",
          "cost", "total_cost", "share", "memory", "threads", "contexts", "nominal_bytes",
          "output_bytes", "peak_bytes", "est_core_seconds", "est_wall_seconds", "sample_seconds"):
    assert k in p, k
assert set(p["peak"]) == {"ring", "state", "zstd", "threads", "baseline"}, p["peak"]
assert len(p["tensors"]) == 12
for t in p["tensors"]:
    for k in ("name", "scheme", "rows", "cols", "nchunks", "chunks", "row_begin", "row_end",
              "source_bytes", "hash_bytes", "cost", "second_order", "rows_per_chunk",
              "chunk_bytes", "scratch_bytes", "state_bytes", "hessian_bytes",
              "importance_bytes", "memory_bytes", "nominal_bytes", "disk_bytes",
              "est_core_seconds"):
        assert k in t, (t["name"], k)
PY
# inspect on a checkpoint under such a path: the plan too
cp -r "$T/ck" "$dir/ck	\"x\""
expect_exit 0 "$QSHARD" inspect "$dir/ck	\"x\"" --json
"$PY" -c 'import json, sys; d = json.load(open(sys.argv[2])); assert d["path"] == sys.argv[1]; assert d["plan"]["path"] == sys.argv[1] + ".qshard"; assert len(d["plan"]["tensors"]) == 12' \
	"$dir/ck	\"x\"" "$T/out" || fail "inspect CHECKPOINT --json: invalid JSON or no plan"
echo "PASS json_output"

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
echo "PASS json_output"

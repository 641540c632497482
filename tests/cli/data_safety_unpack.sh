#!/bin/bash
# The data-safety contract of unpack and verify (issue 12): the output
# folder appears complete or not at all, never holds an input, is never
# written through a planted link and has one writer; verify --source names
# tensors missing on either side; dequantized values stay finite.
. "$top_srcdir/tests/cli/lib.sh"
. "$top_srcdir/tests/cli/safety_lib.sh"

"$MKCKPT" --preset tiny --layers 2 --shard-size 8M -o "$T/ck" >/dev/null || fail mkckpt
"$MKCKPT" --preset tiny --layers 1 --seed 7 -o "$T/other" >/dev/null || fail mkckpt
cp -a "$T/ck" "$T/ck.orig"
OPTS="-T 1 --memory 24M --progress none"
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/a.qs" $OPTS
expect_exit 0 "$QSHARD" convert "$T/other" -o "$T/b.qs" $OPTS

# --- 4. never over the source checkpoint; a failed unpack leaves the
# folder as it was, never a mixture of two models
case_4() {
	expect_exit 2 "$QSHARD" unpack "$T/a.qs" -o "$T/ck"
	expect_err "source checkpoint"
	expect_exit 2 "$QSHARD" unpack "$T/a.qs" -o "$T/ck" --force
	expect_err "source checkpoint"
	diff -r "$T/ck" "$T/ck.orig" >/dev/null || fail "case 4: the source checkpoint changed"
	# nor a folder holding the qshard file itself
	mkdir "$T/holds"
	cp "$T/a.qs" "$T/holds/a.qs"
	expect_exit 2 "$QSHARD" unpack "$T/holds/a.qs" -o "$T/holds" --force
	expect_err "holds the input"
	# a damaged file over an earlier unpack of another model
	expect_exit 0 "$QSHARD" unpack "$T/b.qs" -o "$T/u"
	sums "$T/u" >"$T/u.before"
	cp "$T/a.qs" "$T/bad.qs"
	size=$(stat -c %s "$T/bad.qs")
	printf '\xff\xff\xff\xff' | dd of="$T/bad.qs" bs=1 seek=$((size * 3 / 4)) conv=notrunc status=none
	expect_exit 6 "$QSHARD" unpack "$T/bad.qs" -o "$T/u"
	expect_err "not empty"
	expect_exit 4 "$QSHARD" unpack "$T/bad.qs" -o "$T/u" --force
	sums "$T/u" >"$T/u.after"
	cmp -s "$T/u.before" "$T/u.after" || fail "case 4: a failed unpack changed the folder:
$(diff "$T/u.before" "$T/u.after")"
	ls -A "$T" | grep -q '\.qshard-' && fail "case 4: temporary folder left: $(ls -A "$T")"
	# and a good one replaces it whole
	expect_exit 0 "$QSHARD" unpack "$T/a.qs" -o "$T/u" --force
	expect_exit 0 "$QSHARD" unpack "$T/a.qs" -o "$T/u2"
	diff -r "$T/u" "$T/u2" >/dev/null || fail "case 4: --force result differs from a fresh unpack"
	ls -A "$T" | grep -q '\.qshard-' && fail "case 4: temporary folder left: $(ls -A "$T")"
	# an empty folder needs no --force
	mkdir "$T/empty"
	expect_exit 0 "$QSHARD" unpack "$T/a.qs" -o "$T/empty"
	diff -r "$T/empty" "$T/u2" >/dev/null || fail "case 4: unpack into an empty folder differs"
}

# --- 1 (unpack): one writer per output folder, refused with exit 6 naming
# the holder's pid
case_lock() {
	mkdir "$T/lk"
	start_stopped_unpack() {
		"$QSHARD" unpack "$T/a.qs" -o "$T/lk" >"$T/bg.out" 2>"$T/bg.err" &
		PID=$!
		local i=0
		while ! compgen -G "$T/.lk.qshard-*" >/dev/null && [ $i -lt 200000 ]; do
			i=$((i + 1))
		done
		kill -STOP "$PID"
	}
	start_stopped_unpack
	expect_exit 6 "$QSHARD" unpack "$T/a.qs" -o "$T/lk"
	expect_err "pid $PID"
	expect_exit 6 "$QSHARD" unpack "$T/a.qs" -o "$T/lk" --force
	resume_bg
	[ "$BGRC" = 0 ] || fail "unpack lock: first writer exit $BGRC: $(cat "$T/bg.err")"
	expect_exit 0 "$QSHARD" unpack "$T/a.qs" -o "$T/lk-ref"
	diff -r "$T/lk" "$T/lk-ref" >/dev/null || fail "unpack lock: output differs"
}

# --- 6. verify --source names tensors on one side only
case_6() {
	"$PY" - "$T" <<'EOF' || fail "case 6: cannot write the checkpoints"
import json, struct, sys
def write(path, names):
    hdr, data = {}, b""
    for n in names:
        t = b"".join(struct.pack("<H", 0x3F80 + (i % 61)) for i in range(4 * 128))
        hdr[n] = {"dtype": "BF16", "shape": [4, 128], "data_offsets": [len(data), len(data) + len(t)]}
        data += t
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + data)
write(sys.argv[1] + "/A.safetensors", ["a.weight"])
write(sys.argv[1] + "/B.safetensors", ["a.weight", "b.weight"])
EOF
	expect_exit 0 "$QSHARD" convert "$T/A.safetensors" -o "$T/A.qs" $OPTS
	expect_exit 0 "$QSHARD" verify "$T/A.qs" --source "$T/A.safetensors"
	expect_exit 4 "$QSHARD" verify "$T/A.qs" --source "$T/B.safetensors"
	expect_err "tensor 'b.weight': in the source but absent from the file"
	expect_exit 0 "$QSHARD" convert "$T/B.safetensors" -o "$T/B.qs" $OPTS
	expect_exit 4 "$QSHARD" verify "$T/B.qs" --source "$T/A.safetensors"
	expect_err "tensor 'b.weight': missing in source"
}

# --- 7. links planted in the output folder are never written through
case_7() {
	echo victim >"$T/victim"
	mkdir "$T/ln"
	ln -s "$T/victim" "$T/ln/config.json"
	ln -s "$T/victim" "$T/ln/model-00001-of-00002.safetensors.partial"
	ln -s "$T/victim" "$T/ln/model-00001-of-00002.safetensors"
	expect_exit 6 "$QSHARD" unpack "$T/a.qs" -o "$T/ln"
	expect_exit 0 "$QSHARD" unpack "$T/a.qs" -o "$T/ln" --force
	[ "$(cat "$T/victim")" = victim ] || fail "case 7: written through a link"
	[ ! -L "$T/ln/config.json" ] && [ -f "$T/ln/config.json" ] || fail "case 7: config.json still a link"
	[ ! -e "$T/ln/model-00001-of-00002.safetensors.partial" ] || fail "case 7: planted link kept"
	# the output folder itself a link
	mkdir "$T/real"
	ln -s "$T/real" "$T/dirlink"
	expect_exit 1 "$QSHARD" unpack "$T/a.qs" -o "$T/dirlink"
	expect_err "symbolic link"
	[ -z "$(ls -A "$T/real")" ] || fail "case 7: written through a folder link"
}

# --- 9. an F16 source holding 65504 unpacks to finite f16 (clamped)
case_9() {
	"$PY" - "$T/f16.safetensors" <<'EOF' || fail "case 9: cannot write the checkpoint"
import json, struct, sys
vals = [0.0] * (2 * 128)
vals[0], vals[1], vals[130] = 65504.0, -1000.0, 65504.0
t = b"".join(struct.pack("<e", v) for v in vals)
h = json.dumps({"w": {"dtype": "F16", "shape": [2, 128], "data_offsets": [0, len(t)]}}).encode()
h += b" " * (-len(h) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + t)
EOF
	expect_exit 0 "$QSHARD" convert "$T/f16.safetensors" -o "$T/f16.qs" $OPTS
	expect_exit 0 "$QSHARD" unpack "$T/f16.qs" -o "$T/f16u" --dtype f16
	"$PY" - "$T/f16u/f16.safetensors" <<'EOF' || fail "case 9: unpack wrote a non-finite f16"
import json, math, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
vals = struct.unpack("<%de" % ((len(b) - 8 - n) // 2), b[8 + n:])
bad = [v for v in vals if math.isinf(v) or math.isnan(v)]
assert not bad, bad[:4]
assert max(vals) == 65504.0, max(vals)
EOF
}

for c in ${DS_CASES:-4 lock 6 7 9}; do
	case_$c
done
exit 0

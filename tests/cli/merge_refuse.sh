#!/bin/bash
# qshard merge refuses parts that do not make one conversion, naming the
# file: a stale part (input changed since), foreign parts (other options,
# another N, not a part at all), a part given twice, a missing part, an
# unfinished part, and a part whose data frame is damaged.  No refused merge
# leaves OUT or OUT.partial behind.
. "$top_srcdir/tests/cli/lib.sh"

"$MKCKPT" --preset tiny --layers 1 --vocab 1024 -o "$T/ck" >/dev/null || fail mkckpt
opts=(--memory 24M -T 1 --progress none --sync end)
for k in 1 2 3; do
	expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/p.qshard" "${opts[@]}" --part "$k/3"
done
P1=$T/p.part-1-of-3.qshard P2=$T/p.part-2-of-3.qshard P3=$T/p.part-3-of-3.qshard
no_output() {
	[ ! -e "$T/m.qshard" ] && [ ! -e "$T/m.qshard.partial" ] ||
		fail "a refused merge left an output behind ($1)"
}

# missing
expect_exit 6 "$QSHARD" merge "$T/m.qshard" "$P1" "$P3"
expect_err "part 2 of 3 is missing (expected 'm.part-2-of-3.qshard')"
no_output missing
# duplicated
expect_exit 6 "$QSHARD" merge "$T/m.qshard" "$P1" "$P2" "$P2" "$P3"
expect_err "part 2 of 3 given twice: 'p.part-2-of-3.qshard' and 'p.part-2-of-3.qshard'"
no_output duplicated
# foreign: other options
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/o.qshard" "${opts[@]}" --scheme rtn:bits=3 \
	--part 2/3
expect_exit 6 "$QSHARD" merge "$T/m.qshard" "$P1" "$T/o.part-2-of-3.qshard" "$P3"
expect_err "'o.part-2-of-3.qshard': foreign part: made with other options"
no_output "foreign options"
# foreign: another N
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/n.qshard" "${opts[@]}" --part 2/4
expect_exit 6 "$QSHARD" merge "$T/m.qshard" "$P1" "$T/n.part-2-of-4.qshard" "$P2" "$P3"
expect_err "'n.part-2-of-4.qshard': foreign part: part 2 of 4, but 'p.part-1-of-3.qshard' is part 1 of 3"
no_output "foreign N"
# not a part
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/whole.qshard" "${opts[@]}"
expect_exit 6 "$QSHARD" merge "$T/m.qshard" "$P1" "$P2" "$P3" "$T/whole.qshard"
expect_err "'whole.qshard': not a part file"
no_output "not a part"
# the output named like a part is refused before anything is touched
expect_exit 2 "$QSHARD" merge "$P1" "$P2" "$P3"
expect_err "is part 1 of 3: the first argument is the output"
cmp -s "$P1" "$T/p.part-1-of-3.qshard" || fail "merge touched a part"
# unfinished: only the .partial of part 3 exists
mv "$P3" "$P3.partial"
expect_exit 1 "$QSHARD" merge "$T/m.qshard" "$P1" "$P2" "$P3"
expect_err "'p.part-3-of-3.qshard': missing, and 'p.part-3-of-3.qshard.partial' is unfinished"
expect_exit 3 "$QSHARD" merge "$T/m.qshard" "$P1" "$P2" "$P3.partial"
expect_err "'p.part-3-of-3.qshard.partial': an unfinished part"
mv "$P3.partial" "$P3"
no_output unfinished
# stale: the checkpoint changed (touched) after parts 1 and 3 were made
cp -p "$P2" "$T/keep-p2"
sleep 0.02
touch "$T/ck/model.safetensors"
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/p.qshard" "${opts[@]}" --part 2/3 --force
expect_exit 6 "$QSHARD" merge "$T/m.qshard" "$P1" "$P2" "$P3"
expect_err "'p.part-2-of-3.qshard': stale part: made from another state of the input than 'p.part-1-of-3.qshard' (shard 'model.safetensors'"
no_output stale
cp -p "$T/keep-p2" "$P2"
# damaged: one flipped bit inside a data frame of part 2
expect_exit 0 "$QSHARD" merge "$T/m.qshard" "$P3" "$P1" "$P2"
rm -f "$T/m.qshard"
cp "$P2" "$T/p2-orig"
size=$(stat -c %s "$P2")
"$PY" - "$P2" "$((size / 2))" <<'PY'
import sys
p, off = sys.argv[1], int(sys.argv[2])
b = bytearray(open(p, "rb").read())
b[off] ^= 0x10
open(p, "wb").write(b)
PY
expect_exit 4 "$QSHARD" merge "$T/m.qshard" "$P1" "$P2" "$P3"
expect_err "'p.part-2-of-3.qshard': tensor '"
expect_err "checksum mismatch"
no_output damaged
cp "$T/p2-orig" "$P2"
expect_exit 0 "$QSHARD" merge "$T/m.qshard" "$P1" "$P2" "$P3"
echo "PASS merge_refuse"

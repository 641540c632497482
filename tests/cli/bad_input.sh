#!/bin/bash
# Bad input of each kind: a non-zero exit (never a crash), a message naming
# the file and the tensor, and no output file that looks complete.
. "$top_srcdir/tests/cli/lib.sh"
need_numpy

cases="short header_past_end header_huge not_json not_object unknown_dtype size_mismatch
past_end overlap hole trailing_data truncated metadata_nonstring nan index_missing_shard
index_absent_tensor index_two_shards index_escape"
n=0
for c in $cases; do
	d="$T/$c"
	read -r file tensor < <("$PY" "$top_srcdir/tests/cli/mkbad.py" "$c" "$d") ||
		fail "mkbad $c"
	"$QSHARD" convert "$d" -o "$T/$c.qshard" --progress none >"$T/out" 2>"$T/err"
	rc=$?
	[ "$rc" -ne 0 ] && [ "$rc" -lt 128 ] || fail "$c: exit $rc (want non-zero, no crash)"
	[ "$(wc -l <"$T/err")" -ge 1 ] || fail "$c: no message"
	# the file may be named by its path: match the name and closing quote
	grep -qF "$file'" "$T/err" || fail "$c: message does not name '$file': $(cat "$T/err")"
	if [ "$tensor" != "-" ]; then
		grep -qF "'$tensor'" "$T/err" || fail "$c: message does not name '$tensor': $(cat "$T/err")"
	fi
	[ ! -e "$T/$c.qshard" ] || fail "$c: output file created"
	# inspect validates the same way
	"$QSHARD" inspect "$d" >/dev/null 2>&1
	rc=$?
	if [ "$c" != nan ]; then
		[ "$rc" -ne 0 ] && [ "$rc" -lt 128 ] || fail "$c: inspect exit $rc"
	fi
	n=$((n + 1))
done
# NaN/Inf: refused with the count, leaving a .partial that --resume
# --allow-nonfinite continues
expect_exit 3 "$QSHARD" convert "$T/nan" -o "$T/nan.qshard" --progress none --force
expect_err "2 NaN/Inf"
[ -e "$T/nan.qshard.partial" ] && [ ! -e "$T/nan.qshard" ] || fail "nan: .partial expected"
expect_exit 0 "$QSHARD" convert "$T/nan" -o "$T/nan.qshard" --progress none --allow-nonfinite \
	--resume

# a damaged qshard file: verify names the tensor, exit 4
"$MKCKPT" --preset tiny --layers 1 -o "$T/tiny" >/dev/null || fail mkckpt
expect_exit 0 "$QSHARD" convert "$T/tiny" -o "$T/ok.qshard" --progress none
expect_exit 0 "$QSHARD" inspect "$T/ok.qshard" --json
# flip one byte in the middle of the file (inside some tensor's frames)
size=$(stat -c %s "$T/ok.qshard")
cp "$T/ok.qshard" "$T/bad.qshard"
printf '\xff' | dd of="$T/bad.qshard" bs=1 seek=$((size / 2)) conv=notrunc status=none
"$QSHARD" verify "$T/bad.qshard" >"$T/out" 2>"$T/err"
[ $? = 4 ] || fail "verify of a damaged file: exit code"
grep -q "tensor '" "$T/err" || fail "verify does not name the damaged tensor: $(cat "$T/err")"
# a truncated qshard file is refused by every reader
head -c $((size - 100)) "$T/ok.qshard" >"$T/trunc.qshard"
expect_exit 4 "$QSHARD" verify "$T/trunc.qshard"
"$QSHARD" unpack "$T/trunc.qshard" -o "$T/un" >/dev/null 2>&1
rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -lt 128 ] || fail "unpack of a truncated file: exit $rc"
echo "PASS bad_input ($n malformed checkpoints)"

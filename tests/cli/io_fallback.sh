#!/bin/bash
# io_uring refused (EPERM from a seccomp policy, or ENOSYS): convert falls
# back to pread with a one-line notice and writes the same bytes.
. "$top_srcdir/tests/cli/lib.sh"
NO_URING=$top_builddir/tests/cli/no_uring
"$NO_URING" true || { echo "SKIP: seccomp unavailable"; exit 77; }

"$MKCKPT" --preset tiny --layers 1 -o "$T/ck" >/dev/null || fail mkckpt
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/ref.qshard" --io pread --progress none
for e in EPERM ENOSYS; do
	arg=()
	[ "$e" = ENOSYS ] && arg=(ENOSYS)
	expect_exit 0 "$NO_URING" "${arg[@]}" "$QSHARD" convert "$T/ck" -o "$T/x.qshard" --progress none
	expect_err "io_uring unavailable"
	expect_err "pread"
	[ "$(grep -c . "$T/err")" = 1 ] || fail "$e: more than one line: $(cat "$T/err")"
	cmp -s "$T/ref.qshard" "$T/x.qshard" || fail "$e: output differs after fallback"
done
echo "PASS io_fallback"

#!/bin/bash
# valgrind-check.sh - a full convert -> verify -> unpack of a small synthetic
# checkpoint under valgrind memcheck.  Exits non-zero on any memory error or
# definite/indirect leak (`make memcheck`; top_builddir/top_srcdir set by
# make, or run from a build folder).
set -u
top_builddir=${top_builddir:-.}
QSHARD=$top_builddir/qshard
MKCKPT=$top_builddir/contrib/mkckpt/mkckpt
command -v valgrind >/dev/null || {
	echo "valgrind-check: valgrind not installed" >&2
	exit 2
}
[ -x "$QSHARD" ] && [ -x "$MKCKPT" ] || {
	echo "valgrind-check: build qshard and contrib/mkckpt/mkckpt first" >&2
	exit 2
}
T=$(mktemp -d "${TMPDIR:-/tmp}/qshard-memcheck.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT

# With shared libraries libtool makes qshard a wrapper script; valgrind
# must run the real binary.
real() {
	if [ "$(head -c 2 "$1")" = "#!" ] && [ -x "$(dirname "$1")/.libs/$(basename "$1")" ]; then
		export LD_LIBRARY_PATH="$top_builddir/.libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
		echo "$(dirname "$1")/.libs/$(basename "$1")"
	else
		echo "$1"
	fi
}
VG="valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect
	--show-leak-kinds=definite,indirect --track-origins=yes"
status=0
run() {
	echo "valgrind-check: $*"
	# shellcheck disable=SC2086
	$VG "$@" >"$T/out" 2>"$T/err"
	local rc=$?
	if [ "$rc" != 0 ]; then
		echo "valgrind-check: FAILED (exit $rc): $*" >&2
		cat "$T/err" >&2
		status=1
	fi
}

"$MKCKPT" --preset tiny --layers 2 -o "$T/ck" >/dev/null || {
	echo "valgrind-check: mkckpt failed" >&2
	exit 1
}
# io_uring's shared rings are invisible to memcheck: pread is used here so
# every byte read is tracked (QSHARD_SIMD=ref: valgrind emulates AVX poorly)
export QSHARD_SIMD=ref
real "$QSHARD" >/dev/null
q=$(real "$QSHARD")
# shellcheck disable=SC2086
run $q convert "$T/ck" -o "$T/ck.qshard" --progress none --io pread --memory 64M -T 2
# shellcheck disable=SC2086
[ -e "$T/ck.qshard" ] && run $q verify "$T/ck.qshard" --source "$T/ck"
# shellcheck disable=SC2086
[ -e "$T/ck.qshard" ] && run $q inspect "$T/ck.qshard"
# shellcheck disable=SC2086
[ -e "$T/ck.qshard" ] && run $q unpack "$T/ck.qshard" -o "$T/un"
[ -e "$T/ck.qshard" ] || status=1
[ "$status" = 0 ] && echo "valgrind-check: no errors, no leaks"
exit $status

# lib.sh - shared setup for the CLI tests (sourced).  automake runs each test
# with top_builddir and top_srcdir set; exit 77 means skipped.
set -u
: "${top_builddir:?run through make check}" "${top_srcdir:?run through make check}"
QSHARD=$top_builddir/qshard
# With the shared libqshard, libtool makes the build tree's qshard a wrapper
# script around .libs/qshard; hostile_input.sh alone runs qshard thousands
# of times, so call the binary itself with the library path set.
if [ -x "$top_builddir/.libs/qshard" ] && [ "$(head -c 2 "$QSHARD")" = "#!" ]; then
	QSHARD=$top_builddir/.libs/qshard
	export LD_LIBRARY_PATH=$top_builddir/.libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
MKCKPT=$top_builddir/contrib/mkckpt/mkckpt
PY=/usr/bin/python3
T=$(mktemp -d "${TMPDIR:-/tmp}/qshard-cli.XXXXXX")
trap 'rm -rf "$T"' EXIT

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

# expect_exit CODE CMD...: runs CMD with stdout/stderr in $T/out and $T/err
expect_exit() {
	local want=$1
	shift
	"$@" >"$T/out" 2>"$T/err"
	local got=$?
	[ "$got" = "$want" ] || fail "exit $got, expected $want: $*
stderr: $(cat "$T/err")"
}

# expect_err TEXT: the last command's stderr contains TEXT
expect_err() {
	grep -qF -- "$1" "$T/err" || fail "stderr lacks '$1': $(cat "$T/err")"
}

need_numpy() {
	"$PY" -c 'import numpy' 2>/dev/null || {
		echo "SKIP: python3-numpy not installed"
		exit 77
	}
}

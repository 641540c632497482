#!/bin/bash
# installcheck.sh - `make installcheck` (and so `make distcheck`): what a
# user gets from `make install` works as installed.  tests/api/read_every.c
# is compiled against the installed libqshard through
# `pkg-config --cflags --libs qshard` (nothing from the build tree), must
# load the installed libqshard.so.0, and must read every tensor of a
# checkpoint converted by the installed qshard exactly as the installed
# `qshard unpack` writes it.  The header, pkg-config file and man pages are
# in place.  The Makefile passes the install folders and tools.
set -u
: "${prefix:?}" "${bindir:?}" "${libdir:?}" "${includedir:?}" "${mandir:?}" "${pkgconfigdir:?}"
: "${top_srcdir:?}" "${top_builddir:?}" "${CC:?}" "${PKG_CONFIG:=pkg-config}"
D=${DESTDIR:-}
T=$(mktemp -d "${TMPDIR:-/tmp}/qshard-installcheck.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
fail() {
	echo "installcheck: FAIL: $*" >&2
	exit 1
}

for f in "$D$bindir/qshard" "$D$includedir/qshard.h" "$D$pkgconfigdir/qshard.pc" \
	"$D$libdir/libqshard.so.0" "$D$mandir/man1/qshard-cat.1" \
	"$D$mandir/man3/qs_qfile_read.3" "$D$mandir/man3/qs_qfile_read_rows.3"; do
	[ -e "$f" ] || fail "'$f' was not installed"
done

# with DESTDIR the .pc still names the configured prefix: point it there
export PKG_CONFIG_PATH=$D$pkgconfigdir
pcflags=()
[ -n "$D" ] && pcflags=(--define-variable=prefix="$D$prefix")
flags=$("$PKG_CONFIG" "${pcflags[@]}" --cflags --libs qshard) || fail "pkg-config qshard"
jansson=$("$PKG_CONFIG" --cflags --libs jansson) || fail "pkg-config jansson"
echo "installcheck: cc read_every.c $flags"
# shellcheck disable=SC2086
$CC -std=gnu11 -Wall -Wextra -Werror -o "$T/read_every" "$top_srcdir/tests/api/read_every.c" \
	$flags $jansson -pthread || fail "read_every.c does not build against the installed library"

export LD_LIBRARY_PATH=$D$libdir
ldd "$T/read_every" | grep -qF "$D$libdir/libqshard.so.0" ||
	fail "read_every does not load the installed libqshard: $(ldd "$T/read_every" | grep qshard)"

"$top_builddir/contrib/mkckpt/mkckpt" --preset tiny --layers 1 --seed 7 -o "$T/ck" >/dev/null ||
	fail mkckpt
"$D$bindir/qshard" convert "$T/ck" -o "$T/m.qshard" --memory 16M --progress none \
	--scheme 'mlp=adpq' >/dev/null || fail "installed qshard convert"
"$D$bindir/qshard" unpack "$T/m.qshard" -o "$T/un" --dtype bf16 >/dev/null ||
	fail "installed qshard unpack"
"$T/read_every" -T 2 "$T/m.qshard" "$T/un" bf16 || fail "read_every against the installed library"
echo "installcheck: PASS"

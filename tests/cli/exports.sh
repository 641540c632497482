#!/bin/bash
# libqshard.so exports exactly the functions include/qshard.h declares (no
# internal qs_ symbol leaks into the ABI, nothing the header promises is
# missing), under a versioned soname, and the qshard CLI links that shared
# library, so it can only use the public API.
. "$top_srcdir/tests/cli/lib.sh"
so=$top_builddir/.libs/libqshard.so
[ -f "$so" ] || { echo "SKIP: no shared libqshard (configured with --disable-shared)"; exit 77; }
for tool in nm readelf cc; do
	command -v $tool >/dev/null || { echo "SKIP: $tool not found"; exit 77; }
done
grep -q '^qs_cv_version_script=yes$' "$top_builddir/config.log" || {
	echo "SKIP: the linker takes no version script, so every symbol is exported"
	exit 77
}

# declarations: identifiers followed by '(' once comments and macros are gone
cc -E -P "$top_srcdir/include/qshard.h" >"$T/h.i" || fail "cannot preprocess qshard.h"
grep -oE '\bqs_[A-Za-z0-9_]+[[:space:]]*\(' "$T/h.i" | tr -d '( \t' | sort -u >"$T/declared"
[ -s "$T/declared" ] || fail "no declarations found in qshard.h"
# every defined dynamic symbol but the version node itself
nm -D --defined-only "$so" | awk '$2 != "A" { sub(/@.*/, "", $3); print $3 }' | sort -u \
	>"$T/exported"
diff -u "$T/declared" "$T/exported" >"$T/diff" ||
	fail "exported symbols differ from qshard.h (- declared only, + exported only):
$(cat "$T/diff")"
# versioned: every export belongs to a QSHARD_ node
nm -D --defined-only "$so" | awk '$2 != "A" && $3 !~ /@@QSHARD_/ { print; bad = 1 } END { exit bad }' ||
	fail "unversioned exports above"

# every public function has its man page (a call group's, or a .so link to it)
while read -r sym; do
	[ -f "$top_srcdir/man/$sym.3" ] || fail "no man page man/$sym.3 for $sym"
	grep -qF -- "man/$sym.3" "$top_srcdir/Makefile.am" || fail "man/$sym.3 is not installed"
done <"$T/declared"

readelf -d "$so" | grep -q 'SONAME.*\[libqshard\.so\.0\]' ||
	fail "soname is not libqshard.so.0: $(readelf -d "$so" | grep SONAME)"
cli=$top_builddir/.libs/qshard
[ -x "$cli" ] || cli=$top_builddir/qshard
readelf -d "$cli" | grep -q 'NEEDED.*\[libqshard\.so\.0\]' ||
	fail "qshard does not link the shared libqshard"
echo "PASS exports ($(wc -l <"$T/declared") symbols)"

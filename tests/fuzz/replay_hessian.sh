#!/bin/sh
# Replays the hessian harness over its seeds and every saved regression input
# (a crash fails the test; the sanitizer build catches memory errors).
: "${top_builddir:?run through make check}" "${top_srcdir:?run through make check}"
exec "$top_builddir/tests/fuzz/replay_hessian" "$top_srcdir/tests/fuzz/corpus/hessian" \
	"$top_srcdir/tests/fuzz/regress/hessian"

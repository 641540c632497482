#!/bin/sh
# Replays the importance harness over its seeds and every saved regression input
# (a crash fails the test; the sanitizer build catches memory errors).
: "${top_builddir:?run through make check}" "${top_srcdir:?run through make check}"
exec "$top_builddir/tests/fuzz/replay_importance" "$top_srcdir/tests/fuzz/corpus/importance" \
	"$top_srcdir/tests/fuzz/regress/importance"

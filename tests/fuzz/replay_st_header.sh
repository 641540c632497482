#!/bin/sh
# Replays the st_header harness over its seeds and every saved regression input
# (a crash fails the test; the sanitizer build catches memory errors).
: "${top_builddir:?run through make check}" "${top_srcdir:?run through make check}"
exec "$top_builddir/tests/fuzz/replay_st_header" "$top_srcdir/tests/fuzz/corpus/st_header" \
	"$top_srcdir/tests/fuzz/regress/st_header"

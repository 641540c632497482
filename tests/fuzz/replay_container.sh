#!/bin/sh
# Replays the container harness over its seeds and every saved regression input
# (a crash fails the test; the sanitizer build catches memory errors).
: "${top_builddir:?run through make check}" "${top_srcdir:?run through make check}"
exec "$top_builddir/tests/fuzz/replay_container" "$top_srcdir/tests/fuzz/corpus/container" \
	"$top_srcdir/tests/fuzz/regress/container"

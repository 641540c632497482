#!/bin/bash
# A small run of contrib/bench/torture-resume: conversions killed with
# SIGKILL at random moments resume to byte-identical files.
. "$top_srcdir/tests/cli/lib.sh"
BUILD=$top_builddir BENCH_DIR=$T TORTURE_LAYERS=2 \
	bash "$top_srcdir/contrib/bench/torture-resume" 4 || fail "torture-resume"

#!/bin/sh
# bench-gptq.sh - second-order schemes (contrib/bench/bench-gptq.c): output
# SQNR of rtn/adpq/gptq/athena at 3 bits with their bpw, gptq's block-update
# speed against plain cblas_sgemm, and the 70B memory figures.
#
# usage: contrib/bench/bench-gptq.sh [quick]
# env:   BUILD (default build/ next to contrib/)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${BUILD:-$here/../../build}
bin=$build/contrib/bench/bench-gptq
if [ ! -x "$bin" ]; then
	make -C "$build" contrib/bench/bench-gptq >&2
fi
exec "$bin" "$@"

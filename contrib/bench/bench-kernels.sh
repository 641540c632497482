#!/bin/sh
# bench-kernels.sh - kernel quality/speed table (contrib/bench/bench-kernels.c)
# on a synthetic 1b checkpoint (2 layers), generated on first use.
#
# usage: contrib/bench/bench-kernels.sh [bench-kernels options: -r ROWS -t SECONDS -s SPEC -a]
# env:   BUILD (default build/ next to contrib/), CKPT (default $TMPDIR/qshard-bench-1b-2l)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${BUILD:-$here/../../build}
bin=$build/contrib/bench/bench-kernels
mk=$build/contrib/mkckpt/mkckpt
if [ ! -x "$bin" ] || [ ! -x "$mk" ]; then
	make -C "$build" contrib/bench/bench-kernels contrib/mkckpt/mkckpt >&2
fi
ckpt=${CKPT:-${TMPDIR:-/tmp}/qshard-bench-1b-2l}
if [ ! -f "$ckpt/model.safetensors" ]; then
	"$mk" --preset 1b --layers 2 --tie-embeddings -o "$ckpt" >&2
fi
exec "$bin" "$ckpt" "$@"

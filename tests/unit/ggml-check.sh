#!/bin/sh
# ggml-check.sh - runs ggml_check (the gguf scheme's payloads against
# libggml-base's own dequantization and quantizer) with the libggml-base.so
# that node-llama-cpp ships: $QSHARD_GGML_BASE, or where
# contrib/quickstart.sh installs @node-llama-cpp/linux-x64.  Exit 77
# (skipped) when no such library is present.
set -eu

builddir=${top_builddir:-.}
lib=${QSHARD_GGML_BASE:-}
if [ -z "$lib" ]; then
	for prefix in /opt/node-llama-cpp "${HOME:-/nonexistent}/.cache/qshard/node-llama-cpp"; do
		cand="$prefix/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so"
		if [ -f "$cand" ]; then
			lib=$cand
			break
		fi
	done
fi
if [ -z "$lib" ] || [ ! -f "$lib" ]; then
	echo "ggml-check: no libggml-base.so (set QSHARD_GGML_BASE or run contrib/quickstart.sh), skipped"
	exit 77
fi
exec "$builddir/tests/unit/ggml_check" "$lib"

#!/bin/sh
# Replays the gguf_meta harness (--vocab-from GGUF metadata, tokenizer.json)
# over its seeds and every saved regression input (a crash fails the test;
# the sanitizer build catches memory errors).
: "${top_builddir:?run through make check}" "${top_srcdir:?run through make check}"
exec "$top_builddir/tests/fuzz/replay_gguf_meta" "$top_srcdir/tests/fuzz/corpus/gguf_meta" \
	"$top_srcdir/tests/fuzz/regress/gguf_meta"

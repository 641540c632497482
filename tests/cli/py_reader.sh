#!/bin/bash
# The Python binding (contrib/python/qshard) over the build tree's
# libqshard: tests/cli/py_reader.py compares every read with `qshard
# unpack` output bit for bit, and checks damage handling and load_torch.
. "$top_srcdir/tests/cli/lib.sh"
need_numpy
lib=$top_builddir/.libs/libqshard.so.0
[ -f "$lib" ] || { echo "SKIP: no shared libqshard (configured with --disable-shared)"; exit 77; }
# python itself is no sanitizer build: ASan refuses to start when its
# runtime is not the first library loaded
if ldd "$lib" | grep -qE 'lib(asan|ubsan|tsan)'; then
	echo "SKIP: libqshard is a sanitizer build, which python cannot load"
	exit 77
fi
READ=$top_builddir/tests/api/read_every

"$MKCKPT" --preset tiny --layers 2 --shard-size 12M --seed 9 -o "$T/ck" >/dev/null || fail mkckpt
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/m.qshard" --progress none --memory 16M \
	--scheme 'mlp\.up=adpq' --scheme 'mlp\.down=daq' --keep embed_tokens
for dt in f32 bf16; do
	expect_exit 0 "$QSHARD" unpack "$T/m.qshard" -o "$T/un-$dt" --dtype "$dt"
done
victim=model.layers.0.mlp.down_proj.weight
cp "$T/m.qshard" "$T/bad.qshard"
expect_exit 0 "$READ" --locate "$T/bad.qshard" "$victim" 0
read -r off size <"$T/out"
"$PY" -c 'import sys; f = open(sys.argv[1], "r+b"); f.seek(int(sys.argv[2])); b = f.read(1)[0]; f.seek(int(sys.argv[2])); f.write(bytes([b ^ 4]))' \
	"$T/bad.qshard" $((off + size / 2)) || fail flip

QSHARD_LIBRARY=$lib PYTHONPATH=$top_srcdir/contrib/python \
	"$PY" "$top_srcdir/tests/cli/py_reader.py" "$T/m.qshard" "$T/un-f32" "$T/un-bf16" \
	"$T/bad.qshard" "$victim" || fail "py_reader.py"
echo "PASS py_reader"

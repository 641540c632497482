#!/bin/bash
# libqshard as a loader (qs_qfile_read(3)): a client program using only
# include/qshard.h reads every tensor of a converted mkckpt checkpoint,
# whole and in row ranges across chunk boundaries, from 4 threads sharing
# one open file, and gets exactly the bytes `qshard unpack` writes, for each
# output dtype and for several schemes; a flipped bit in one chunk fails
# that tensor's read with its name and the chunk, and every other tensor
# still reads.
. "$top_srcdir/tests/cli/lib.sh"
READ=$top_builddir/tests/api/read_every

# two shards, several chunks per tensor (--memory 16M), raw tensors (norms,
# --keep embed_tokens) and one rule per scheme that needs no statistics
"$MKCKPT" --preset tiny --layers 2 --shard-size 10M --seed 11 -o "$T/ck" >/dev/null ||
	fail mkckpt
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/m.qshard" --progress none --memory 16M \
	--scheme 'mlp\.up=adpq' --scheme 'mlp\.down=daq:format=nf4' \
	--scheme 'self_attn\.o=claq' --scheme 'lm_head=rtn:bits=8,group=64' \
	--keep embed_tokens
expect_exit 0 "$QSHARD" inspect "$T/m.qshard" --json
"$PY" - "$T/out" <<'PY' || fail "the test file lacks the variety it needs"
import json, sys
t = json.load(open(sys.argv[1]))["tensors"]
schemes = {x["scheme"].split(":")[0] for x in t}
assert {"raw", "rtn", "adpq", "daq", "claq"} <= schemes, schemes
assert any(x["chunks"] > 2 and x["scheme"] != "raw" for x in t), "no multi-chunk tensor"
assert any(x["chunks"] > 2 and x["scheme"] == "raw" for x in t), "no multi-chunk raw tensor"
PY

for dt in f32 bf16 f16; do
	expect_exit 0 "$QSHARD" unpack "$T/m.qshard" -o "$T/un-$dt" --dtype "$dt"
	expect_exit 0 "$READ" -T 4 "$T/m.qshard" "$T/un-$dt" "$dt"
	grep -q ', 0 failures' "$T/out" || fail "$dt: $(cat "$T/out" "$T/err")"
	echo "$dt: $(cat "$T/out")"
done

# FP8 block-scaled MoE experts (dequantized in convert, one FP8 weight and
# its scale kept raw as F8_E4M3/F32) and 3-D stacked MXFP4 experts
"$MKCKPT" --preset tiny --layers 1 --dtype fp8 --moe 3 --seed 12 -o "$T/fp8" >/dev/null ||
	fail "mkckpt fp8"
expect_exit 0 "$QSHARD" convert "$T/fp8" -o "$T/fp8.qshard" --progress none --memory 16M \
	--keep 'layers\.0\.self_attn\.q_proj\.weight'
"$MKCKPT" --preset tiny --layers 1 --moe 3 --fused-experts --mxfp4 --seed 13 -o "$T/mx" \
	>/dev/null || fail "mkckpt mxfp4"
expect_exit 0 "$QSHARD" convert "$T/mx" -o "$T/mx.qshard" --progress none --memory 16M
for f in fp8 mx; do
	expect_exit 0 "$QSHARD" inspect "$T/$f.qshard" --json
	grep -q '"F8_E4M3"\|"MXFP4"' "$T/out" || fail "$f: no FP8/MXFP4 tensor in the file"
	expect_exit 0 "$QSHARD" unpack "$T/$f.qshard" -o "$T/un-$f" --dtype bf16
	expect_exit 0 "$READ" -T 2 "$T/$f.qshard" "$T/un-$f" bf16
	grep -q ', 0 failures' "$T/out" || fail "$f: $(cat "$T/out" "$T/err")"
	echo "$f: $(cat "$T/out")"
done

# one flipped bit in the middle of chunk 1 of a tensor
victim=model.layers.1.mlp.up_proj.weight
cp "$T/m.qshard" "$T/bad.qshard"
expect_exit 0 "$READ" --locate "$T/bad.qshard" "$victim" 1
read -r off size <"$T/out"
"$PY" - "$T/bad.qshard" $((off + size / 2)) <<'PY' || fail "cannot flip a bit"
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2]))
    b = f.read(1)[0]
    f.seek(int(sys.argv[2]))
    f.write(bytes([b ^ 0x10]))
PY
expect_exit 0 "$READ" -T 3 "$T/bad.qshard" "$T/un-f32" f32 "$victim"
grep -q ', 0 failures' "$T/out" || fail "damaged file: $(cat "$T/out" "$T/err")"
grep -qF "tensor '$victim': chunk 1: frame checksum mismatch" "$T/out" ||
	fail "the error does not name the tensor and chunk: $(cat "$T/out")"
# and the test fails when the damage is not reported: the intact file,
# told the same tensor is damaged, is a failure
expect_exit 1 "$READ" "$T/m.qshard" "$T/un-f32" f32 "$victim"
echo "PASS lib_read"

#!/bin/sh
# Side files: convert carries config.json's companions (tokenizer files,
# generation_config.json) in the header, verify covers them, unpack gives
# them back byte for byte; a version 1 file (tests/data/format1.qshard,
# written before side files existed) still verifies, inspects and unpacks
# to the bytes it did then.
. "$top_srcdir/tests/cli/lib.sh"

"$PY" - "$T/ck" <<'PYEOF'
import json, os, struct, sys
d = sys.argv[1]
os.makedirs(d, exist_ok=True)
raw = struct.pack("<16f", *([0.5] * 16))
hdr = json.dumps({"a.weight": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}}).encode()
hdr += b" " * ((8 - (8 + len(hdr)) % 8) % 8)
open(os.path.join(d, "model.safetensors"), "wb").write(struct.pack("<Q", len(hdr)) + hdr + raw)
PYEOF
printf '{"architectures": ["LlamaForCausalLM"]}\n' >"$T/ck/config.json"
printf '{"model": {"type": "BPE"}}\n' >"$T/ck/tokenizer.json"
printf '{"add_bos_token": true}' >"$T/ck/tokenizer_config.json"
printf '{"bos_token_id": 1}\n' >"$T/ck/generation_config.json"
# tokenizer.model is a binary protobuf: NUL bytes must survive
printf '\n\000\377\000x' >"$T/ck/tokenizer.model"

expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/m.qshard"
expect_exit 0 "$QSHARD" verify "$T/m.qshard"
expect_exit 0 "$QSHARD" unpack "$T/m.qshard" -o "$T/un"
for f in tokenizer.json tokenizer_config.json generation_config.json tokenizer.model; do
	cmp "$T/ck/$f" "$T/un/$f" || fail "$f not carried byte for byte"
done
[ -e "$T/un/special_tokens_map.json" ] && fail "unpack invented special_tokens_map.json"

# the side files are covered by the header checksum: flip a byte of the
# tokenizer text inside the file and verify names the header
off=$(grep -abo '"BPE"' "$T/m.qshard" | head -n 1 | cut -d: -f1)
[ -n "$off" ] || fail "tokenizer.json text not found in the header"
cp "$T/m.qshard" "$T/bad.qshard"
printf 'X' | dd of="$T/bad.qshard" bs=1 seek=$((off + 1)) conv=notrunc 2>/dev/null
expect_exit 4 "$QSHARD" verify "$T/bad.qshard"
expect_err "header"

# a side file that exists but cannot be read whole stops convert
rm -f "$T/ck/special_tokens_map.json"
mkdir "$T/ck/special_tokens_map.json"
expect_exit 3 "$QSHARD" convert "$T/ck" -o "$T/m2.qshard"
expect_err "special_tokens_map.json"
rmdir "$T/ck/special_tokens_map.json"

# version 1
V1=$top_srcdir/tests/data/format1.qshard
expect_exit 0 "$QSHARD" verify "$V1"
expect_exit 0 "$QSHARD" inspect "$V1"
grep -q 'model.layers.0.mlp.up_proj.weight' "$T/out" || fail "inspect of version 1 lists no tensor"
expect_exit 0 "$QSHARD" unpack "$V1" -o "$T/v1" --dtype f32
echo "b6222a0415c2788284bae53bc9e13002b0c65ff38fc5dbd30ab71a397c9762ef  $T/v1/model.safetensors" |
	sha256sum -c --quiet || fail "version 1 file unpacks to other bytes than before"
grep -q LlamaForCausalLM "$T/v1/config.json" || fail "version 1 config.json lost"
exit 0

#!/bin/bash
# qshard cat: one tensor's values on stdout are exactly the bytes unpack
# writes for it (whole, --rows ranges, every --dtype, raw tensors as
# stored); bad names, rows and dtypes are refused with a message naming the
# file and tensor; a damaged chunk fails with exit 4 naming tensor and chunk.
. "$top_srcdir/tests/cli/lib.sh"
READ=$top_builddir/tests/api/read_every

"$MKCKPT" --preset tiny --layers 1 --seed 4 -o "$T/ck" >/dev/null || fail mkckpt
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/m.qshard" --progress none --memory 16M \
	--keep embed_tokens
w=model.layers.0.mlp.gate_proj.weight   # 1280 x 512, several chunks
e=model.embed_tokens.weight              # raw bf16, 4096 x 512
n=model.norm.weight                      # raw bf16, 512
for dt in f32 bf16 f16; do
	expect_exit 0 "$QSHARD" unpack "$T/m.qshard" -o "$T/un-$dt" --dtype "$dt"
done

# extract NAME [FROM COUNT] from an unpacked safetensors file: rows FROM to
# FROM+COUNT-1 (a row being the last dimension)
st_slice() {
	"$PY" - "$@" <<'PY'
import json, struct, sys
path, name = sys.argv[1], sys.argv[2]
with open(path, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    h = json.loads(f.read(n))
    t = h[name]
    b, e = t["data_offsets"]
    row = (e - b) // max(1, (1 if len(t["shape"]) < 2 else
                            __import__("math").prod(t["shape"][:-1])))
    if len(sys.argv) > 3:
        b, e = b + int(sys.argv[3]) * row, b + (int(sys.argv[3]) + int(sys.argv[4])) * row
    f.seek(8 + n + b)
    sys.stdout.buffer.write(f.read(e - b))
PY
}

for dt in f32 bf16 f16; do
	un=$T/un-$dt/model.safetensors
	"$QSHARD" cat "$T/m.qshard" "$w" --dtype "$dt" >"$T/got" || fail "cat $w --dtype $dt"
	st_slice "$un" "$w" >"$T/want"
	cmp -s "$T/got" "$T/want" || fail "$w as $dt differs from unpack's"
	# a range that starts and ends inside chunks
	"$QSHARD" cat "$T/m.qshard" "$w" --dtype "$dt" --rows 301:1000 >"$T/got" || fail "--rows"
	st_slice "$un" "$w" 301 699 >"$T/want"
	cmp -s "$T/got" "$T/want" || fail "$w rows 301:1000 as $dt differ from unpack's"
done
# default: f32 for quantized tensors
"$QSHARD" cat "$T/m.qshard" "$w" >"$T/got" || fail "cat"
st_slice "$T/un-f32/model.safetensors" "$w" | cmp -s - "$T/got" || fail "default is not f32"
# raw tensors as stored by default, converted with --dtype
"$QSHARD" cat "$T/m.qshard" "$e" --rows 4000: >"$T/got" || fail "cat raw"
st_slice "$T/un-f32/model.safetensors" "$e" 4000 96 | cmp -s - "$T/got" || fail "raw rows"
[ "$(stat -c %s "$T/got")" = $((96 * 512 * 2)) ] || fail "raw tensor not as stored (bf16)"
"$QSHARD" cat "$T/m.qshard" "$n" --dtype f32 >"$T/got" || fail "cat raw --dtype f32"
"$PY" - "$T/got" "$T/un-f32/model.safetensors" <<'PY' || fail "bf16 -> f32 of a raw tensor"
import json, struct, sys
got = open(sys.argv[1], "rb").read()
with open(sys.argv[2], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    t = json.loads(f.read(n))["model.norm.weight"]
    f.seek(8 + n + t["data_offsets"][0])
    raw = f.read(t["data_offsets"][1] - t["data_offsets"][0])
# bf16 widens to f32 by appending 16 zero bits
want = b"".join(b"\0\0" + raw[i:i + 2] for i in range(0, len(raw), 2))
assert got == want
PY
"$QSHARD" cat "$T/m.qshard" "$w" --rows :0 >"$T/got" || fail "empty range"
[ ! -s "$T/got" ] || fail ":0 wrote bytes"

# refusals
expect_exit 2 "$QSHARD" cat "$T/m.qshard" no.such.tensor
expect_err "'$T/m.qshard': no tensor 'no.such.tensor'"
expect_exit 2 "$QSHARD" cat "$T/m.qshard" "$w" --rows 0:1281
expect_err "tensor '$w' has 1280 rows"
expect_exit 2 "$QSHARD" cat "$T/m.qshard" "$w" --rows 5:4
expect_exit 2 "$QSHARD" cat "$T/m.qshard" "$w" --rows 12
expect_err "--rows must be"
expect_exit 2 "$QSHARD" cat "$T/m.qshard" "$w" --dtype f64
expect_exit 2 "$QSHARD" cat "$T/m.qshard"
if [ -w /dev/tty ] && { : >/dev/tty; } 2>/dev/null; then
	"$QSHARD" cat "$T/m.qshard" "$w" >/dev/tty 2>"$T/err" && fail "wrote binary to a terminal"
	expect_err "terminal"
fi

# damage in chunk 2 of w: exit 4, tensor and chunk named, and the other
# tensors still cat fine
cp "$T/m.qshard" "$T/bad.qshard"
expect_exit 0 "$READ" --locate "$T/bad.qshard" "$w" 2
read -r off size <"$T/out"
"$PY" -c 'import sys; f = open(sys.argv[1], "r+b"); f.seek(int(sys.argv[2])); b = f.read(1)[0]; f.seek(int(sys.argv[2])); f.write(bytes([b ^ 1]))' \
	"$T/bad.qshard" $((off + size / 3)) || fail flip
expect_exit 4 "$QSHARD" cat "$T/bad.qshard" "$w"
expect_err "tensor '$w': chunk 2: frame checksum mismatch"
expect_exit 0 "$QSHARD" cat "$T/bad.qshard" "$e"
# rows before the damaged chunk still read
expect_exit 0 "$QSHARD" cat "$T/bad.qshard" "$w" --rows 0:1
echo "PASS cat"

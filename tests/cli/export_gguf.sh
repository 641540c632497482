#!/bin/sh
# qshard export without llama.cpp: the GGUF structure and metadata read back
# by an independent reader (gguf_read.py), rtn g32 as exact Q4_1 (equal to
# the f32 export value for value), the q/k row permutation against the
# unpacked checkpoint, requantization notices, --no-vocab, --vocab-from,
# determinism, a killed or stale .partial started over to the same bytes,
# the .partial lock, and no overwriting of the input.
. "$top_srcdir/tests/cli/lib.sh"
G="$PY $top_srcdir/tests/cli/gguf_read.py"

"$MKCKPT" --preset tiny --layers 1 --vocab 512 -o "$T/ck" >/dev/null || fail "mkckpt"
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/m.qshard" --scheme rtn:bits=4,group=32
expect_exit 0 "$QSHARD" export "$T/m.qshard" -o "$T/m.gguf"
grep -q 'requantized from' "$T/out" && fail "rtn g32 was requantized: $(cat "$T/out")"
[ -e "$T/m.gguf.partial" ] && fail ".partial left after success"

$G tensors "$T/m.gguf" >"$T/tensors" || fail "gguf_read cannot read the export"
grep -q '^blk.0.attn_q.weight Q4_1 \[512, 512\]' "$T/tensors" || fail "attn_q: $(cat "$T/tensors")"
grep -q '^blk.0.attn_k.weight Q4_1 \[512, 256\]' "$T/tensors" || fail "attn_k not Q4_1"
grep -q '^token_embd.weight Q4_1 \[512, 512\]' "$T/tensors" || fail "token_embd"
grep -q '^blk.0.attn_norm.weight F32 \[512\]' "$T/tensors" || fail "norms must be F32"
grep -q '^output.weight Q4_1' "$T/tensors" || fail "lm_head"
[ "$(wc -l <"$T/tensors")" = 12 ] || fail "expected 12 tensors: $(cat "$T/tensors")"

$G kv "$T/m.gguf" >"$T/kv" || fail "kv"
"$PY" - "$T/kv" <<'PYEOF' || fail "metadata: $(cat "$T/kv")"
import json, sys
d = json.load(open(sys.argv[1]))
kv = d["kv"]
want = {"general.architecture": "llama", "general.alignment": 32, "general.file_type": 3,
        "general.quantization_version": 2, "general.name": "m",
        "llama.block_count": 1, "llama.embedding_length": 512, "llama.feed_forward_length": 1280,
        "llama.attention.head_count": 8, "llama.attention.head_count_kv": 4,
        "llama.rope.dimension_count": 64, "llama.context_length": 8192, "llama.vocab_size": 512,
        "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "gpt-2",
        "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
        "tokenizer.ggml.unknown_token_id": 0, "tokenizer.ggml.add_bos_token": True,
        "tokenizer.ggml.add_eos_token": False}
assert d["version"] == 3, d["version"]
for k, v in want.items():
    assert kv.get(k) == v, (k, kv.get(k), v)
assert abs(kv["llama.attention.layer_norm_rms_epsilon"] - 1e-5) < 1e-10
assert kv["llama.rope.freq_base"] == 500000.0
assert kv["tokenizer.ggml.tokens"]["len"] == 512
assert kv["tokenizer.ggml.tokens"]["head"][:4] == ["<unk>", "<s>", "</s>", "\u0100"]
assert kv["tokenizer.ggml.token_type"]["head"][:4] == [3, 3, 3, 1]
assert kv["tokenizer.ggml.merges"]["len"] == 512 - 259
assert kv["tokenizer.ggml.merges"]["head"][0] == "\u0120 \u0120"
assert "messages" in kv["tokenizer.chat_template"]
PYEOF

# exact: every Q4_1 block dequantizes (as ggml defines Q4_1) to the f32
# export, which is qshard's own dequantization
expect_exit 0 "$QSHARD" export "$T/m.qshard" -o "$T/f32.gguf" --type f32
grep -q "tensor 'model.layers.0.self_attn.q_proj.weight': dequantized from rtn:bits=4,group=32 to f32" "$T/out" ||
	fail "--type f32 does not say it dequantizes"
$G same "$T/m.gguf" "$T/f32.gguf" >"$T/same" || fail "Q4_1 differs from f32: $(cat "$T/same")"

# the permutation: GGUF attn_q row h*64 + 2i + j is HF row h*64 + 32j + i
expect_exit 0 "$QSHARD" unpack "$T/m.qshard" -o "$T/un" --dtype f32
"$PY" - "$top_srcdir/tests/cli" "$T/f32.gguf" "$T/un/model.safetensors" <<'PYEOF' || fail "q/k permutation"
import json, struct, sys
sys.path.insert(0, sys.argv[1])
import gguf_read as g
b, _, kv, ts, data = g.parse(sys.argv[2])
st = open(sys.argv[3], "rb").read()
n = struct.unpack_from("<Q", st)[0]
hdr = json.loads(st[8:8 + n])
for hf, gg, heads in (("model.layers.0.self_attn.q_proj.weight", "blk.0.attn_q.weight", 8),
                      ("model.layers.0.self_attn.k_proj.weight", "blk.0.attn_k.weight", 4),
                      ("model.layers.0.self_attn.v_proj.weight", "blk.0.attn_v.weight", 0)):
    t = [t for t in ts if t["name"] == gg][0]
    cols, rows = t["dims"]
    a, e = hdr[hf]["data_offsets"]
    src = struct.unpack_from("<%df" % (rows * cols), st, 8 + n + a)
    out = g.dequant(b, t, data + t["offset"], rows * cols)
    for o in range(rows):
        if heads:
            hd = rows // heads
            h, k = divmod(o, hd)
            i, j = divmod(k, 2)
            r = h * hd + j * (hd // 2) + i
        else:
            r = o
        assert out[o * cols:(o + 1) * cols] == list(src[r * cols:(r + 1) * cols]), (gg, o, r)
PYEOF

# another scheme has no exact GGUF form: requantized to --type, said so
expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/r3.qshard" --scheme rtn:bits=3,group=64 \
	--scheme 'down_proj=rtn:bits=4,group=32'
expect_exit 0 "$QSHARD" export "$T/r3.qshard" -o "$T/r3.gguf"
grep -q "tensor 'model.layers.0.self_attn.q_proj.weight': requantized from rtn:bits=3,group=64 to q8_0" "$T/out" ||
	fail "no requantization notice: $(cat "$T/out")"
grep -q "down_proj.weight': requantized" "$T/out" && fail "down_proj (rtn g32) was requantized"
$G tensors "$T/r3.gguf" >"$T/tensors"
grep -q '^blk.0.attn_q.weight Q8_0' "$T/tensors" || fail "attn_q not Q8_0"
grep -q '^blk.0.ffn_down.weight Q4_1' "$T/tensors" || fail "ffn_down not Q4_1"
expect_exit 0 "$QSHARD" export "$T/r3.qshard" -o "$T/r3f16.gguf" --type f16
$G tensors "$T/r3f16.gguf" >"$T/tensors"
grep -q '^blk.0.attn_q.weight F16' "$T/tensors" || fail "--type f16"
expect_exit 2 "$QSHARD" export "$T/r3.qshard" -o "$T/x.gguf" --type q9_9
expect_err "--type 'q9_9' is unknown (available: f32, f16, bf16, q8_0"

# gguf:type=T payloads are copied, never requantized, as GGUF type T (every
# type; ggml-check.sh proves ggml dequantizes those payloads exactly as
# qshard does), and Q8_0 reads back by ggml's rule (x = d * q) to exactly
# the scheme's own dequantization
for ty in q8_0 q4_0 q4_1 q5_0 q5_1 q2_K q3_K q4_K q5_K q6_K; do
	expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/g.qshard" --scheme "gguf:type=$ty" --force
	expect_exit 0 "$QSHARD" export "$T/g.qshard" -o "$T/g.gguf"
	grep -q "requantized from" "$T/out" && fail "gguf:type=$ty was requantized: $(cat "$T/out")"
	$G tensors "$T/g.gguf" >"$T/tensors"
	grep -qi "^blk.0.attn_q.weight $ty " "$T/tensors" ||
		fail "gguf $ty not copied as $ty: $(grep attn_q "$T/tensors")"
	[ "$ty" = q8_0 ] && cp "$T/g.qshard" "$T/g8.qshard" && cp "$T/g.gguf" "$T/g8.gguf"
done
expect_exit 0 "$QSHARD" export "$T/g8.qshard" -o "$T/g8f.gguf" --type f32
$G same "$T/g8.gguf" "$T/g8f.gguf" >"$T/same" || fail "gguf q8_0: $(cat "$T/same")"

# --no-vocab and --vocab-from
expect_exit 0 "$QSHARD" export "$T/m.qshard" -o "$T/nv.gguf" --no-vocab
$G kv "$T/nv.gguf" >"$T/nvkv"
grep -q '"tokenizer.ggml.model": "none"' "$T/nvkv" || fail "--no-vocab"
grep -q 'tokenizer.ggml.tokens' "$T/nvkv" && fail "--no-vocab wrote tokens"
expect_exit 0 "$QSHARD" export "$T/m.qshard" -o "$T/vf.gguf" --vocab-from "$T/m.gguf"
for k in tokenizer.ggml.tokens tokenizer.ggml.merges tokenizer.ggml.token_type tokenizer.chat_template; do
	[ "$($G kvfull "$T/vf.gguf" $k)" = "$($G kvfull "$T/m.gguf" $k)" ] || fail "--vocab-from: $k differs"
done
expect_exit 3 "$QSHARD" export "$T/m.qshard" -o "$T/x.gguf" --vocab-from "$T/m.qshard"
expect_err "not a GGUF"
expect_exit 2 "$QSHARD" export "$T/m.qshard" -o "$T/x.gguf" --no-vocab --vocab-from "$T/m.gguf"

# deterministic, and a stale or killed .partial is started over
expect_exit 0 "$QSHARD" export "$T/m.qshard" -o "$T/again.gguf"
cmp "$T/m.gguf" "$T/again.gguf" || fail "two exports differ"
head -c 9000000 /dev/urandom >"$T/again.gguf.partial"
rm "$T/again.gguf"
expect_exit 0 "$QSHARD" export "$T/m.qshard" -o "$T/again.gguf"
cmp "$T/m.gguf" "$T/again.gguf" || fail "export over a stale .partial differs"
"$MKCKPT" --preset tiny -o "$T/big" >/dev/null
expect_exit 0 "$QSHARD" convert "$T/big" -o "$T/big.qshard" --scheme rtn:bits=4,group=32
expect_exit 0 "$QSHARD" export "$T/big.qshard" -o "$T/ref.gguf" --type f32
killed=0
for delay in 0.05 0.1 0.2 0.3; do
	"$QSHARD" export "$T/big.qshard" -o "$T/k.gguf" --type f32 >/dev/null 2>&1 &
	pid=$!
	sleep $delay
	kill -9 $pid 2>/dev/null && killed=$((killed + 1))
	wait $pid 2>/dev/null
	[ -e "$T/k.gguf" ] && ! cmp -s "$T/k.gguf" "$T/ref.gguf" && fail "an incomplete k.gguf appeared"
	expect_exit 0 "$QSHARD" export "$T/big.qshard" -o "$T/k.gguf" --type f32
	cmp "$T/k.gguf" "$T/ref.gguf" || fail "export after kill -9 (after ${delay}s) differs"
	rm -f "$T/k.gguf"
done
echo "export_gguf: killed $killed of 4 exports mid-way"

# bounded memory: a 105 MB f32 export through a 24 MiB window stays within
# (holding the output would not)
# --memory + 64 MiB of peak RSS (the qshard's chunks come from a convert
# with a small window so that they fit)
if [ -x /usr/bin/time ]; then
	expect_exit 0 "$QSHARD" convert "$T/big" -o "$T/small.qshard" --scheme rtn:bits=4,group=32 --memory 64M
	/usr/bin/time -f '%M' -o "$T/rss" "$QSHARD" export "$T/small.qshard" -o "$T/s.gguf" --type f32 \
		--memory 24M >/dev/null 2>"$T/err" || fail "export --memory 24M: $(cat "$T/err")"
	rss=$(tail -n 1 "$T/rss")
	echo "export_gguf: peak RSS $((rss / 1024)) MiB with --memory 24M for $(stat -c %s "$T/s.gguf") bytes out"
	[ "$rss" -le $(((24 + 64) * 1024)) ] || fail "peak RSS $rss KiB exceeds --memory 24M + 64 MiB"
fi

# another live export's lock, and the input itself, are refused
if command -v flock >/dev/null 2>&1; then
	: >"$T/l.gguf.partial"
	flock "$T/l.gguf.partial" sleep 5 &
	lpid=$!
	sleep 0.3
	expect_exit 6 "$QSHARD" export "$T/m.qshard" -o "$T/l.gguf"
	expect_err "another export is writing it"
	kill $lpid 2>/dev/null
	wait $lpid 2>/dev/null
fi
ln -s m.qshard "$T/alias.gguf"
expect_exit 2 "$QSHARD" export "$T/m.qshard" -o "$T/alias.gguf"
expect_err "is the input"
exit 0

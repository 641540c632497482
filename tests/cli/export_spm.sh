#!/bin/sh
# qshard export's SentencePiece vocabulary: a real tokenizer.model
# (trained here by python3-sentencepiece, set up as Llama 2's) becomes
# tokenizer.ggml.model "llama" with its pieces, scores and types; it is
# used when tokenizer.json is absent or SentencePiece-derived (Unigram, or
# BPE with byte_fallback), while a byte-level BPE tokenizer.json still
# wins.  llama.cpp (node-llama-cpp; that half is skipped when absent)
# tokenizes text from the exported GGUF exactly as SentencePiece does.  A
# truncated or garbled tokenizer.model is an error naming it.
. "$top_srcdir/tests/cli/lib.sh"
"$PY" -c 'import sentencepiece' 2>/dev/null || { echo "SKIP: python3-sentencepiece missing"; exit 77; }
G="$PY $top_srcdir/tests/cli/gguf_read.py"
SPM="$PY $top_srcdir/tests/cli/spm_fixture.py"

$SPM train "$top_srcdir"/man/*.1 "$top_srcdir/README.md" -o "$T/tok.model" -v 1000 || fail "training"
# mkckpt writes a byte-level BPE tokenizer.json and tokenizer_config.json
# (<s>, </s>, <unk>, add_bos_token); the SentencePiece checkpoint has none
mk() {
	"$MKCKPT" --preset tiny --layers 1 --vocab "$2" -o "$T/$1" >/dev/null || fail "mkckpt"
	cp "$T/tok.model" "$T/$1/tokenizer.model"
}
mk sp 1000
rm "$T/sp/tokenizer.json"
expect_exit 0 "$QSHARD" convert "$T/sp" -o "$T/sp.qshard" --scheme rtn:bits=4,group=32
expect_exit 0 "$QSHARD" export "$T/sp.qshard" -o "$T/sp.gguf"
# every piece, score and type is SentencePiece's own
"$PY" - "$top_srcdir/tests/cli" "$T/sp.gguf" "$T/tok.model" <<'PYEOF' || fail "vocabulary differs from SentencePiece's"
import sys
sys.path.insert(0, sys.argv[1])
import gguf_read as g
import sentencepiece as spm
_, _, kv, _, _ = g.parse(sys.argv[2])
sp = spm.SentencePieceProcessor(model_file=sys.argv[3])
assert kv["tokenizer.ggml.model"] == "llama", kv["tokenizer.ggml.model"]
toks, scores, types = kv["tokenizer.ggml.tokens"], kv["tokenizer.ggml.scores"], kv["tokenizer.ggml.token_type"]
assert len(toks) == sp.get_piece_size() == 1000, len(toks)
for i in range(len(toks)):
    want = 6 if sp.is_byte(i) else 2 if sp.is_unknown(i) else 3 if sp.is_control(i) else \
        5 if sp.is_unused(i) else 1
    if toks[i] != sp.id_to_piece(i) or scores[i] != sp.get_score(i) or (types[i] != want and types[i] != 4):
        sys.exit("token %d: %r %r %r, SentencePiece %r %r %r" % (i, toks[i], scores[i], types[i],
                 sp.id_to_piece(i), sp.get_score(i), want))
assert sum(1 for t in types if t == 6) == 256, "byte pieces"
for k, v in (("unknown_token_id", 0), ("bos_token_id", 1), ("eos_token_id", 2)):
    assert kv["tokenizer.ggml." + k] == v, k
assert "tokenizer.ggml.padding_token_id" not in kv
assert kv["tokenizer.ggml.add_space_prefix"] is True
assert kv["tokenizer.ggml.add_bos_token"] is True and kv["tokenizer.ggml.add_eos_token"] is False
assert "tokenizer.ggml.merges" not in kv
PYEOF

# a Unigram (SentencePiece-derived) tokenizer.json defers to tokenizer.model
mk uni 1000
printf '{"version": "1.0", "model": {"type": "Unigram", "unk_id": 0, "vocab": [["<unk>", 0.0]]}}' >"$T/uni/tokenizer.json"
expect_exit 0 "$QSHARD" convert "$T/uni" -o "$T/uni.qshard"
expect_exit 0 "$QSHARD" export "$T/uni.qshard" -o "$T/uni.gguf"
[ "$($G kvfull "$T/uni.gguf" tokenizer.ggml.model)" = '"llama"' ] || fail "Unigram tokenizer.json did not defer to tokenizer.model"
# without the tokenizer.model, that tokenizer.json is refused saying so
rm "$T/uni/tokenizer.model"
expect_exit 0 "$QSHARD" convert "$T/uni" -o "$T/uni2.qshard"
expect_exit 3 "$QSHARD" export "$T/uni2.qshard" -o "$T/uni2.gguf"
expect_err "tokenizer.json model type 'Unigram' is not supported (byte-level BPE, or SentencePiece from a tokenizer.model, which the file lacks)"
# a byte-level BPE tokenizer.json next to a tokenizer.model stays gpt2
mk bpe 1000
expect_exit 0 "$QSHARD" convert "$T/bpe" -o "$T/bpe.qshard"
expect_exit 0 "$QSHARD" export "$T/bpe.qshard" -o "$T/bpe.gguf"
[ "$($G kvfull "$T/bpe.gguf" tokenizer.ggml.model)" = '"gpt2"' ] || fail "byte-level BPE tokenizer.json lost to tokenizer.model"
# embedding rows beyond the pieces: [PADn] placeholders of type unused,
# except the tokens a SentencePiece-derived tokenizer.json adds there
mk pad 1024
printf '{"version": "1.0", "added_tokens": [{"id": 1, "content": "<s>", "special": true}, {"id": 1000, "content": "<pad>", "special": true}], "model": {"type": "BPE", "byte_fallback": true, "vocab": {}, "merges": []}}' >"$T/pad/tokenizer.json"
expect_exit 0 "$QSHARD" convert "$T/pad" -o "$T/pad.qshard" --scheme rtn:bits=4,group=32
expect_exit 0 "$QSHARD" export "$T/pad.qshard" -o "$T/pad.gguf"
"$PY" - "$top_srcdir/tests/cli" "$T/pad.gguf" <<'PYEOF' || fail "padding"
import sys
sys.path.insert(0, sys.argv[1])
import gguf_read as g
_, _, kv, _, _ = g.parse(sys.argv[2])
t, ty = kv["tokenizer.ggml.tokens"], kv["tokenizer.ggml.token_type"]
assert len(t) == 1024 and t[1001] == "[PAD1001]" and ty[1023] == 5, (len(t), t[1001], ty[1023])
assert t[1000] == "<pad>" and ty[1000] == 3, (t[1000], ty[1000])
PYEOF

# hostile: more pieces than embedding rows; truncated; garbled
mk small 512
rm "$T/small/tokenizer.json"
expect_exit 0 "$QSHARD" convert "$T/small" -o "$T/small.qshard"
expect_exit 3 "$QSHARD" export "$T/small.qshard" -o "$T/small.gguf"
expect_err "'small.qshard': tokenizer.model has more pieces than the model's 512 embedding rows"
[ -e "$T/small.gguf" ] && fail "small.gguf written"
# cut inside a piece (field 1, length-delimited) past the first 5000
# bytes, so the cut never lands on a field boundary whatever the model
"$PY" -c 'import sys
b = open(sys.argv[1], "rb").read()
i = 0
while True:
    assert b[i] == 0x0A, "expected a pieces field at %d" % i
    n, k = 0, 0
    while True:
        c = b[i + 1 + k]
        n |= (c & 0x7F) << (7 * k)
        k += 1
        if c < 0x80:
            break
    if i >= 5000:
        break
    i += 1 + k + n
open(sys.argv[2], "wb").write(b[:i + 1 + k + n // 2])' "$T/tok.model" "$T/sp/tokenizer.model" || fail "cutting the model"
expect_exit 0 "$QSHARD" convert "$T/sp" -o "$T/cut.qshard"
expect_exit 3 "$QSHARD" export "$T/cut.qshard" -o "$T/cut.gguf"
expect_err "'cut.qshard': tokenizer.model: a field does not decode at byte"
[ -e "$T/cut.gguf" ] && fail "cut.gguf written"
"$PY" -c 'import sys
b = bytearray(open(sys.argv[1], "rb").read())
for i in range(100, len(b), 97):
    b[i] ^= 0xA5
open(sys.argv[2], "wb").write(b)' "$T/tok.model" "$T/sp/tokenizer.model"
expect_exit 0 "$QSHARD" convert "$T/sp" -o "$T/garbled.qshard"
expect_exit 3 "$QSHARD" export "$T/garbled.qshard" -o "$T/garbled.gguf"
expect_err "'garbled.qshard': tokenizer.model: "
[ -e "$T/garbled.gguf" ] && fail "garbled.gguf written"
printf 'not a protobuf at all' >"$T/sp/tokenizer.model"
expect_exit 0 "$QSHARD" convert "$T/sp" -o "$T/text.qshard"
expect_exit 3 "$QSHARD" export "$T/text.qshard" -o "$T/text.gguf"
expect_err "'text.qshard': tokenizer.model"

NLC=${NODE_LLAMA_CPP_DIR:-/opt/node-llama-cpp}
if ! command -v node >/dev/null 2>&1 || [ ! -f "$NLC/node_modules/node-llama-cpp/dist/index.js" ]; then
	echo "note: node-llama-cpp absent; llama.cpp tokenizer round trip skipped"
	exit 0
fi
export NODE_LLAMA_CPP_DIR=$NLC
EVAL="node $top_srcdir/tests/cli/llama_eval.mjs"
printf 'Hello world, this is qshard 2026! Tokens: ab12 xyz\tTab and caf\303\251 \342\202\2545.\nNew line  two spaces and MiXeD CaSe words \360\237\231\202' >"$T/text"
for f in sp pad; do
	$SPM encode "$T/tok.model" "$T/text" | tr -d ' \n' >"$T/ref_ids" || fail "spm encode"
	$EVAL tokenize "$T/$f.gguf" "$T/text" 2>"$T/err" | tr -d ' \n' >"$T/llama_ids" ||
		fail "llama.cpp tokenize: $(cat "$T/err")"
	[ "$(wc -c <"$T/ref_ids")" -gt 20 ] || fail "no reference ids"
	cmp -s "$T/ref_ids" "$T/llama_ids" ||
		fail "$f: llama.cpp tokenizes differently: $(cat "$T/llama_ids") vs SentencePiece $(cat "$T/ref_ids")"
done
echo "SentencePiece round trip: $(tr ',' '\n' <"$T/ref_ids" | wc -l) tokens agree"
# and the model runs
$EVAL eval "$T/sp.gguf" 1,300,400,500 "$T/sp.json" 2>"$T/err" || fail "llama.cpp eval: $(cat "$T/err")"
exit 0

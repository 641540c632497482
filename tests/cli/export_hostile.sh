#!/bin/sh
# qshard export on hostile input: a damaged .qshard, config.json with
# missing or absurd fields or an unsupported architecture, tensors that
# contradict config.json, tokenizer files that lie, missing vocabularies.
# Each gives a clear error (exit 2, 3 or 4, naming the file and what is
# wrong) and neither OUT.gguf nor OUT.gguf.partial.
. "$top_srcdir/tests/cli/lib.sh"

"$MKCKPT" --preset tiny --layers 1 --vocab 512 -o "$T/good" >/dev/null || fail "mkckpt"

# no_output: the last export left nothing behind
no_output() {
	[ -e "$T/o.gguf" ] && fail "OUT.gguf left by a failed export ($*)"
	[ -e "$T/o.gguf.partial" ] && fail "OUT.gguf.partial left by a failed export ($*)"
	return 0
}

# variant NAME PYTHON: a copy of the checkpoint edited by PYTHON (d = its
# folder), converted to $T/NAME.qshard
variant() {
	rm -rf "$T/$1"
	cp -r "$T/good" "$T/$1"
	"$PY" - "$T/$1" "$2" <<'PYEOF' || fail "variant $1"
import json, os, sys
d = sys.argv[1]
def load(n): return json.load(open(os.path.join(d, n)))
def save(n, j): json.dump(j, open(os.path.join(d, n), "w"))
exec(sys.argv[2])
PYEOF
	"$QSHARD" convert "$T/$1" -o "$T/$1.qshard" --scheme rtn:bits=4,group=32 >/dev/null 2>&1 ||
		fail "convert of variant $1"
}

# bad NAME EXIT TEXT PYTHON: the variant's export fails with EXIT and TEXT
bad() {
	variant "$1" "$4"
	expect_exit "$2" "$QSHARD" export "$T/$1.qshard" -o "$T/o.gguf"
	expect_err "$3"
	no_output "$1"
}

# damaged: a flipped byte in the middle of the data frames
expect_exit 0 "$QSHARD" convert "$T/good" -o "$T/d.qshard" --scheme rtn:bits=4,group=32
size=$(stat -c %s "$T/d.qshard")
"$PY" -c "
import sys
p, at = sys.argv[1], int(sys.argv[2]) // 2
b = bytearray(open(p, 'rb').read()); b[at] ^= 0x10; open(p, 'wb').write(b)" "$T/d.qshard" "$size"
expect_exit 4 "$QSHARD" export "$T/d.qshard" -o "$T/o.gguf"
expect_err "tensor 'model."
expect_err "checksum mismatch"
no_output damaged
# a truncated file is not opened at all
head -c $((size - 7)) "$T/d.qshard" >"$T/t.qshard"
expect_exit 3 "$QSHARD" export "$T/t.qshard" -o "$T/o.gguf"
expect_err "t.qshard"
no_output truncated

# config.json
bad cfg_arch 3 "architecture 'GPT2LMHeadModel' is not supported by export" \
	'c = load("config.json"); c["architectures"] = ["GPT2LMHeadModel"]; save("config.json", c)'
bad cfg_missing 3 "config.json: 'hidden_size' is missing" \
	'c = load("config.json"); del c["hidden_size"]; save("config.json", c)'
bad cfg_zero_heads 3 "'num_attention_heads' is 0, outside 1.." \
	'c = load("config.json"); c["num_attention_heads"] = 0; save("config.json", c)'
bad cfg_kv 3 "'num_key_value_heads' does not divide num_attention_heads" \
	'c = load("config.json"); c["num_key_value_heads"] = 3; save("config.json", c)'
bad cfg_eps 3 "'rms_norm_eps' is -1, outside (0, 1)" \
	'c = load("config.json"); c["rms_norm_eps"] = -1; save("config.json", c)'
bad cfg_string 3 "'num_hidden_layers' is not an integer" \
	'c = load("config.json"); c["num_hidden_layers"] = "1"; save("config.json", c)'
bad cfg_layers 3 "config.json says 2 layers, but tensor 'model.layers.1.self_attn.q_proj.weight' is missing" \
	'c = load("config.json"); c["num_hidden_layers"] = 2; save("config.json", c)'
bad cfg_hidden 3 "config.json hidden_size 256, but 'model.embed_tokens.weight' has 512 columns" \
	'c = load("config.json"); c["hidden_size"] = 256; c["head_dim"] = 32; save("config.json", c)'
bad cfg_vocab 3 "config.json vocab_size 999999, but 'model.embed_tokens.weight' has 512 rows" \
	'c = load("config.json"); c["vocab_size"] = 999999; save("config.json", c)'
bad cfg_ffn 3 "tensor 'model.layers.0.mlp.gate_proj.weight' is 1280x512, config.json implies 1024x512" \
	'c = load("config.json"); c["intermediate_size"] = 1024; save("config.json", c)'
bad cfg_rope 3 "rope_scaling' type 'dynamic' is not supported" \
	'c = load("config.json"); c["rope_scaling"] = {"type": "dynamic", "factor": 2.0}; save("config.json", c)'
bad cfg_none 3 "holds no config.json" 'os.remove(os.path.join(d, "config.json"))'

# a mixture-of-experts layout other than Mixtral's is refused by name
"$MKCKPT" --preset tiny --layers 1 --vocab 512 --moe 2 -o "$T/moe" >/dev/null || fail "mkckpt --moe"
expect_exit 0 "$QSHARD" convert "$T/moe" -o "$T/moe.qshard"
expect_exit 3 "$QSHARD" export "$T/moe.qshard" -o "$T/o.gguf"
expect_err "mixture-of-experts models are not supported by export"
no_output moe

# tokenizer files that lie
bad tok_range 3 "tokenizer.json: token 'zz' has id 4096, outside the model's vocabulary" \
	't = load("tokenizer.json"); t["model"]["vocab"]["zz"] = 4096; save("tokenizer.json", t)'
bad tok_dup 3 "share id 300" \
	't = load("tokenizer.json"); t["model"]["vocab"]["zz"] = 300; save("tokenizer.json", t)'
bad tok_merge 3 "merge 3 ('q' + 'Q') joins tokens the vocabulary lacks" \
	't = load("tokenizer.json"); t["model"]["merges"][3] = "q Q"; save("tokenizer.json", t)'
bad tok_bos 3 "tokenizer_config.json: bos_token '<|begin|>' is not a token of tokenizer.json" \
	'c = load("tokenizer_config.json"); c["bos_token"] = "<|begin|>"; save("tokenizer_config.json", c)'
bad tok_model 3 "tokenizer.json model type 'Unigram' is not supported" \
	't = load("tokenizer.json"); t["model"]["type"] = "Unigram"; save("tokenizer.json", t)'
bad tok_json 3 "tokenizer.json is not a JSON object" \
	'open(os.path.join(d, "tokenizer.json"), "w").write("{\"model\": ")'
bad tok_pre 2 "cannot tell the pre-tokenizer from tokenizer.json; give --pre NAME (known: default, llama-bpe, gpt-2" \
	't = load("tokenizer.json"); t["pre_tokenizer"] = {"type": "Metaspace"}; save("tokenizer.json", t)'
# ... which --pre then settles
expect_exit 0 "$QSHARD" export "$T/tok_pre.qshard" -o "$T/o.gguf" --pre llama-bpe
rm -f "$T/o.gguf"
expect_exit 2 "$QSHARD" export "$T/tok_pre.qshard" -o "$T/o.gguf" --pre llama9
expect_err "--pre 'llama9' is unknown (known: default, llama-bpe"
no_output pre
bad tok_none 2 "holds no tokenizer.json" 'os.remove(os.path.join(d, "tokenizer.json"))'
expect_exit 0 "$QSHARD" export "$T/tok_none.qshard" -o "$T/o.gguf" --no-vocab
rm -f "$T/o.gguf"

# a vocabulary donor of another size
"$MKCKPT" --preset tiny --layers 1 --vocab 600 -o "$T/other" >/dev/null
expect_exit 0 "$QSHARD" convert "$T/other" -o "$T/other.qshard"
expect_exit 0 "$QSHARD" export "$T/other.qshard" -o "$T/other.gguf"
expect_exit 3 "$QSHARD" export "$T/tok_none.qshard" -o "$T/o.gguf" --vocab-from "$T/other.gguf"
expect_err "its vocabulary has 600 tokens, the model's embedding 512 rows"
no_output vocab-from
# a GGUF whose metadata runs past its end
head -c 4000 "$T/other.gguf" >"$T/cut.gguf"
expect_exit 3 "$QSHARD" export "$T/tok_none.qshard" -o "$T/o.gguf" --vocab-from "$T/cut.gguf"
expect_err "is malformed or runs past the end"
no_output cut-gguf

# a window too small for a chunk
expect_exit 0 "$QSHARD" convert "$T/good" -o "$T/g.qshard" --scheme rtn:bits=4,group=32
expect_exit 7 "$QSHARD" export "$T/g.qshard" -o "$T/o.gguf" --memory 2M --type f32
expect_err "tensor 'model.embed_tokens.weight': a chunk needs 3 MiB, more than --memory allows"
no_output memory
exit 0

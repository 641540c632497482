#!/bin/bash
# --scheme-preset: llama.cpp's per-tensor types of its q*_k_m mixes on a
# mkckpt checkpoint (8 layers: use_more_bits picks layers 0, 3, 6, 7),
# tied embeddings, --scheme overriding the preset, the fallbacks for rows
# that are not a multiple of 256 (or 32), MoE routers kept, and an
# explicit gguf scheme refused on rows it cannot hold.
. "$top_srcdir/tests/cli/lib.sh"

"$MKCKPT" --preset tiny --seed 5 -o "$T/ck" >/dev/null || fail mkckpt

# type_of FILE TENSOR: the scheme column of qshard inspect
type_of() {
	awk -v t="$2" '$1 == t { for (i = 2; i < NF; i++) if ($i ~ /\]$/) { print $(i + 1); exit } }' "$1"
}
check() {
	local got
	got=$(type_of "$1" "$2")
	[ "$got" = "$3" ] || fail "$4: $2 is '$got', expected '$3'"
}

expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/m.qshard" --scheme-preset q4_k_m --progress none
expect_exit 0 "$QSHARD" verify "$T/m.qshard"
"$QSHARD" inspect "$T/m.qshard" >"$T/i4" || fail inspect
check "$T/i4" lm_head.weight gguf:type=q6_K q4_k_m
check "$T/i4" model.embed_tokens.weight gguf:type=q4_K q4_k_m
check "$T/i4" model.norm.weight raw q4_k_m
for l in 0 1 2 3 4 5 6 7; do
	case $l in 0|3|6|7) more=q6_K ;; *) more=q4_K ;; esac
	check "$T/i4" model.layers.$l.self_attn.v_proj.weight gguf:type=$more q4_k_m
	check "$T/i4" model.layers.$l.mlp.down_proj.weight gguf:type=$more q4_k_m
	for t in self_attn.q_proj self_attn.k_proj self_attn.o_proj mlp.gate_proj mlp.up_proj; do
		check "$T/i4" model.layers.$l.$t.weight gguf:type=q4_K q4_k_m
	done
	check "$T/i4" model.layers.$l.input_layernorm.weight raw q4_k_m
done
# the payloads unpack (dequantize) like any other scheme
expect_exit 0 "$QSHARD" unpack "$T/m.qshard" -o "$T/un"

expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/m3.qshard" --scheme-preset q3_k_m --progress none
"$QSHARD" inspect "$T/m3.qshard" >"$T/i3" || fail inspect
check "$T/i3" lm_head.weight gguf:type=q6_K q3_k_m
check "$T/i3" model.embed_tokens.weight gguf:type=q3_K q3_k_m
check "$T/i3" model.layers.0.self_attn.v_proj.weight gguf:type=q5_K q3_k_m
check "$T/i3" model.layers.1.self_attn.v_proj.weight gguf:type=q5_K q3_k_m
check "$T/i3" model.layers.2.self_attn.v_proj.weight gguf:type=q4_K q3_k_m
check "$T/i3" model.layers.0.mlp.down_proj.weight gguf:type=q4_K q3_k_m
check "$T/i3" model.layers.5.self_attn.o_proj.weight gguf:type=q4_K q3_k_m
check "$T/i3" model.layers.5.mlp.up_proj.weight gguf:type=q3_K q3_k_m

expect_exit 0 "$QSHARD" convert "$T/ck" -o "$T/m6.qshard" --scheme-preset q6_k --progress none \
	--scheme 'lm_head=gguf:type=q8_0' --scheme 'layers\.2\.mlp\.up=rtn:bits=8'
"$QSHARD" inspect "$T/m6.qshard" >"$T/i6" || fail inspect
check "$T/i6" lm_head.weight gguf:type=q8_0 "--scheme over q6_k"
check "$T/i6" model.layers.2.mlp.up_proj.weight rtn:bits=8,group=128 "--scheme over q6_k"
check "$T/i6" model.layers.4.mlp.down_proj.weight gguf:type=q6_K q6_k
check "$T/i6" model.embed_tokens.weight gguf:type=q6_K q6_k

# tied embeddings take the output's type
"$MKCKPT" --preset tiny --layers 2 --tie-embeddings -o "$T/ckt" >/dev/null || fail mkckpt
expect_exit 0 "$QSHARD" convert "$T/ckt" -o "$T/t.qshard" --scheme-preset q5_k_m --progress none
"$QSHARD" inspect "$T/t.qshard" >"$T/it" || fail inspect
check "$T/it" model.embed_tokens.weight gguf:type=q6_K "tied q5_k_m"
check "$T/it" model.layers.1.self_attn.q_proj.weight gguf:type=q5_K "tied q5_k_m"

expect_exit 2 "$QSHARD" convert "$T/ck" -o "$T/x.qshard" --scheme-preset q4_k_s --progress none
expect_err "unknown --scheme-preset 'q4_k_s' (known: q3_k_m, q4_k_m, q5_k_m, q6_k)"
[ ! -e "$T/x.qshard" ] || fail "output written for a bad preset"

# odd shapes, written with numpy: fallbacks and routers
need_numpy
"$PY" - "$T/odd.safetensors" <<'PY' || fail "writing odd shapes"
import json, struct, sys
import numpy as np
rng = np.random.default_rng(2)
shapes = {
    "model.embed_tokens.weight": (64, 512),
    "lm_head.weight": (64, 96),                              # q6_K -> q8_0
    "model.layers.0.self_attn.o_proj.weight": (64, 100),     # not /32: raw
    "model.layers.0.mlp.up_proj.weight": (64, 96),           # q4_K -> q5_0
    "model.layers.0.mlp.down_proj.weight": (64, 160),        # q6_K -> q8_0
    "model.layers.0.self_attn.v_proj.weight": (64, 320),     # q6_K -> q8_0
    "model.layers.0.self_attn.k_proj.weight": (64, 288),     # q4_K -> q5_0
    "model.layers.0.block_sparse_moe.gate.weight": (4, 512), # router: raw
    "model.layers.0.block_sparse_moe.experts.3.w2.weight": (64, 512),
}
header, data = {}, b""
for name, shape in shapes.items():
    raw = (0.02 * rng.standard_normal(shape)).astype(np.float32).tobytes()
    header[name] = {"dtype": "F32", "shape": list(shape),
                    "data_offsets": [len(data), len(data) + len(raw)]}
    data += raw
text = json.dumps(header).encode()
text += b" " * ((8 - (8 + len(text)) % 8) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(text)) + text + data)
PY
expect_exit 0 "$QSHARD" convert "$T/odd.safetensors" -o "$T/o.qshard" --scheme-preset q4_k_m \
	--progress none
"$QSHARD" inspect "$T/o.qshard" >"$T/io" || fail inspect
check "$T/io" lm_head.weight gguf:type=q8_0 fallback
check "$T/io" model.layers.0.self_attn.o_proj.weight raw fallback
check "$T/io" model.layers.0.mlp.up_proj.weight gguf:type=q5_0 fallback
check "$T/io" model.layers.0.mlp.down_proj.weight gguf:type=q8_0 fallback
check "$T/io" model.layers.0.self_attn.v_proj.weight gguf:type=q8_0 fallback
check "$T/io" model.layers.0.self_attn.k_proj.weight gguf:type=q5_0 fallback
check "$T/io" model.layers.0.block_sparse_moe.gate.weight raw router
check "$T/io" model.layers.0.block_sparse_moe.experts.3.w2.weight gguf:type=q6_K expert
check "$T/io" model.embed_tokens.weight gguf:type=q4_K fallback

# an explicit gguf type is not silently changed: a clear error, no output
expect_exit 2 "$QSHARD" convert "$T/odd.safetensors" -o "$T/e.qshard" --scheme gguf:type=q4_K \
	--progress none
expect_err "tensor 'lm_head.weight': gguf:type=q4_K cannot quantize rows of 96 columns"
[ ! -e "$T/e.qshard" ] && [ ! -e "$T/e.qshard.partial" ] || fail "output after a refused scheme"
exit 0

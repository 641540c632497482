/* preset.h - --scheme-preset: llama.cpp's per-tensor type mixes of its
 * Q3_K_M, Q4_K_M, Q5_K_M and Q6_K file types (llama-quant.cpp,
 * llama_tensor_get_type), mapped onto Hugging Face tensor names and the
 * gguf scheme. */
#ifndef QS_PRESET_H
#define QS_PRESET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "safetensors.h"

enum qs_preset_kind { QS_PRESET_Q3_K_M, QS_PRESET_Q4_K_M, QS_PRESET_Q5_K_M, QS_PRESET_Q6_K };

/* What the choices depend on beyond a tensor's own name and shape. */
struct qs_preset {
	enum qs_preset_kind kind;
	unsigned n_layer;     /* 1 + the largest model.layers.N */
	unsigned n_attn_v;    /* v_proj (or fused qkv_proj) tensors */
	unsigned n_expert;    /* 1 + the largest experts.E in layer 0 (1 if none) */
	bool tied;            /* no lm_head.weight: embeddings double as output */
	bool is_70b;          /* llama.cpp's LLM_TYPE_70B: 80 layers with GQA */
};

/* Known names, comma separated, for messages. */
#define QS_PRESET_NAMES "q3_k_m, q4_k_m, q5_k_m, q6_k"

/* -1 when name is none of QS_PRESET_NAMES. */
int qs_preset_find(const char *name);
/* Scans the checkpoint's tensor names. */
void qs_preset_init(struct qs_preset *p, enum qs_preset_kind kind, const struct qs_checkpoint *ck);
/* The scheme for tensor t ("gguf:type=q6_K" into buf), or 1 when
 * llama.cpp leaves it unquantized (norms, biases, MoE routers, rows not a
 * multiple of 32): keep it raw.  0 otherwise. */
int qs_preset_choose(const struct qs_preset *p, const struct qs_st_tensor *t, char *buf,
		     size_t len);

#endif /* QS_PRESET_H */

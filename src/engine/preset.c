/* preset.c - llama.cpp's per-tensor choices of the q*_k_m mixes
 * (llama-quant.cpp: llama_tensor_get_type_impl and tensor_type_fallback,
 * read from ggml-org/llama.cpp), restated for Hugging Face names:
 *
 *   lm_head (and embed_tokens when tied)  q6_K; q8_0 when rows are not a
 *                                          multiple of 256
 *   embed_tokens (untied)                  the mix's default type
 *   v_proj (or a fused qkv_proj), layer i  q3_k_m: q5_K for i < 2, else q4_K;
 *                                          q4_k_m, q5_k_m: q6_K when
 *                                          use_more_bits(i), else default;
 *                                          70B (80 layers, GQA): q3_K/q4_K
 *                                          raised to q5_K; 8 experts: q8_0
 *   k_proj                                 8 experts: q8_0
 *   down_proj / experts' w2, layer i       q3_k_m: q5_K for i < n/16, else
 *                                          q4_K; q4_k_m, q5_k_m: q6_K when
 *                                          use_more_bits(i)
 *   o_proj                                 q3_k_m: q4_K (8 experts: q5_K);
 *                                          q4_k_m with 8 experts: q5_K
 *   everything else 2-D                    the default: q3_K, q4_K, q5_K, q6_K
 * with use_more_bits(i) = i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2 over
 * n = the layer count.  A type whose block does not divide the row falls
 * back as llama.cpp does (q4_K -> q5_0, q5_K -> q5_1, q6_K -> q8_0, q3_K ->
 * q4_0), and a row that is not a multiple of 32 stays unquantized (llama.cpp
 * writes F16 there).  Not quantized at all, as in llama.cpp: 1-D tensors
 * (norms, biases), names not ending in "weight", MoE routers (gate.weight,
 * shared_expert_gate.weight).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf_types.h"
#include "preset.h"

static const char *const kind_names[] = {"q3_k_m", "q4_k_m", "q5_k_m", "q6_k"};
static const unsigned default_type[] = {QS_GGUF_Q3_K, QS_GGUF_Q4_K, QS_GGUF_Q5_K, QS_GGUF_Q6_K};

int qs_preset_find(const char *name)
{
	for (int i = 0; name && i < 4; i++)
		if (strcmp(name, kind_names[i]) == 0)
			return i;
	return -1;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* The N of "model.layers.N." (or "layers.N." anywhere), or -1. */
static long layer_of(const char *name)
{
	const char *p = strstr(name, "layers.");
	if (!p)
		return -1;
	p += 7;
	if (*p < '0' || *p > '9')
		return -1;
	char *end;
	long v = strtol(p, &end, 10);
	return *end == '.' && v >= 0 && v < 100000 ? v : -1;
}

static long expert_of(const char *name)
{
	const char *p = strstr(name, "experts.");
	if (!p)
		return -1;
	p += 8;
	if (*p < '0' || *p > '9')
		return -1;
	char *end;
	long v = strtol(p, &end, 10);
	return *end == '.' && v >= 0 && v < 100000 ? v : -1;
}

enum category { CAT_OTHER, CAT_OUTPUT, CAT_EMBD, CAT_V, CAT_K, CAT_Q, CAT_O,
		CAT_UP, CAT_GATE, CAT_DOWN, CAT_ROUTER };

static enum category category_of(const char *n)
{
	if (strcmp(n, "lm_head.weight") == 0 || ends_with(n, ".lm_head.weight"))
		return CAT_OUTPUT;
	if (ends_with(n, "embed_tokens.weight"))
		return CAT_EMBD;
	if (ends_with(n, "block_sparse_moe.gate.weight") || ends_with(n, "mlp.gate.weight") ||
	    ends_with(n, "shared_expert_gate.weight"))
		return CAT_ROUTER;
	/* llama.cpp treats a fused qkv like v (category_is_attn_v) */
	if (ends_with(n, "v_proj.weight") || ends_with(n, "qkv_proj.weight"))
		return CAT_V;
	if (ends_with(n, "k_proj.weight"))
		return CAT_K;
	if (ends_with(n, "q_proj.weight"))
		return CAT_Q;
	if (ends_with(n, "o_proj.weight"))
		return CAT_O;
	if (ends_with(n, "up_proj.weight") || (strstr(n, "experts.") && ends_with(n, ".w3.weight")))
		return CAT_UP;
	if (ends_with(n, "gate_proj.weight") || (strstr(n, "experts.") && ends_with(n, ".w1.weight")))
		return CAT_GATE;
	if (ends_with(n, "down_proj.weight") || (strstr(n, "experts.") && ends_with(n, ".w2.weight")))
		return CAT_DOWN;
	return CAT_OTHER;
}

static uint64_t rows_of(const struct qs_st_tensor *t)
{
	uint64_t r = 1;
	for (uint32_t d = 0; d + 1 < t->ndim; d++)
		r *= t->shape[d];
	return r;
}

void qs_preset_init(struct qs_preset *p, enum qs_preset_kind kind, const struct qs_checkpoint *ck)
{
	memset(p, 0, sizeof(*p));
	p->kind = kind;
	p->tied = true;
	long max_layer = -1, max_expert = -1;
	uint64_t q_rows = 0, k_rows = 0;
	for (size_t i = 0; i < ck->ntensors; i++) {
		const struct qs_st_tensor *t = &ck->tensors[i];
		long l = layer_of(t->name);
		enum category c = category_of(t->name);
		if (l > max_layer)
			max_layer = l;
		if (l == 0) {
			long e = expert_of(t->name);
			if (e > max_expert)
				max_expert = e;
			if (c == CAT_Q)
				q_rows = rows_of(t);
			if (c == CAT_K)
				k_rows = rows_of(t);
		}
		if (c == CAT_OUTPUT)
			p->tied = false;
		if (c == CAT_V)
			p->n_attn_v++;
	}
	p->n_layer = (unsigned)(max_layer + 1);
	p->n_expert = max_expert >= 0 ? (unsigned)(max_expert + 1) : 1;
	/* llama.cpp: 80 layers are 70B, unless every head has its own k/v
	 * (65B, LLaMA 1) */
	p->is_70b = p->n_layer == 80 && k_rows && q_rows && k_rows < q_rows;
}

static bool use_more_bits(long i, long n)
{
	return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

/* tensor_type_fallback: a type whose block does not divide the row */
static int fallback(unsigned type, uint64_t cols)
{
	if (cols % qs_gguf_block_weights(type) == 0)
		return (int)type;
	switch (type) {
	case QS_GGUF_Q2_K:
	case QS_GGUF_Q3_K: type = QS_GGUF_Q4_0; break;
	case QS_GGUF_Q4_K: type = QS_GGUF_Q5_0; break;
	case QS_GGUF_Q5_K: type = QS_GGUF_Q5_1; break;
	case QS_GGUF_Q6_K: type = QS_GGUF_Q8_0; break;
	default: break;
	}
	return cols % qs_gguf_block_weights(type) == 0 ? (int)type : -1;
}

int qs_preset_choose(const struct qs_preset *p, const struct qs_st_tensor *t, char *buf,
		     size_t len)
{
	const char *name = t->name;
	enum category c = category_of(name);
	if (t->ndim < 2 || !ends_with(name, "weight") || c == CAT_ROUTER)
		return 1;
	uint64_t cols = t->shape[t->ndim - 1];
	enum qs_preset_kind k = p->kind;
	unsigned type = default_type[k];
	long i = layer_of(name), n = (long)p->n_layer;
	bool moe8 = p->n_expert == 8;

	if (c == CAT_OUTPUT || (p->tied && c == CAT_EMBD)) {
		type = cols % QS_GGUF_QK_K ? QS_GGUF_Q8_0 : QS_GGUF_Q6_K;
	} else if (c == CAT_V) {
		/* llama.cpp counts attn_v tensors in layer order: the layer */
		long nv = (long)p->n_attn_v;
		if (k == QS_PRESET_Q3_K_M)
			type = i < 2 ? QS_GGUF_Q5_K : QS_GGUF_Q4_K;
		else if ((k == QS_PRESET_Q4_K_M || k == QS_PRESET_Q5_K_M) && use_more_bits(i, nv))
			type = QS_GGUF_Q6_K;
		if (p->is_70b && (type == QS_GGUF_Q3_K || type == QS_GGUF_Q4_K))
			type = QS_GGUF_Q5_K;
		if (moe8)
			type = QS_GGUF_Q8_0;
	} else if (c == CAT_K) {
		if (moe8)
			type = QS_GGUF_Q8_0;
	} else if (c == CAT_DOWN) {
		if (k == QS_PRESET_Q3_K_M)
			type = i < n / 16 ? QS_GGUF_Q5_K : QS_GGUF_Q4_K;
		else if ((k == QS_PRESET_Q4_K_M || k == QS_PRESET_Q5_K_M) && use_more_bits(i, n))
			type = QS_GGUF_Q6_K;
	} else if (c == CAT_O) {
		if (moe8 && (k == QS_PRESET_Q3_K_M || k == QS_PRESET_Q4_K_M))
			type = QS_GGUF_Q5_K;
		else if (!moe8 && k == QS_PRESET_Q3_K_M)
			type = QS_GGUF_Q4_K;
	}
	int f = fallback(type, cols);
	if (f < 0)
		return 1;
	snprintf(buf, len, "gguf:type=%s", qs_gguf_types[f].name);
	return 0;
}

/* gguf_arch.c - from a Hugging Face config.json and tensor names to what
 * llama.cpp reads: the architecture's metadata keys and the GGUF tensor
 * names (docs/gguf.md "Standardized tensor names"; llama.cpp's
 * LLM_ARCH_LLAMA tensor list).
 *
 * Handled: LlamaForCausalLM, MistralForCausalLM and MixtralForCausalLM,
 * all llama.cpp's "llama" architecture (a Mixtral is a llama with
 * llama.expert_count experts per layer), and Qwen2ForCausalLM ("qwen2").  Anything else is
 * refused by name rather than written into a file llama.cpp would misread.
 *
 * Hugging Face stores q_proj/k_proj rows in the "rotate half" order of
 * its rotary embedding; llama.cpp's llama architecture rotates adjacent
 * pairs, so convert_hf_to_gguf.py (LlamaModel.permute) reorders the rows of
 * each head: reshape(n_head, 2, head_dim/2, cols).swapaxes(1, 2).  Output
 * row h*hd + 2i + j is input row h*hd + j*hd/2 + i.  export applies it
 * (perm_heads), with n_head for q and n_head_kv for k.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "util.h"

/* permute: llama.cpp's llama architecture rotates adjacent pairs (rows
 * permuted below); its qwen2 architecture rotates halves as Hugging Face
 * does (rows as they are) and requires the q/k/v biases. */
static const struct {
	const char *hf, *gguf;
	bool permute, moe;
} archs[] = {
	{"LlamaForCausalLM", "llama", true, false},
	{"MistralForCausalLM", "llama", true, false},
	{"MixtralForCausalLM", "llama", true, true},
	{"Qwen2ForCausalLM", "qwen2", false, false},
};

/* Sanity bounds: far beyond any published model, small enough that no
 * product of two of them overflows 64 bits and a lying config.json is
 * caught here instead of as a confusing shape mismatch. */
#define DIM_MAX (1u << 20)
#define LAYERS_MAX 4096u
#define CTX_MAX (1u << 30)

static int bad(struct qs_diag *diag, const char *fname, const char *field, const char *why)
{
	return qs_diag_set(diag, -QS_EFORMAT, "'%s': config.json: '%s' %s", fname, field, why);
}

/* A positive integer field; def = 0 means required. */
static int get_uint(const char *fname, json_t *root, const char *field, uint32_t def,
		    uint32_t max, uint32_t *out, struct qs_diag *diag)
{
	json_t *v = json_object_get(root, field);
	if (!v || json_is_null(v)) {
		if (!def)
			return bad(diag, fname, field, "is missing");
		*out = def;
		return 0;
	}
	if (!json_is_integer(v))
		return bad(diag, fname, field, "is not an integer");
	json_int_t x = json_integer_value(v);
	if (x < 1 || (uint64_t)x > max) {
		char why[64];
		snprintf(why, sizeof(why), "is %lld, outside 1..%u", (long long)x, max);
		return bad(diag, fname, field, why);
	}
	*out = (uint32_t)x;
	return 0;
}

static int get_real(const char *fname, json_t *root, const char *field, double def, double lo,
		    double hi, float *out, struct qs_diag *diag)
{
	json_t *v = json_object_get(root, field);
	if (!v || json_is_null(v)) {
		if (def == 0)
			return bad(diag, fname, field, "is missing");
		*out = (float)def;
		return 0;
	}
	if (!json_is_number(v))
		return bad(diag, fname, field, "is not a number");
	double x = json_number_value(v);
	if (!(x > lo && x < hi)) {
		char why[96];
		snprintf(why, sizeof(why), "is %g, outside (%g, %g)", x, lo, hi);
		return bad(diag, fname, field, why);
	}
	*out = (float)x;
	return 0;
}

static int rope_scaling(const char *fname, json_t *root, struct qs_gguf_arch *a,
			struct qs_diag *diag)
{
	json_t *rs = json_object_get(root, "rope_scaling");
	if (!rs || json_is_null(rs))
		return 0;
	if (!json_is_object(rs))
		return bad(diag, fname, "rope_scaling", "is not an object");
	json_t *t = json_object_get(rs, "rope_type");
	if (!t)
		t = json_object_get(rs, "type");
	if (!json_is_string(t))
		return bad(diag, fname, "rope_scaling.rope_type", "is missing");
	const char *type = json_string_value(t);
	int rc;
	if (strcmp(type, "default") == 0)
		return 0;
	if ((rc = get_real(fname, rs, "factor", 0, 0, 1e6, &a->rope_factor, diag)) < 0)
		return rc;
	if (strcmp(type, "linear") == 0) {
		a->rope_type = "linear";
		return 0;
	}
	if (strcmp(type, "yarn") == 0) {
		a->rope_type = "yarn";
		return get_uint(fname, rs, "original_max_position_embeddings", 0, CTX_MAX,
				&a->rope_orig_ctx, diag);
	}
	if (strcmp(type, "llama3") == 0) {
		a->rope_type = "llama3";
		if ((rc = get_uint(fname, rs, "original_max_position_embeddings", 8192, CTX_MAX,
				   &a->rope_orig_ctx, diag)) < 0 ||
		    (rc = get_real(fname, rs, "low_freq_factor", 1.0, 0, 1e6, &a->rope_low_freq,
				   diag)) < 0 ||
		    (rc = get_real(fname, rs, "high_freq_factor", 4.0, 0, 1e6, &a->rope_high_freq,
				   diag)) < 0)
			return rc;
		if (!(a->rope_high_freq > a->rope_low_freq))
			return bad(diag, fname, "rope_scaling.high_freq_factor",
				   "is not above low_freq_factor");
		return 0;
	}
	char why[160];
	snprintf(why, sizeof(why), "type '%.64s' is not supported (known: linear, yarn, llama3)",
		 type);
	return bad(diag, fname, "rope_scaling", why);
}

int qs_gguf_arch_parse(const char *fname, const char *config_json, struct qs_gguf_arch *a,
		       char *hf_arch_buf, size_t hf_arch_len, struct qs_diag *diag)
{
	memset(a, 0, sizeof(*a));
	if (!config_json)
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': holds no config.json (convert it from a checkpoint folder "
				   "that has one)", fname);
	json_error_t jerr;
	json_t *root = json_loads(config_json, 0, &jerr);
	int rc = 0;
	if (!json_is_object(root)) {
		rc = qs_diag_set(diag, -QS_EFORMAT, "'%s': config.json is not a JSON object",
				 fname);
		goto out;
	}
	json_t *arr = json_object_get(root, "architectures");
	json_t *first = json_is_array(arr) ? json_array_get(arr, 0) : NULL;
	if (!json_is_string(first)) {
		rc = bad(diag, fname, "architectures", "is missing");
		goto out;
	}
	snprintf(hf_arch_buf, hf_arch_len, "%s", json_string_value(first));
	a->hf_arch = hf_arch_buf;
	bool moe = false;
	for (size_t i = 0; i < sizeof(archs) / sizeof(archs[0]); i++)
		if (strcmp(archs[i].hf, hf_arch_buf) == 0) {
			a->arch = archs[i].gguf;
			a->permute_qk = archs[i].permute;
			moe = archs[i].moe;
		}
	if (!a->arch) {
		rc = qs_diag_set(diag, -QS_EDTYPE,
				 "'%s': architecture '%.100s' is not supported by export "
				 "(supported: LlamaForCausalLM, MistralForCausalLM, MixtralForCausalLM, "
				 "Qwen2ForCausalLM)",
				 fname, hf_arch_buf);
		goto out;
	}
	if ((rc = get_uint(fname, root, "hidden_size", 0, DIM_MAX, &a->hidden, diag)) < 0 ||
	    (rc = get_uint(fname, root, "num_hidden_layers", 0, LAYERS_MAX, &a->layers, diag)) < 0 ||
	    (rc = get_uint(fname, root, "num_attention_heads", 0, DIM_MAX, &a->heads, diag)) < 0 ||
	    (rc = get_uint(fname, root, "intermediate_size", 0, DIM_MAX, &a->ffn, diag)) < 0 ||
	    (rc = get_uint(fname, root, "max_position_embeddings", 0, CTX_MAX, &a->ctx, diag)) < 0 ||
	    (rc = get_uint(fname, root, "num_key_value_heads", a->heads, DIM_MAX, &a->kv_heads,
			   diag)) < 0 ||
	    (rc = get_real(fname, root, "rms_norm_eps", 0, 0, 1, &a->rms_eps, diag)) < 0 ||
	    (rc = get_real(fname, root, "rope_theta", 10000.0, 0, 1e12, &a->rope_theta, diag)) < 0)
		goto out;
	if (a->hidden % a->heads != 0 && !json_object_get(root, "head_dim")) {
		rc = bad(diag, fname, "num_attention_heads", "does not divide hidden_size");
		goto out;
	}
	if ((rc = get_uint(fname, root, "head_dim", a->hidden / a->heads ? a->hidden / a->heads : 1,
			   DIM_MAX, &a->head_dim, diag)) < 0)
		goto out;
	if (a->head_dim % 2 != 0) {
		rc = bad(diag, fname, "head_dim", "is odd (rotary embeddings rotate pairs)");
		goto out;
	}
	if (a->kv_heads > a->heads || a->heads % a->kv_heads != 0) {
		rc = bad(diag, fname, "num_key_value_heads", "does not divide num_attention_heads");
		goto out;
	}
	json_t *vs = json_object_get(root, "vocab_size");
	if (vs && !json_is_null(vs) &&
	    (rc = get_uint(fname, root, "vocab_size", 0, 1u << 26, &a->vocab, diag)) < 0)
		goto out;
	a->tied = json_is_true(json_object_get(root, "tie_word_embeddings"));
	/* Mixtral's config.json: num_local_experts experts per layer, of which
	 * num_experts_per_tok run for each token (llama.cpp's LLAMA_MAX_EXPERTS
	 * is 512) */
	if (moe &&
	    ((rc = get_uint(fname, root, "num_local_experts", 0, 512, &a->n_expert, diag)) < 0 ||
	     (rc = get_uint(fname, root, "num_experts_per_tok", 0, a->n_expert, &a->n_expert_used,
			    diag)) < 0))
		goto out;
	rc = rope_scaling(fname, root, a, diag);
out:
	json_decref(root);
	return rc;
}

static const struct {
	const char *hf, *gguf;
} layer_names[] = {
	{"input_layernorm.weight", "attn_norm.weight"},
	{"self_attn.q_proj.weight", "attn_q.weight"},
	{"self_attn.k_proj.weight", "attn_k.weight"},
	{"self_attn.v_proj.weight", "attn_v.weight"},
	{"self_attn.o_proj.weight", "attn_output.weight"},
	{"self_attn.q_proj.bias", "attn_q.bias"},
	{"self_attn.k_proj.bias", "attn_k.bias"},
	{"self_attn.v_proj.bias", "attn_v.bias"},
	{"post_attention_layernorm.weight", "ffn_norm.weight"},
	{"mlp.gate_proj.weight", "ffn_gate.weight"},
	{"mlp.up_proj.weight", "ffn_up.weight"},
	{"mlp.down_proj.weight", "ffn_down.weight"},
	/* Mixtral's router */
	{"block_sparse_moe.gate.weight", "ffn_gate_inp.weight"},
};

int qs_gguf_tensor_name(const struct qs_gguf_arch *a, const char *hf, char *out, size_t len,
			int *layer, uint32_t *perm_heads)
{
	*layer = -1;
	*perm_heads = 0;
	if (strcmp(hf, "model.embed_tokens.weight") == 0) {
		snprintf(out, len, "token_embd.weight");
		return 0;
	}
	if (strcmp(hf, "model.norm.weight") == 0) {
		snprintf(out, len, "output_norm.weight");
		return 0;
	}
	if (strcmp(hf, "lm_head.weight") == 0) {
		snprintf(out, len, "output.weight");
		return 0;
	}
	static const char pre[] = "model.layers.";
	if (strncmp(hf, pre, sizeof(pre) - 1) != 0)
		return -1;
	const char *p = hf + sizeof(pre) - 1;
	char *end;
	if (*p < '0' || *p > '9')
		return -1;
	unsigned long n = strtoul(p, &end, 10);
	if (*end != '.' || n >= a->layers || (p[0] == '0' && end != p + 1))
		return -1;
	const char *rest = end + 1;
	if (strcmp(rest, "self_attn.rotary_emb.inv_freq") == 0)
		return 1;  /* recomputed by llama.cpp from rope.freq_base */
	for (size_t i = 0; i < sizeof(layer_names) / sizeof(layer_names[0]); i++) {
		if (strcmp(rest, layer_names[i].hf) != 0 ||
		    (!a->n_expert && strncmp(rest, "block_sparse_moe.", 17) == 0))
			continue;
		snprintf(out, len, "blk.%lu.%s", n, layer_names[i].gguf);
		*layer = (int)n;
		if (a->permute_qk && strncmp(rest, "self_attn.q_proj.", 17) == 0)
			*perm_heads = a->heads;
		else if (a->permute_qk && strncmp(rest, "self_attn.k_proj.", 17) == 0)
			*perm_heads = a->kv_heads;
		return 0;
	}
	return -1;
}

/* A decimal number without sign or leading zeros below max; *end after it. */
static int index_of(const char *p, unsigned long max, unsigned long *out, const char **end)
{
	char *e;
	if (*p < '0' || *p > '9')
		return -1;
	unsigned long n = strtoul(p, &e, 10);
	if (n >= max || (p[0] == '0' && e != p + 1))
		return -1;
	*out = n;
	*end = e;
	return 0;
}

int qs_gguf_expert_name(const struct qs_gguf_arch *a, const char *hf, char *out, size_t len,
			int *layer, uint32_t *expert)
{
	static const char pre[] = "model.layers.", mid[] = ".block_sparse_moe.experts.";
	/* Mixtral's w1 is the gate, w2 the down and w3 the up projection
	 * (MixtralBlockSparseTop2MLP: w2(act(w1(x)) * w3(x))) */
	static const char *const proj[] = {"ffn_gate_exps", "ffn_down_exps", "ffn_up_exps"};
	unsigned long l, e;
	const char *p;
	if (!a->n_expert || strncmp(hf, pre, sizeof(pre) - 1) != 0 ||
	    index_of(hf + sizeof(pre) - 1, a->layers, &l, &p) < 0 ||
	    strncmp(p, mid, sizeof(mid) - 1) != 0 ||
	    index_of(p + sizeof(mid) - 1, a->n_expert, &e, &p) < 0)
		return -1;
	if (p[0] != '.' || p[1] != 'w' || p[2] < '1' || p[2] > '3' || strcmp(p + 3, ".weight") != 0)
		return -1;
	snprintf(out, len, "blk.%lu.%s.weight", l, proj[p[2] - '1']);
	*layer = (int)l;
	*expert = (uint32_t)e;
	return 0;
}

void qs_gguf_arch_kv(const struct qs_gguf_arch *a, uint32_t vocab_rows, struct qs_gguf_kv *kv)
{
	char k[96];
#define KEY(suffix) (snprintf(k, sizeof(k), "%s." suffix, a->arch), k)
	qs_gguf_kv_u32(kv, KEY("vocab_size"), vocab_rows);
	qs_gguf_kv_u32(kv, KEY("context_length"), a->ctx);
	qs_gguf_kv_u32(kv, KEY("embedding_length"), a->hidden);
	qs_gguf_kv_u32(kv, KEY("block_count"), a->layers);
	qs_gguf_kv_u32(kv, KEY("feed_forward_length"), a->ffn);
	qs_gguf_kv_u32(kv, KEY("attention.head_count"), a->heads);
	qs_gguf_kv_u32(kv, KEY("attention.head_count_kv"), a->kv_heads);
	qs_gguf_kv_f32(kv, KEY("attention.layer_norm_rms_epsilon"), a->rms_eps);
	qs_gguf_kv_f32(kv, KEY("rope.freq_base"), a->rope_theta);
	qs_gguf_kv_u32(kv, KEY("rope.dimension_count"), a->head_dim);
	if (a->n_expert) {
		qs_gguf_kv_u32(kv, KEY("expert_count"), a->n_expert);
		qs_gguf_kv_u32(kv, KEY("expert_used_count"), a->n_expert_used);
	}
	/* llama.cpp assumes hidden / heads unless told */
	if (a->head_dim != a->hidden / a->heads) {
		qs_gguf_kv_u32(kv, KEY("attention.key_length"), a->head_dim);
		qs_gguf_kv_u32(kv, KEY("attention.value_length"), a->head_dim);
	}
	if (a->rope_type && strcmp(a->rope_type, "llama3") != 0) {
		qs_gguf_kv_str(kv, KEY("rope.scaling.type"), a->rope_type);
		qs_gguf_kv_f32(kv, KEY("rope.scaling.factor"), a->rope_factor);
		if (a->rope_orig_ctx)
			qs_gguf_kv_u32(kv, KEY("rope.scaling.original_context_length"),
				       a->rope_orig_ctx);
	}
#undef KEY
}

/* Llama 3.1's rope scaling (config.json rope_type "llama3"), which
 * llama.cpp reads as per-dimension frequency factors in rope_freqs.weight.
 * The definition is Meta's (also convert_hf_to_gguf.py's): with
 * freq_i = theta^(-2i/d) and wavelen = 2 pi / freq_i, wavelengths shorter
 * than old_ctx / high_freq_factor keep factor 1, longer than
 * old_ctx / low_freq_factor get factor, and in between
 * 1 / ((1 - s) / factor + s), s = (old_ctx / wavelen - low) / (high - low). */
void qs_gguf_rope_llama3_factors(const struct qs_gguf_arch *a, float *out)
{
	double lo_wl = a->rope_orig_ctx / (double)a->rope_low_freq;
	double hi_wl = a->rope_orig_ctx / (double)a->rope_high_freq;
	for (uint32_t i = 0; i < a->head_dim / 2; i++) {
		/* f32 as the reference computes the frequencies */
		float freq = 1.0f / powf(a->rope_theta, (float)(2 * i) / (float)a->head_dim);
		double wl = 2 * M_PI / freq;
		double f;
		if (wl < hi_wl) {
			f = 1;
		} else if (wl > lo_wl) {
			f = a->rope_factor;
		} else {
			double s = (a->rope_orig_ctx / wl - a->rope_low_freq) /
				   (a->rope_high_freq - a->rope_low_freq);
			f = 1 / ((1 - s) / a->rope_factor + s);
		}
		out[i] = (float)f;
	}
}

/* export.c - qs_export: a .qshard file as a GGUF v3 file llama.cpp loads.
 *
 * Everything is decided before any data is written (names, types, sizes,
 * metadata, vocabulary), then tensors are streamed chunk by chunk: each
 * chunk is read with its checksums verified, turned into the tensor's GGUF
 * type and appended.  Memory is bounded by --memory: at most one chunk's
 * compressed frame, payload, f32 weights and output bytes, plus one head of
 * rows while q/k rows are permuted.
 *
 * Per tensor, in order of preference:
 *   gguf:type=T payloads      are ggml blocks already: copied byte for byte;
 *   rtn bits=4 group=32       (also athena, and gptq without outliers) is
 *                             exactly Q4_1: codes repacked, nothing rounded;
 *   raw F32/F16/BF16          stay as they are;
 *   1-D tensors               (norms, biases) become F32, raw or quantized,
 *                             which llama.cpp's norm and bias kernels expect;
 *   anything else             is dequantized and quantized to --type
 *                             (default q8_0), and reported.
 * A float --type (f32, f16, bf16) dequantizes every quantized tensor: the
 * reference a quantized export is compared against.
 *
 * Mixtral's experts, one Hugging Face tensor each, become one 3-D GGUF
 * tensor per layer and projection (gguf_arch.c), whose data is the
 * experts' data in expert order, all of one type: each expert is planned
 * as above and streamed in turn; experts whose payloads would land in
 * different types (other schemes, or raw among quantized) are all
 * requantized to --type instead.  The router
 * (ffn_gate_inp) is F32 when quantized: llama-quantize never quantizes
 * it.
 *
 * The output is a pure function of the input file and the options, so an
 * export killed at any point and run again gives the same bytes.
 */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "container.h"
#include "gguf.h"
#include "kernels.h"
#include "scheme.h"
#include "util.h"

enum how {
	HOW_RAW,       /* raw payload in the output type already */
	HOW_RAW_F32,   /* raw F16/BF16 widened to F32 */
	HOW_Q4_1,      /* rtn 4-bit g32 codes repacked */
	HOW_COPY,      /* gguf:type=T payload copied */
	HOW_REQUANT,   /* dequantized, then quantized to the output type */
	HOW_ROPE,      /* generated: llama3 rope frequency factors */
	HOW_RAW_REQUANT, /* raw F32/F16/BF16 quantized to the output type (an
			  * expert stacked with quantized ones) */
};

struct out_tensor {
	struct qs_gguf_tensor g;
	const struct qs_record *rec;
	enum how how;
	struct qs_scheme scheme;  /* HOW_REQUANT: the payload's scheme */
	/* HOW_REQUANT into a block type this build quantizes only through the
	 * gguf scheme (gguf:type=T, whose payload is the ggml blocks) */
	struct qs_scheme target;
	bool via_scheme;
	uint64_t rows, cols;
	uint32_t perm_heads;      /* q/k row permutation (0: none) */
	uint64_t row_bytes;       /* output bytes per row */
	/* what the permutation moves: rows of a matrix, elements of a 1-D
	 * bias (always F32) */
	uint64_t units, unit_bytes;
	/* a stack of experts: their records by expert number while the file
	 * is read, then each expert's own plan; the data is theirs in order */
	const struct qs_record **expert_recs;
	struct out_tensor *experts;
	uint32_t nexperts;
};

/* Grow-only work buffers; their total is what --memory bounds. */
struct bufs {
	void *payload, *f32, *out, *head, *scratch;
	size_t payload_cap, f32_cap, out_cap, head_cap, scratch_cap;
};

static void bufs_free(struct bufs *b)
{
	free(b->payload);
	free(b->f32);
	free(b->out);
	free(b->head);
	free(b->scratch);
	memset(b, 0, sizeof(*b));
}

static size_t bufs_total(const struct bufs *b)
{
	return b->payload_cap + b->f32_cap + b->out_cap + b->head_cap + b->scratch_cap;
}

static int grow(void **p, size_t *cap, uint64_t need)
{
	if (need <= *cap)
		return 0;
	if (need > SIZE_MAX)
		return -ENOMEM;
	void *n = realloc(*p, (size_t)need);
	if (!n)
		return -ENOMEM;
	*p = n;
	*cap = (size_t)need;
	return 0;
}

static uint64_t max_u64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

static bool is_float_type(const struct qs_ggml_type *t)
{
	return t->block == 1;
}

/* rtn:bits=4,group=32 and its exact relatives: the payload is rtn's. */
static bool q4_1_exact(const struct qs_scheme *s, uint64_t cols)
{
	const char *n = s->ops->name;
	unsigned bits = 0, group = 0, alpha = 0;
	if (qs_scheme_param(s, "bits", &bits) < 0 || qs_scheme_param(s, "group", &group) < 0)
		return false;
	bool rtn_payload = strcmp(n, "rtn") == 0 || strcmp(n, "athena") == 0 ||
			   strcmp(n, "gptq-clip") == 0 ||
			   (strcmp(n, "gptq") == 0 && qs_scheme_param(s, "alpha", &alpha) == 0 &&
			    alpha == 0);
	return rtn_payload && bits == 4 && group == 32 && cols % 32 == 0;
}

/* The ggml type a gguf:type=T scheme text names, or NULL. */
static const struct qs_ggml_type *gguf_scheme_type(const char *scheme)
{
	static const char pre[] = "gguf:type=";
	if (strncmp(scheme, pre, sizeof(pre) - 1) != 0)
		return NULL;
	const struct qs_ggml_type *t = qs_ggml_type_find(scheme + sizeof(pre) - 1);
	return t && t->block > 1 ? t : NULL;
}

struct ctx {
	const struct qs_export_opts *o;
	struct qs_qfile *qf;
	const char *fname;
	struct qs_gguf_arch arch;
	char hf_arch[128];
	const struct qs_ggml_type *type;  /* --type */
	struct qs_scheme type_scheme;     /* gguf:type=T when type->from_f32 is NULL */
	bool type_via_scheme;
	struct out_tensor *ts;
	size_t nts;
	float *rope;                      /* HOW_ROPE data */
	struct qs_diag *diag;
	uint64_t budget;
};

static void notice(struct ctx *c, const char *tensor, const char *fmt, const char *a,
		   const char *b)
{
	if (!c->o->notice)
		return;
	char msg[512];
	snprintf(msg, sizeof(msg), fmt, a, b);
	c->o->notice(tensor, msg, c->o->notice_user);
}

/* Quantizes t into type through the gguf scheme gguf:type=T (its payload
 * is exactly the ggml blocks); -1 when this build has no such scheme. */
static int set_scheme_target(struct out_tensor *t, const struct qs_ggml_type *type)
{
	char spec[64];
	struct qs_diag ignore;
	snprintf(spec, sizeof(spec), "gguf:type=%s", type->name);
	if (qs_scheme_parse(spec, &t->target, &ignore) < 0)
		return -1;
	t->via_scheme = true;
	return 0;
}

/* Chooses the output type and conversion of one tensor.  exact_ok false:
 * a quantized payload is requantized to --type even where it could be
 * copied (experts stacked with others of another type). */
static int plan_tensor(struct ctx *c, const struct qs_record *r, struct out_tensor *t,
		       bool exact_ok)
{
	t->rec = r;
	t->cols = r->ndim ? r->shape[r->ndim - 1] : 1;
	t->rows = 1;
	for (uint32_t d = 0; d + 1 < r->ndim; d++)
		t->rows *= r->shape[d];  /* the reader checked the product fits */
	if (r->ndim > QS_GGUF_MAX_DIMS)
		return qs_diag_set(c->diag, -QS_EFORMAT,
				   "'%s': tensor '%s' has %u dimensions, GGUF holds at most %u",
				   c->fname, r->name, (unsigned)r->ndim, QS_GGUF_MAX_DIMS);
	t->g.ndim = r->ndim ? r->ndim : 1;
	for (uint32_t d = 0; d < r->ndim; d++)
		t->g.ne[d] = r->shape[r->ndim - 1 - d];
	if (!r->ndim)
		t->g.ne[0] = 1;

	if (strcmp(r->scheme, "raw") == 0) {
		const struct qs_ggml_type *f32 = qs_ggml_type_by_id(QS_GGML_F32);
		switch (r->dtype) {
		case QS_DTYPE_F32:
			t->g.type = f32;
			t->how = HOW_RAW;
			break;
		case QS_DTYPE_F16:
		case QS_DTYPE_BF16:
			if (r->ndim <= 1) {
				t->g.type = f32;
				t->how = HOW_RAW_F32;
			} else {
				t->g.type = qs_ggml_type_by_id(r->dtype == QS_DTYPE_F16 ? QS_GGML_F16
											: QS_GGML_BF16);
				t->how = HOW_RAW;
			}
			break;
		default:
			return qs_diag_set(c->diag, -QS_EDTYPE,
					   "'%s': tensor '%s': stored as %s, which GGUF export does "
					   "not handle (F32, F16, BF16)",
					   c->fname, r->name, qs_dtype_name(r->dtype));
		}
	} else {
		struct qs_diag ignore;
		if (qs_scheme_parse(r->scheme, &t->scheme, &ignore) < 0)
			return qs_diag_set(c->diag, -QS_EFORMAT,
					   "'%s': tensor '%s': scheme '%s' is unknown to this qshard",
					   c->fname, r->name, r->scheme);
		const struct qs_ggml_type *native = exact_ok ? gguf_scheme_type(r->scheme) : NULL;
		if (r->ndim <= 1 || strstr(t->g.name, ".ffn_gate_inp.")) {
			/* norms and biases: llama.cpp's kernels want F32, and a bias's
			 * q/k permutation moves single elements */
			t->g.type = qs_ggml_type_by_id(QS_GGML_F32);
			t->how = HOW_REQUANT;
			notice(c, r->name, "dequantized from %s to f32 (%s)", r->scheme,
			       r->ndim <= 1 ? "1-D" : "the router, which llama.cpp keeps unquantized");
		} else if (is_float_type(c->type)) {
			t->g.type = c->type;
			t->how = HOW_REQUANT;
			notice(c, r->name, "dequantized from %s to %s", r->scheme, c->type->name);
		} else if (native && t->cols % native->block == 0) {
			t->g.type = native;
			t->how = HOW_COPY;
		} else if (exact_ok && q4_1_exact(&t->scheme, t->cols)) {
			t->g.type = qs_ggml_type_by_id(QS_GGML_Q4_1);
			t->how = HOW_Q4_1;
		} else if (t->cols % c->type->block == 0) {
			t->g.type = c->type;
			t->how = HOW_REQUANT;
			t->via_scheme = c->type_via_scheme;
			t->target = c->type_scheme;
			notice(c, r->name, "requantized from %s to %s", r->scheme, c->type->name);
		} else {
			/* rows that are no whole number of blocks: the type
			 * llama-quantize falls back to for them */
			const struct qs_ggml_type *fb = qs_ggml_fallback(c->type, t->cols);
			if (!fb->from_f32 && set_scheme_target(t, fb) < 0)
				fb = qs_ggml_type_by_id(QS_GGML_F16);
			t->g.type = fb;
			t->how = HOW_REQUANT;
			char why[160];
			snprintf(why, sizeof(why), "%s (rows of %llu are not whole %s blocks)",
				 fb->name, (unsigned long long)t->cols, c->type->name);
			notice(c, r->name, "requantized from %s to %s, llama-quantize's fallback",
			       r->scheme, why);
		}
	}
	t->row_bytes = qs_ggml_row_bytes(t->g.type, t->cols);
	t->units = r->ndim <= 1 ? t->cols : t->rows;
	t->unit_bytes = r->ndim <= 1 ? t->g.type->block_bytes : t->row_bytes;
	if (!t->row_bytes && t->cols)
		return qs_diag_set(c->diag, -QS_ETOOBIG, "'%s': tensor '%s': row too large",
				   c->fname, r->name);
	if (!qs_mul_u64(t->row_bytes, t->rows, &t->g.bytes))
		return qs_diag_set(c->diag, -QS_ETOOBIG, "'%s': tensor '%s': too large", c->fname,
				   r->name);
	return 0;
}

/* Files expert e's record under its stack (c->ts[c->nts].g.name, from
 * qs_gguf_expert_name), starting the stack at the first of its experts. */
static int add_expert(struct ctx *c, const struct qs_record *r, uint32_t e)
{
	const char *name = c->ts[c->nts].g.name;
	struct out_tensor *t = NULL;
	for (size_t i = 0; i < c->nts && !t; i++)
		if (c->ts[i].expert_recs && strcmp(c->ts[i].g.name, name) == 0)
			t = &c->ts[i];
	if (!t) {
		t = &c->ts[c->nts++];
		t->expert_recs = calloc(c->arch.n_expert, sizeof(*t->expert_recs));
		if (!t->expert_recs)
			return qs_diag_set(c->diag, -ENOMEM, "out of memory");
		t->nexperts = c->arch.n_expert;
	}
	if (t->expert_recs[e])
		return qs_diag_set(c->diag, -QS_EFORMAT, "'%s': tensor '%s' appears twice",
				   c->fname, r->name);
	t->expert_recs[e] = r;
	return 0;
}

/* A raw 2-D tensor quantized to --type (or its fallback for the row). */
static int plan_raw_requant(struct ctx *c, struct out_tensor *t)
{
	const struct qs_ggml_type *ty = qs_ggml_fallback(c->type, t->cols);
	t->via_scheme = false;
	if (!ty->from_f32 && set_scheme_target(t, ty) < 0)
		ty = qs_ggml_type_by_id(QS_GGML_F16);
	t->g.type = ty;
	t->how = HOW_RAW_REQUANT;
	t->row_bytes = qs_ggml_row_bytes(ty, t->cols);
	t->units = t->rows;
	t->unit_bytes = t->row_bytes;
	if (!t->row_bytes || !qs_mul_u64(t->row_bytes, t->rows, &t->g.bytes))
		return qs_diag_set(c->diag, -QS_ETOOBIG, "'%s': tensor '%s': too large", c->fname,
				   t->rec->name);
	notice(c, t->rec->name, "quantized from %s to %s", qs_dtype_name(t->rec->dtype), ty->name);
	return 0;
}

/* Plans each expert of a stack; when they would be written in different
 * types (a GGUF tensor has one), a second pass quantizes every one of them,
 * raw ones included, to --type (or its fallback for the row). */
static int plan_stack(struct ctx *c, struct out_tensor *t)
{
	t->experts = calloc(t->nexperts, sizeof(*t->experts));
	if (!t->experts)
		return qs_diag_set(c->diag, -ENOMEM, "out of memory");
	int rc;
	for (int pass = 0; pass < 2; pass++) {
		bool same = true;
		for (uint32_t e = 0; e < t->nexperts; e++) {
			struct out_tensor *x = &t->experts[e];
			memset(x, 0, sizeof(*x));
			memcpy(x->g.name, t->g.name, sizeof(x->g.name));
			if (!t->expert_recs[e])  /* check_model saw every expert */
				return qs_diag_set(c->diag, -QS_EFORMAT,
						   "'%s': '%s' lacks expert %u", c->fname, t->g.name,
						   (unsigned)e);
			if ((rc = plan_tensor(c, t->expert_recs[e], x, pass == 0)) < 0)
				return rc;
			if (pass == 1 && x->how == HOW_RAW && (rc = plan_raw_requant(c, x)) < 0)
				return rc;
			if (x->g.ndim != 2 || x->rows != t->experts[0].rows ||
			    x->cols != t->experts[0].cols)
				return qs_diag_set(c->diag, -QS_EFORMAT,
						   "'%s': tensor '%s' is not shaped as expert 0 of "
						   "its layer", c->fname, x->rec->name);
			same = same && x->g.type == t->experts[0].g.type;
		}
		if (same)
			break;
		if (pass == 1)
			return qs_diag_set(c->diag, -QS_EDTYPE,
					   "'%s': the experts of '%s' would be written as %s and %s, "
					   "but a GGUF tensor has one type", c->fname, t->g.name,
					   t->experts[0].g.type->name, t->experts[1].g.type->name);
		if (c->o->notice) {
			char msg[256];
			snprintf(msg, sizeof(msg), "experts of %s have payloads of different types: "
				 "all requantized to %s", t->g.name, c->type->name);
			c->o->notice(t->g.name, msg, c->o->notice_user);
		}
	}
	const struct out_tensor *x = &t->experts[0];
	t->rec = x->rec;
	t->how = x->how;
	t->rows = x->rows;
	t->cols = x->cols;
	t->row_bytes = x->row_bytes;
	t->g.type = x->g.type;
	t->g.ndim = 3;
	t->g.ne[0] = x->cols;
	t->g.ne[1] = x->rows;
	t->g.ne[2] = t->nexperts;
	if (!qs_mul_u64(x->g.bytes, t->nexperts, &t->g.bytes))
		return qs_diag_set(c->diag, -QS_ETOOBIG, "'%s': '%s' is too large", c->fname,
				   t->g.name);
	return 0;
}

static const struct qs_record *find_record(const struct qs_qfile *qf, const char *name)
{
	for (size_t i = 0; i < qf->nrecords; i++)
		if (strcmp(qf->records[i].name, name) == 0)
			return &qf->records[i];
	return NULL;
}

/* Checks a tensor's shape against what config.json says it must be. */
static int check_shape(struct ctx *c, const char *name, uint64_t rows, uint64_t cols)
{
	const struct qs_record *r = find_record(c->qf, name);
	if (!r)
		return 0;
	uint64_t rr = 1, cc = r->ndim ? r->shape[r->ndim - 1] : 1;
	for (uint32_t d = 0; d + 1 < r->ndim; d++)
		rr *= r->shape[d];
	if ((rows && rr != rows) || (cols && cc != cols))
		return qs_diag_set(c->diag, -QS_EFORMAT,
				   "'%s': tensor '%s' is %llux%llu, config.json implies %llux%llu",
				   c->fname, name, (unsigned long long)rr, (unsigned long long)cc,
				   (unsigned long long)(rows ? rows : rr),
				   (unsigned long long)(cols ? cols : cc));
	return 0;
}

static int check_model(struct ctx *c, uint64_t *vocab_rows)
{
	const struct qs_gguf_arch *a = &c->arch;
	/* mixture-of-experts layouts (Mixtral's block_sparse_moe, the
	 * mlp.experts of Qwen/DeepSeek MoE) need stacked expert tensors */
	for (size_t i = 0; !a->n_expert && i < c->qf->nrecords; i++) {
		const char *n = c->qf->records[i].name;
		if (strstr(n, ".experts.") || strstr(n, "block_sparse_moe"))
			return qs_diag_set(c->diag, -QS_EDTYPE,
					   "'%s': tensor '%s': mixture-of-experts models are not "
					   "supported by export", c->fname, n);
	}
	const struct qs_record *emb = find_record(c->qf, "model.embed_tokens.weight");
	if (!emb || emb->ndim != 2)
		return qs_diag_set(c->diag, -QS_EFORMAT,
				   "'%s': no 2-D tensor 'model.embed_tokens.weight'", c->fname);
	*vocab_rows = emb->shape[0];
	if (emb->shape[1] != a->hidden)
		return qs_diag_set(c->diag, -QS_EFORMAT,
				   "'%s': config.json hidden_size %u, but 'model.embed_tokens.weight' "
				   "has %llu columns",
				   c->fname, a->hidden, (unsigned long long)emb->shape[1]);
	if (a->vocab && a->vocab != *vocab_rows)
		return qs_diag_set(c->diag, -QS_EFORMAT,
				   "'%s': config.json vocab_size %u, but 'model.embed_tokens.weight' "
				   "has %llu rows",
				   c->fname, a->vocab, (unsigned long long)*vocab_rows);
	uint64_t q = (uint64_t)a->heads * a->head_dim, kv = (uint64_t)a->kv_heads * a->head_dim;
	for (uint32_t l = 0; l < a->layers; l++) {
		char n[128];
		int rc;
		static const char *const need[] = {
			"self_attn.q_proj.weight", "self_attn.k_proj.weight",
			"self_attn.v_proj.weight", "self_attn.o_proj.weight",
			"input_layernorm.weight", "post_attention_layernorm.weight",
			"mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
			"block_sparse_moe.gate.weight",
		};
		for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
			/* a dense MLP, or Mixtral's router (its experts below) */
			if (a->n_expert ? i >= 6 && i < 9 : i == 9)
				continue;
			snprintf(n, sizeof(n), "model.layers.%u.%s", l, need[i]);
			if (!find_record(c->qf, n))
				return qs_diag_set(c->diag, -QS_EFORMAT,
						   "'%s': config.json says %u layers, but tensor '%s' "
						   "is missing", c->fname, a->layers, n);
		}
#define SHAPE(suffix, r, cc)                                                        \
	do {                                                                        \
		snprintf(n, sizeof(n), "model.layers.%u." suffix, l);               \
		if ((rc = check_shape(c, n, (r), (cc))) < 0)                        \
			return rc;                                                  \
	} while (0)
		SHAPE("self_attn.q_proj.weight", q, a->hidden);
		SHAPE("self_attn.k_proj.weight", kv, a->hidden);
		SHAPE("self_attn.v_proj.weight", kv, a->hidden);
		SHAPE("self_attn.o_proj.weight", a->hidden, q);
		SHAPE("mlp.gate_proj.weight", a->ffn, a->hidden);
		SHAPE("mlp.up_proj.weight", a->ffn, a->hidden);
		SHAPE("mlp.down_proj.weight", a->hidden, a->ffn);
		SHAPE("block_sparse_moe.gate.weight", a->n_expert, a->hidden);
		for (uint32_t e = 0; e < a->n_expert; e++) {
			static const char *const w[] = {"w1", "w3", "w2"};
			for (int k = 0; k < 3; k++) {
				snprintf(n, sizeof(n), "model.layers.%u.block_sparse_moe.experts.%u.%s.weight",
					 l, e, w[k]);
				if (!find_record(c->qf, n))
					return qs_diag_set(c->diag, -QS_EFORMAT,
							   "'%s': config.json says %u experts per layer, "
							   "but tensor '%s' is missing",
							   c->fname, a->n_expert, n);
				if ((rc = check_shape(c, n, k < 2 ? a->ffn : a->hidden,
						      k < 2 ? a->hidden : a->ffn)) < 0)
					return rc;
			}
		}
		SHAPE("self_attn.q_proj.bias", 0, q);
		SHAPE("self_attn.k_proj.bias", 0, kv);
		SHAPE("self_attn.v_proj.bias", 0, kv);
#undef SHAPE
		/* llama.cpp's qwen2 loads the q/k/v biases as required tensors */
		static const char *const bias[] = {"q_proj", "k_proj", "v_proj"};
		for (size_t i = 0; strcmp(a->arch, "qwen2") == 0 && i < 3; i++) {
			snprintf(n, sizeof(n), "model.layers.%u.self_attn.%s.bias", l, bias[i]);
			if (!find_record(c->qf, n))
				return qs_diag_set(c->diag, -QS_EFORMAT,
						   "'%s': %s needs tensor '%s', which is missing",
						   c->fname, a->hf_arch, n);
		}
	}
	return 0;
}

static int build_vocab(struct ctx *c, uint64_t vocab_rows, struct qs_gguf_kv *kv)
{
	const struct qs_export_opts *o = c->o;
	if (o->no_vocab) {
		qs_gguf_kv_str(kv, "tokenizer.ggml.model", "none");
		return 0;
	}
	if (o->vocab_from) {
		static const char *const prefixes[] = {"tokenizer.ggml.", "tokenizer.chat_template",
						       NULL};
		uint64_t found, ntok;
		int rc = qs_gguf_copy_keys(o->vocab_from, prefixes, kv, &found, &ntok, c->diag);
		if (rc < 0)
			return rc;
		if (ntok == UINT64_MAX)
			return qs_diag_set(c->diag, -QS_EFORMAT,
					   "'%s': has no tokenizer.ggml.tokens array", o->vocab_from);
		if (ntok != vocab_rows)
			return qs_diag_set(c->diag, -QS_EFORMAT,
					   "'%s': its vocabulary has %llu tokens, the model's "
					   "embedding %llu rows (another model family?)",
					   o->vocab_from, (unsigned long long)ntok,
					   (unsigned long long)vocab_rows);
		return 0;
	}
	const struct qs_side_file *tj = qs_header_file(&c->qf->header, "tokenizer.json");
	const struct qs_side_file *tm = qs_header_file(&c->qf->header, "tokenizer.model");
	const struct qs_side_file *tc = qs_header_file(&c->qf->header, "tokenizer_config.json");
	/* a SentencePiece model says exactly what its tokenizer.json (when
	 * there is one) derives from it */
	if (tm && (!tj || qs_gguf_tokenizer_json_is_spm((const char *)tj->data, tj->len)))
		return qs_gguf_vocab_from_spm(c->fname, tm->data, tm->len,
					      tj ? (const char *)tj->data : NULL, tj ? tj->len : 0,
					      tc ? (const char *)tc->data : NULL, vocab_rows, kv,
					      c->diag);
	if (!tj)
		return qs_diag_set(c->diag, -QS_EUSAGE,
				   "'%s': holds no tokenizer.json or tokenizer.model (converted by "
				   "an older qshard or from a folder without one); give "
				   "--vocab-from FILE.gguf or --no-vocab", c->fname);
	return qs_gguf_vocab_from_hf(c->fname, (const char *)tj->data, tj->len,
				     tc ? (const char *)tc->data : NULL, c->qf->header.config_json,
				     o->pre, vocab_rows, kv, c->diag);
}

/* general.file_type: the type holding most weights of the matrices. */
static uint32_t file_type(const struct ctx *c)
{
	uint64_t best = 0;
	uint32_t ft = 0;
	for (size_t i = 0; i < c->nts; i++) {
		uint64_t w = 0;
		const struct qs_ggml_type *t = c->ts[i].g.type;
		if (c->ts[i].g.ndim < 2)
			continue;
		for (size_t j = 0; j < c->nts; j++)
			if (c->ts[j].g.type == t && c->ts[j].g.ndim >= 2)
				w += c->ts[j].rows * c->ts[j].cols *
				     (c->ts[j].nexperts ? c->ts[j].nexperts : 1);
		if (w > best) {
			best = w;
			ft = t->file_type;
		}
	}
	return ft;
}

/* ----------------------------------------------------------- streaming */

struct stream {
	struct ctx *c;
	struct qs_gguf_writer *w;
	struct bufs b;
	uint64_t peak;
	/* head assembly for permuted tensors */
	uint64_t head_rows, head_fill;
	bool no_permute;  /* QSHARD_EXPORT_NO_PERMUTE: only for the test that
			   * shows llama.cpp needs the permutation */
};

static int emit_rows(struct stream *s, const struct out_tensor *t, const uint8_t *rows,
		     uint64_t n)
{
	struct qs_diag *diag = s->c->diag;
	if (!t->perm_heads)
		return qs_gguf_writer_data(s->w, rows, (size_t)(n * t->row_bytes), diag);
	/* llama's q/k layout (gguf_arch.c): within each head, output row
	 * 2i + j is input row j * hd/2 + i.  Whole rows move, so block-quantized
	 * rows stay exact.  n counts units: rows, or a bias's elements. */
	if (t->g.ndim == 1)
		n *= t->cols;
	uint8_t *head = s->b.head;
	uint64_t hd = s->head_rows, rb = t->unit_bytes;
	while (n) {
		uint64_t k = hd - s->head_fill < n ? hd - s->head_fill : n;
		memcpy(head + s->head_fill * rb, rows, (size_t)(k * rb));
		s->head_fill += k;
		rows += k * rb;
		n -= k;
		if (s->head_fill < hd)
			break;
		for (uint64_t o = 0; o < hd; o++) {
			uint64_t src = s->no_permute ? o : (o % 2) * (hd / 2) + o / 2;
			int rc = qs_gguf_writer_data(s->w, head + src * rb, (size_t)rb, diag);
			if (rc < 0)
				return rc;
		}
		s->head_fill = 0;
	}
	return 0;
}

static int stream_tensor(struct stream *s, const struct out_tensor *t)
{
	struct ctx *c = s->c;
	struct qs_diag *diag = c->diag;
	const struct qs_kernels *k = qs_kernels_get();
	int rc;
	if (t->how == HOW_ROPE)
		return qs_gguf_writer_data(s->w, c->rope, (size_t)t->g.bytes, diag);
	for (uint32_t e = 0; e < t->nexperts; e++)
		if ((rc = stream_tensor(s, &t->experts[e])) < 0)
			return rc;
	if (t->nexperts)
		return 0;
	const struct qs_record *r = t->rec;
	s->head_fill = 0;
	if (t->perm_heads) {
		s->head_rows = t->units / t->perm_heads;
		if ((rc = grow(&s->b.head, &s->b.head_cap, s->head_rows * t->unit_bytes)) < 0)
			return qs_diag_set(diag, rc, "'%s': tensor '%s': out of memory", c->fname,
					   r->name);
	}
	for (uint32_t ci = 0; ci < r->nchunks; ci++) {
		const struct qs_chunk_entry *e = &r->chunks[ci];
		if (c->o->stop && *c->o->stop)
			return qs_diag_set(diag, -QS_EINTERRUPTED, "interrupted");
		if ((rc = qs_qfile_check_chunk(c->qf, r, ci, diag)) < 0)
			return rc;
		uint64_t n = e->row_count * t->cols;
		uint64_t expect = e->payload_size;
		const char *what = NULL;
		if (t->how == HOW_RAW || t->how == HOW_RAW_F32 || t->how == HOW_RAW_REQUANT)
			expect = n * qs_dtype_size(r->dtype);
		else if (t->how == HOW_COPY)
			expect = e->row_count * t->row_bytes;
		else
			expect = t->scheme.ops->payload_size(&t->scheme, e->row_count, t->cols);
		if (expect != e->payload_size)
			what = "payload size does not match its scheme";
		if (what)
			return qs_diag_set(diag, -QS_EFORMAT, "'%s': tensor '%s': chunk %u: %s",
					   c->fname, r->name, ci, what);
		/* the whole need of this chunk, frame included (read_chunk holds
		 * the compressed frame while it decompresses) */
		bool requant = t->how == HOW_REQUANT || t->how == HOW_RAW_REQUANT;
		uint64_t f32_need = requant || t->how == HOW_RAW_F32 ? n * 4 : 0;
		uint64_t out_need = requant || t->how == HOW_Q4_1 ? e->row_count * t->row_bytes : 0;
		uint64_t scr_need = 0;
		if (t->how == HOW_RAW_REQUANT && t->via_scheme)
			scr_need = t->target.ops->scratch_size(&t->target, e->row_count, t->cols) + 1;
		if (t->how == HOW_REQUANT) {
			scr_need = t->scheme.ops->scratch_size(&t->scheme, e->row_count, t->cols) + 1;
			if (t->via_scheme)
				scr_need = max_u64(scr_need, t->target.ops->scratch_size(
								     &t->target, e->row_count, t->cols) + 1);
			/* the gguf scheme's payload must be exactly the ggml blocks */
			if (t->via_scheme && t->target.ops->payload_size(&t->target, e->row_count,
									 t->cols) !=
						     e->row_count * t->row_bytes)
				return qs_diag_set(diag, -QS_EUSAGE,
						   "'%s': tensor '%s': %s payloads are not %s blocks",
						   c->fname, r->name, t->target.text, t->g.type->name);
		}
		uint64_t total = e->frame_size + max_u64(s->b.payload_cap, e->payload_size) +
				 max_u64(s->b.f32_cap, f32_need) + max_u64(s->b.out_cap, out_need) +
				 max_u64(s->b.scratch_cap, scr_need) + s->b.head_cap;
		if (total > c->budget) {
			/* buffers sized for other chunks: start from exact sizes */
			void *head = s->b.head;
			size_t head_cap = s->b.head_cap;
			s->b.head = NULL;
			s->b.head_cap = 0;
			bufs_free(&s->b);
			s->b.head = head;
			s->b.head_cap = head_cap;
			total = e->frame_size + e->payload_size + f32_need + out_need + scr_need +
				head_cap;
			if (total > c->budget)
				return qs_diag_set(diag, -QS_ENOMEM_WINDOW,
						   "'%s': tensor '%s': a chunk needs %llu MiB, more "
						   "than --memory allows",
						   c->fname, r->name,
						   (unsigned long long)((total >> 20) + 1));
		}
		if ((rc = grow(&s->b.payload, &s->b.payload_cap, e->payload_size ? e->payload_size : 1)) < 0 ||
		    (rc = grow(&s->b.f32, &s->b.f32_cap, f32_need)) < 0 ||
		    (rc = grow(&s->b.out, &s->b.out_cap, out_need)) < 0 ||
		    (rc = grow(&s->b.scratch, &s->b.scratch_cap, scr_need)) < 0)
			return qs_diag_set(diag, rc, "'%s': tensor '%s': out of memory", c->fname,
					   r->name);
		if (e->frame_size + bufs_total(&s->b) > s->peak)
			s->peak = e->frame_size + bufs_total(&s->b);
		if ((rc = qs_qfile_read_chunk(c->qf, r, ci, s->b.payload, diag)) < 0)
			return rc;
		const uint8_t *rows = s->b.payload;
		switch (t->how) {
		case HOW_RAW:
		case HOW_COPY:
			break;
		case HOW_RAW_F32:
			if (r->dtype == QS_DTYPE_BF16)
				k->bf16_to_f32(s->b.payload, s->b.f32, (size_t)n);
			else
				k->f16_to_f32(s->b.payload, s->b.f32, (size_t)n);
			rows = s->b.f32;
			break;
		case HOW_Q4_1:
			qs_ggml_q4_1_from_rtn(s->b.payload, e->row_count, t->cols, s->b.out);
			rows = s->b.out;
			break;
		case HOW_REQUANT:
		case HOW_RAW_REQUANT:
			if (t->how == HOW_RAW_REQUANT && r->dtype == QS_DTYPE_BF16)
				k->bf16_to_f32(s->b.payload, s->b.f32, (size_t)n);
			else if (t->how == HOW_RAW_REQUANT && r->dtype == QS_DTYPE_F16)
				k->f16_to_f32(s->b.payload, s->b.f32, (size_t)n);
			else if (t->how == HOW_RAW_REQUANT)
				memcpy(s->b.f32, s->b.payload, (size_t)n * 4);
			else
				rc = t->scheme.ops->dequantize(&t->scheme, s->b.payload,
							       e->row_count, t->cols, s->b.f32,
							       s->b.scratch);
			if (rc < 0)
				return qs_diag_set(diag, rc, "'%s': tensor '%s': chunk %u does not "
							     "decode", c->fname, r->name, ci);
			if (t->via_scheme)
				rc = t->target.ops->quantize(&t->target, s->b.f32, e->row_count, t->cols,
							     s->b.out, s->b.scratch);
			else
				rc = t->g.type->from_f32(s->b.f32, e->row_count, t->cols, s->b.out);
			if (rc < 0)
				return qs_diag_set(diag, rc, "'%s': tensor '%s': chunk %u: %s "
							     "quantization failed",
						   c->fname, r->name, ci, t->g.type->name);
			rows = s->b.out;
			break;
		case HOW_ROPE:
			break;
		}
		if ((rc = emit_rows(s, t, rows, e->row_count)) < 0)
			return rc;
	}
	return 0;
}

/* A type export can produce: a quantizer here, or the gguf scheme's. */
static bool type_available(const struct qs_ggml_type *t)
{
	if (t->from_f32)
		return true;
	char spec[64];
	struct qs_scheme s;
	struct qs_diag ignore;
	snprintf(spec, sizeof(spec), "gguf:type=%s", t->name);
	return qs_scheme_parse(spec, &s, &ignore) == 0;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Refuses to write over the input (same file under another name). */
static int check_not_input(const char *in, const char *out, struct qs_diag *diag)
{
	struct stat a, b;
	if (stat(in, &a) == 0 && stat(out, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
		return qs_diag_set(diag, -QS_EUSAGE, "'%s': is the input; refusing to overwrite it",
				   out);
	return 0;
}

int qs_export(const struct qs_export_opts *o, struct qs_export_result *res,
	      struct qs_diag *diag)
{
	double t0 = now();
	memset(res, 0, sizeof(*res));
	struct ctx c = {.o = o, .diag = diag};
	struct qs_gguf_kv kv = {0};
	struct stream s = {.c = &c, .no_permute = getenv("QSHARD_EXPORT_NO_PERMUTE") != NULL};
	int rc;
	if (!o->input || !o->output)
		return qs_diag_set(diag, -QS_EUSAGE, "export needs an input and an output");
	if ((o->no_vocab && o->vocab_from) || (o->pre && (o->no_vocab || o->vocab_from)))
		return qs_diag_set(diag, -QS_EUSAGE,
				   "--no-vocab, --vocab-from and --pre exclude each other");
	c.type = qs_ggml_type_find(o->type ? o->type : "q8_0");
	if (c.type && !c.type->from_f32 && type_available(c.type)) {
		/* the block types come from the gguf scheme where it is built in */
		char spec[64];
		struct qs_diag ignore;
		snprintf(spec, sizeof(spec), "gguf:type=%s", c.type->name);
		c.type_via_scheme = qs_scheme_parse(spec, &c.type_scheme, &ignore) == 0;
	}
	if (!c.type || (!c.type->from_f32 && !c.type_via_scheme)) {
		char list[256] = "";
		size_t used = 0;
		for (size_t i = 0; qs_ggml_type_at(i); i++) {
			const struct qs_ggml_type *t = qs_ggml_type_at(i);
			if (!type_available(t))
				continue;
			int k = snprintf(list + used, sizeof(list) - used, "%s%s", used ? ", " : "",
					 t->name);
			if (k > 0 && (size_t)k < sizeof(list) - used)
				used += (size_t)k;
		}
		return qs_diag_set(diag, -QS_EUSAGE, "--type '%s' %s (available: %s)",
				   o->type ? o->type : "q8_0",
				   c.type ? "has no quantizer in this build" : "is unknown", list);
	}
	if (o->pre && !qs_gguf_pre_known(o->pre)) {
		char names[512];
		qs_gguf_pre_names(names, sizeof(names));
		return qs_diag_set(diag, -QS_EUSAGE, "--pre '%s' is unknown (known: %s)", o->pre,
				   names);
	}
	uint64_t memory = o->memory ? o->memory : qs_default_memory();
	/* the write buffer is part of the window */
	size_t wbuf = memory >= (64u << 20) ? (4u << 20) : (size_t)(memory / 16);
	if (memory < wbuf + (1u << 20))
		return qs_diag_set(diag, -QS_ENOMEM_WINDOW, "--memory %llu is too small",
				   (unsigned long long)memory);
	c.budget = memory - wbuf;
	if ((rc = check_not_input(o->input, o->output, diag)) < 0)
		return rc;
	if ((rc = qs_qfile_open(o->input, &c.qf, diag)) < 0)
		return rc;
	c.fname = qs_basename(o->input);
	if ((rc = qs_gguf_arch_parse(c.fname, c.qf->header.config_json, &c.arch, c.hf_arch,
				     sizeof(c.hf_arch), diag)) < 0)
		goto out;
	uint64_t vocab_rows = 0;
	if ((rc = check_model(&c, &vocab_rows)) < 0)
		goto out;

	/* tensors: the llama3 rope factors first, then the file's order */
	c.ts = calloc(c.qf->nrecords + 1, sizeof(*c.ts));
	if (!c.ts) {
		rc = qs_diag_set(diag, -ENOMEM, "out of memory");
		goto out;
	}
	if (c.arch.rope_type && strcmp(c.arch.rope_type, "llama3") == 0) {
		struct out_tensor *t = &c.ts[c.nts++];
		c.rope = malloc(c.arch.head_dim / 2 * sizeof(float));
		if (!c.rope) {
			rc = qs_diag_set(diag, -ENOMEM, "out of memory");
			goto out;
		}
		qs_gguf_rope_llama3_factors(&c.arch, c.rope);
		snprintf(t->g.name, sizeof(t->g.name), "rope_freqs.weight");
		t->g.ndim = 1;
		t->g.ne[0] = c.arch.head_dim / 2;
		t->g.type = qs_ggml_type_by_id(QS_GGML_F32);
		t->g.bytes = c.arch.head_dim / 2 * 4;
		t->how = HOW_ROPE;
	}
	for (size_t i = 0; i < c.qf->nrecords; i++) {
		const struct qs_record *r = &c.qf->records[i];
		struct out_tensor *t = &c.ts[c.nts];
		int layer;
		uint32_t expert;
		if (qs_gguf_expert_name(&c.arch, r->name, t->g.name, sizeof(t->g.name), &layer,
					&expert) == 0) {
			if ((rc = add_expert(&c, r, expert)) < 0)
				goto out;
			continue;
		}
		int m = qs_gguf_tensor_name(&c.arch, r->name, t->g.name, sizeof(t->g.name), &layer,
					    &t->perm_heads);
		if (m == 1)
			continue;
		if (m < 0) {
			rc = qs_diag_set(diag, -QS_EFORMAT,
					 "'%s': tensor '%s' has no GGUF name in architecture '%s' "
					 "(%s)", c.fname, r->name, c.arch.arch, c.hf_arch);
			goto out;
		}
		if ((rc = plan_tensor(&c, r, t, true)) < 0)
			goto out;
		if (t->perm_heads &&
		    (t->units % t->perm_heads != 0 || (t->units / t->perm_heads) % 2 != 0)) {
			rc = qs_diag_set(diag, -QS_EFORMAT,
					 "'%s': tensor '%s': %llu rows are not %u heads of even size",
					 c.fname, r->name, (unsigned long long)t->units,
					 (unsigned)t->perm_heads);
			goto out;
		}
		c.nts++;
	}
	for (size_t i = 0; i < c.nts; i++) {
		struct out_tensor *t = &c.ts[i];
		if (t->expert_recs && (rc = plan_stack(&c, t)) < 0)
			goto out;
		if (t->how == HOW_REQUANT || t->how == HOW_RAW_REQUANT)
			res->requantized++;
		else if (t->how == HOW_COPY || t->how == HOW_Q4_1)
			res->copied++;
	}

	char name[256];
	const char *base = qs_basename(o->input);
	size_t bl = strlen(base);
	if (bl > 7 && strcmp(base + bl - 7, ".qshard") == 0)
		bl -= 7;
	snprintf(name, sizeof(name), "%.*s", (int)(bl > 200 ? 200 : bl), base);
	qs_gguf_kv_str(&kv, "general.architecture", c.arch.arch);
	qs_gguf_kv_str(&kv, "general.name", o->name ? o->name : name);
	qs_gguf_kv_u32(&kv, "general.file_type", file_type(&c));
	qs_gguf_kv_u32(&kv, "general.quantization_version", 2);  /* GGML_QNT_VERSION */
	qs_gguf_kv_u32(&kv, "general.alignment", QS_GGUF_ALIGNMENT);
	qs_gguf_arch_kv(&c.arch, (uint32_t)vocab_rows, &kv);
	if ((rc = build_vocab(&c, vocab_rows, &kv)) < 0)
		goto out;
	/* the tokenizer's JSON trees are freed: give their pages back before
	 * the window is used, so peak RSS is one phase's, not their sum */
	malloc_trim(0);

	struct qs_gguf_tensor *gt = calloc(c.nts ? c.nts : 1, sizeof(*gt));
	if (!gt) {
		rc = qs_diag_set(diag, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < c.nts; i++)
		gt[i] = c.ts[i].g;
	rc = qs_gguf_writer_open(o->output, &kv, gt, c.nts, wbuf, &s.w, diag);
	qs_gguf_kv_release(&kv);
	for (size_t i = 0; rc == 0 && i < c.nts; i++) {
		rc = stream_tensor(&s, &c.ts[i]);
		if (rc == 0)
			rc = qs_gguf_writer_end_tensor(s.w, diag);
	}
	if (rc == 0) {
		rc = qs_gguf_writer_finish(s.w, diag);
		s.w = NULL;
	}
	free(gt);
	res->tensors = c.nts;
	res->peak_buffer_bytes = s.peak + wbuf;
	if (rc == 0) {
		struct stat st;
		if (stat(o->output, &st) == 0)
			res->output_bytes = (uint64_t)st.st_size;
	}
out:
	if (s.w)
		qs_gguf_writer_abort(s.w);
	bufs_free(&s.b);
	qs_gguf_kv_release(&kv);
	for (size_t i = 0; c.ts && i < c.nts; i++) {
		free(c.ts[i].expert_recs);
		free(c.ts[i].experts);
	}
	free(c.ts);
	free(c.rope);
	qs_qfile_free(c.qf);
	res->seconds = now() - t0;
	return rc;
}

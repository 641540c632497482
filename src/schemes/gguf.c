/* gguf.c - payloads that are ggml's own quantized blocks, so the GGUF
 * export copies them as tensor data without requantizing (the same
 * definition is in qshard(5); change both or neither).
 *
 * Parameter (canonical text "gguf:type=T"): type, one of q8_0 q4_0 q4_1
 * q5_0 q5_1 (blocks of 32) q2_K q3_K q4_K q5_K q6_K (super-blocks of 256),
 * spelled as ggml spells them.  No default: the type is required.
 *
 * Payload of a chunk of R rows x C cols: R * (C / B) ggml blocks of the
 * type (B = 32 or 256 weights, block sizes and layouts in gguf_blocks.h
 * and gguf_pack.c, as ggml-common.h defines block_q8_0 ... block_q6_K),
 * rows consecutive, nothing else.  C must be a multiple of B; a tensor
 * whose rows are not is refused (the q*_k_m presets fall back to a type
 * whose block fits, as llama.cpp does).  Dequantization is ggml's
 * arithmetic operation for operation, so qshard and llama.cpp read the
 * same floats from the same bytes (tests/unit/ggml-check.sh proves it
 * against libggml-base).
 *
 * Quantization is qshard's own search (kernels, gguf_impl.h); its error is
 * weighted per column by:
 *   --importance   the tensor's mean squared input activations (llama.cpp
 *                  imatrix), normalized to mean 1 plus 0.01 so no column
 *                  is ignored;
 *   --hessian      GPTQ (Frantar et al., arXiv:2210.17323) on the type's
 *                  own grid: the inverse Hessian factor comes from the
 *                  second-order engine (qs_so_prepare, damp 0.01, natural
 *                  column order); blocks are visited left to right, and a
 *                  block's grid (its fp16 scales and integer sub-block
 *                  scales) is chosen, weighted by diag(H), from the
 *                  error-compensated weights when the block is reached;
 *                  then its columns are coded one by one on that grid,
 *                  each column's error pushed onto the block's later
 *                  columns, and the block's errors onto all later columns
 *                  with one sgemm.  As for gptq, with a Hessian the bytes
 *                  depend on OpenBLAS's kernels (reproducible on one
 *                  machine for any -T, may differ in the last bits across
 *                  CPU types).
 *   neither        plain squared error: the best weight SQNR.
 */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf_types.h"
#include "kernels.h"
#include "scheme.h"
#include "second_order.h"
#include "util.h"

#define GG_ALIGN 64u
#define GG_PREP_MAGIC 0x46554747u  /* "GGUF" */

/* ggml type ids from ggml.h's enum ggml_type. */
const struct qs_gguf_type_info qs_gguf_types[QS_GGUF_NTYPES] = {
	[QS_GGUF_Q8_0] = {"q8_0", 8, 32, 34},
	[QS_GGUF_Q4_0] = {"q4_0", 2, 32, 18},
	[QS_GGUF_Q4_1] = {"q4_1", 3, 32, 20},
	[QS_GGUF_Q5_0] = {"q5_0", 6, 32, 22},
	[QS_GGUF_Q5_1] = {"q5_1", 7, 32, 24},
	[QS_GGUF_Q2_K] = {"q2_K", 10, 256, 84},
	[QS_GGUF_Q3_K] = {"q3_K", 11, 256, 110},
	[QS_GGUF_Q4_K] = {"q4_K", 12, 256, 144},
	[QS_GGUF_Q5_K] = {"q5_K", 13, 256, 176},
	[QS_GGUF_Q6_K] = {"q6_K", 14, 256, 210},
};

/* ------------------------------------------------------------ parameters */

/* The one parameter, in the order of enum qs_gguf_type. */
struct gguf_params {
	unsigned type;
};

static const struct qs_param gguf_param_table[] = {
	QS_PARAM_NAME(struct gguf_params, type, QS_GGUF_Q8_0, "ggml block type of the payload",
		      "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_K", "q3_K", "q4_K", "q5_K",
		      "q6_K"),
	QS_PARAM_END,
};

static unsigned type_param(const struct qs_scheme *s)
{
	return QS_SCHEME_PARAMS(struct gguf_params, s)->type;
}

int qs_gguf_type_find(const char *name)
{
	for (unsigned t = 0; name && t < QS_GGUF_NTYPES; t++)
		if (strcmp(qs_gguf_types[t].name, name) == 0)
			return (int)t;
	return -1;
}

int qs_gguf_type_of(const struct qs_scheme *s)
{
	if (!s || s->ops != &qs_scheme_gguf || type_param(s) >= QS_GGUF_NTYPES)
		return -1;
	return (int)type_param(s);
}

uint64_t qs_gguf_row_bytes(unsigned type, uint64_t cols)
{
	if (type >= QS_GGUF_NTYPES)
		return UINT64_MAX;
	uint64_t bw = qs_gguf_block_weights(type), bytes;
	if (cols % bw || !qs_mul_u64(cols / bw, qs_gguf_block_bytes(type), &bytes))
		return UINT64_MAX;
	return bytes;
}

/* ----------------------------------------------------------------- sizes */

static uint64_t align_up(uint64_t v)
{
	return (v + GG_ALIGN - 1) / GG_ALIGN * GG_ALIGN;
}

static void *align_ptr(const void *p)
{
	return (void *)(((uintptr_t)p + GG_ALIGN - 1) & ~(uintptr_t)(GG_ALIGN - 1));
}

static uint64_t gguf_payload_size(const struct qs_scheme *s, uint64_t rows, uint64_t cols)
{
	int t = qs_gguf_type_of(s);
	uint64_t rb = t < 0 ? UINT64_MAX : qs_gguf_row_bytes((unsigned)t, cols), total;
	if (rb == UINT64_MAX || !qs_mul_u64(rows, rb, &total))
		return UINT64_MAX;
	return total;
}

static bool use_hessian(const struct qs_scheme *s)
{
	return (s->stats & QS_WANT_HESSIAN) != 0;
}

/* GPTQ's working set: the chunk's weights, then per row and block column
 * its scaled errors, grid (a, b) and codes. */
struct gptq_scratch {
	float *w, *err, *ga, *gb;
	uint8_t *codes;
};

static bool gptq_layout(unsigned type, uint64_t rows, uint64_t cols, void *base,
			struct gptq_scratch *g, uint64_t *size)
{
	uint64_t nw, np, off = GG_ALIGN, bw = qs_gguf_block_weights(type);
	uint8_t *p = base ? align_ptr(base) : NULL;
	if (!qs_mul_u64(rows, cols, &nw) || nw > UINT64_MAX / 32 || !qs_mul_u64(rows, bw, &np) ||
	    np > UINT64_MAX / 32)
		return false;
#define TAKE(field, type_, count)                                              \
	do {                                                                     \
		if (g)                                                           \
			g->field = (type_ *)(void *)(p + (off - GG_ALIGN));        \
		off += align_up((uint64_t)(count) * sizeof(type_));              \
	} while (0)
	TAKE(w, float, nw);
	TAKE(err, float, np);
	TAKE(ga, float, np);
	TAKE(gb, float, np);
	TAKE(codes, uint8_t, np);
#undef TAKE
	*size = off;
	return true;
}

static uint64_t gguf_scratch_size(const struct qs_scheme *s, uint64_t rows, uint64_t cols)
{
	int t = qs_gguf_type_of(s);
	uint64_t size;
	if (t < 0)
		return UINT64_MAX;
	if (!use_hessian(s))
		return 0;
	if (!gptq_layout((unsigned)t, rows, cols, NULL, NULL, &size))
		return UINT64_MAX;
	return size;
}

/* Validates a chunk: a gguf scheme, whole blocks, sizes that fit size_t. */
static int check_chunk(const struct qs_scheme *s, uint64_t rows, uint64_t cols, unsigned *type)
{
	int t = qs_gguf_type_of(s);
	if (t < 0)
		return -QS_EUSAGE;
	if (qs_gguf_row_bytes((unsigned)t, cols) == UINT64_MAX)
		return -QS_EUSAGE;
	uint64_t nw;
	if (!qs_mul_u64(rows, cols, &nw) || nw > SIZE_MAX / sizeof(float) ||
	    gguf_payload_size(s, rows, cols) > SIZE_MAX)
		return -QS_ETOOBIG;
	*type = (unsigned)t;
	return 0;
}

/* --------------------------------------------------------- quantization */

static int quantize_plain(unsigned type, const float *imp, const float *w, uint64_t rows,
			  uint64_t cols, uint8_t *out)
{
	const struct qs_kernels *k = qs_kernels_get();
	size_t c = (size_t)cols, nb = c / qs_gguf_block_weights(type);
	size_t rb = (size_t)qs_gguf_row_bytes(type, cols);
	for (size_t r = 0; r < rows; r++)
		if (k->gguf_quantize_row(type, w + r * c, imp, nb, out + r * rb))
			return -QS_ETOOBIG;
	return 0;
}

/* GPTQ on the type's grid (see the top of the file).  u: cols x cols
 * upper factor of H^-1; imp: diag(H) normalized, the grid's weights. */
static int quantize_gptq(unsigned type, const float *u, const float *imp, const float *w,
			 uint64_t rows, uint64_t cols, uint8_t *out, void *scratch)
{
	const struct qs_kernels *k = qs_kernels_get();
	struct gptq_scratch g;
	uint64_t size;
	gptq_layout(type, rows, cols, scratch, &g, &size);
	size_t R = (size_t)rows, C = (size_t)cols, P = qs_gguf_block_weights(type);
	size_t bb = qs_gguf_block_bytes(type), rb = (size_t)qs_gguf_row_bytes(type, cols);
	memcpy(g.w, w, R * C * sizeof(float));

	for (size_t p0 = 0; p0 < C; p0 += P) {
		size_t blk = p0 / P;
		for (size_t r = 0; r < R; r++) {
			float *wr = g.w + r * C;
			uint8_t *ob = out + r * rb + blk * bb;
			float *ga = g.ga + r * P, *gb = g.gb + r * P, *er = g.err + r * P;
			uint8_t *cd = g.codes + r * P;
			unsigned cmax;
			if (k->gguf_quantize_row(type, wr + p0, imp + p0, 1, ob))
				return -QS_ETOOBIG;
			qs_gguf_block_grid(type, ob, ga, gb, &cmax);
			float top = (float)cmax;
			/* the row's block, column by column; the row's later
			 * columns in the block take each error at once */
			for (size_t j = 0; j < P; j++) {
				size_t col = p0 + j;
				float x = wr[col], a = ga[j], b = gb[j], q = b, cf = 0.0f;
				if (a != 0.0f) {
					cf = rintf((x - b) / a);
					cf = cf > 0.0f ? cf : 0.0f;
					cf = cf < top ? cf : top;
					q = a * cf + b;
				}
				cd[j] = (uint8_t)cf;
				float e = (x - q) / u[col * C + col];
				e = fabsf(e) <= 3.0e38f ? e : 0.0f;
				er[j] = e;
				const float *ur = u + col * C;
				for (size_t kk = col + 1; kk < p0 + P; kk++)
					wr[kk] -= e * ur[kk];
			}
			qs_gguf_pack_codes(type, cd, ob);
		}
		if (p0 + P < C)
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)R,
				    (blasint)(C - p0 - P), (blasint)P, -1.0f, g.err, (blasint)P,
				    u + p0 * C + p0 + P, (blasint)C, 1.0f, g.w + p0 + P, (blasint)C);
	}
	return 0;
}

static int gguf_quantize(const struct qs_scheme *s, const float *w, uint64_t rows, uint64_t cols,
			 uint8_t *out, void *scratch)
{
	unsigned type;
	(void)scratch;
	int rc = check_chunk(s, rows, cols, &type);
	if (rc || rows == 0 || cols == 0)
		return rc;
	return quantize_plain(type, NULL, w, rows, cols, out);
}

static int gguf_dequantize(const struct qs_scheme *s, const uint8_t *in, uint64_t rows,
			   uint64_t cols, float *out, void *scratch)
{
	unsigned type;
	(void)scratch;
	int rc = check_chunk(s, rows, cols, &type);
	if (rc || rows == 0 || cols == 0)
		return rc;
	return qs_gguf_dequantize_rows(type, in, rows, cols, out);
}

/* ---------------------------------------------------------- preparation */

/* Per-tensor state: header, the normalized column weights, then (with a
 * Hessian) the second-order engine's state. */
struct gg_prep {
	uint32_t magic;
	uint32_t have_weights;  /* weights[] holds normalized importance or diag(H) */
	uint32_t have_factor;   /* the engine state holds U */
	uint32_t pad;
	uint64_t cols;
};

struct gg_prep_view {
	struct gg_prep *hdr;
	float *weights;
	void *so;
};

static struct gg_prep_view prep_carve(const void *prep, uint64_t cols)
{
	struct gg_prep_view v;
	uint8_t *p = align_ptr(prep);
	v.hdr = (struct gg_prep *)(void *)p;
	p += align_up(sizeof(struct gg_prep));
	v.weights = (float *)(void *)p;
	p += align_up(4 * cols);
	v.so = p;
	return v;
}

static uint64_t gguf_prep_size(const struct qs_scheme *s, uint64_t cols)
{
	uint64_t base, so = 0;
	if (cols > UINT64_MAX / 8)
		return UINT64_MAX;
	base = GG_ALIGN + align_up(sizeof(struct gg_prep)) + align_up(4 * cols);
	if (use_hessian(s)) {
		so = qs_so_prep_size(cols);
		if (so == UINT64_MAX || so > UINT64_MAX - base)
			return UINT64_MAX;
	}
	return base + so;
}

/* dst = src / mean(src) + 0.01; 0 when src sums to zero (no information),
 * 1 when filled, -QS_EFORMAT for a negative or non-finite value. */
static int normalize(const float *src, size_t n, size_t stride, float *dst)
{
	double sum = 0;
	for (size_t i = 0; i < n; i++) {
		float v = src[i * stride];
		if (!(v >= 0.0f) || !isfinite(v))
			return -QS_EFORMAT;
		sum += v;
	}
	if (!(sum > 0))
		return 0;
	double mean = sum / (double)n;
	for (size_t i = 0; i < n; i++)
		dst[i] = (float)(src[i * stride] / mean + 0.01);
	return 1;
}

static int gguf_prepare(const struct qs_scheme *s, const struct qs_tensor_stats *st, void *prep,
			struct qs_diag *diag)
{
	uint64_t cols = st->cols;
	const char *name = st->name ? st->name : "?";
	struct gg_prep_view v = prep_carve(prep, cols);
	memset(v.hdr, 0, sizeof(*v.hdr));
	v.hdr->magic = GG_PREP_MAGIC;
	v.hdr->cols = cols;
	int rc = 0;
	/* with a Hessian its diagonal weights the grid; else the importance */
	if (st->hessian && use_hessian(s))
		rc = normalize(st->hessian, (size_t)cols, (size_t)cols + 1, v.weights);
	else if (st->importance)
		rc = normalize(st->importance, (size_t)cols, 1, v.weights);
	if (rc < 0)
		return qs_diag_set(diag, rc, "%s: tensor '%s': %s holds a negative or non-finite value",
				   s->text, name, st->hessian && use_hessian(s) ? "diag(H)" : "importance");
	v.hdr->have_weights = rc > 0;
	if (st->hessian && use_hessian(s)) {
		struct qs_so_cfg cfg;
		memset(&cfg, 0, sizeof(cfg));
		cfg.bits = 4;
		cfg.group = 32;
		cfg.damp_e4 = 100;
		rc = qs_so_prepare(&cfg, st, v.so, s->text, diag);
		if (rc < 0)
			return rc;
		v.hdr->have_factor = qs_so_prep_factor(v.so, cols) != NULL;
	}
	return 0;
}

static int gguf_quantize_prep(const struct qs_scheme *s, const void *prep, const float *w,
			      uint64_t rows, uint64_t cols, uint8_t *out, void *scratch)
{
	unsigned type;
	int rc = check_chunk(s, rows, cols, &type);
	if (rc || rows == 0 || cols == 0)
		return rc;
	if (!prep)
		return quantize_plain(type, NULL, w, rows, cols, out);
	struct gg_prep_view v = prep_carve(prep, cols);
	if (v.hdr->magic != GG_PREP_MAGIC || v.hdr->cols != cols)
		return -QS_EUSAGE;
	const float *imp = v.hdr->have_weights ? v.weights : NULL;
	if (v.hdr->have_factor && use_hessian(s)) {
		uint64_t need;
		if (!gptq_layout(type, rows, cols, NULL, NULL, &need) || !scratch ||
		    rows > (uint64_t)INT32_MAX || cols > (uint64_t)INT32_MAX)
			return -QS_ETOOBIG;
		if (!imp) {
			/* a Hessian whose diagonal is all zero: nothing fires */
			return quantize_plain(type, NULL, w, rows, cols, out);
		}
		return quantize_gptq(type, qs_so_prep_factor(v.so, cols), imp, w, rows, cols, out,
				     scratch);
	}
	return quantize_plain(type, imp, w, rows, cols, out);
}

/* ------------------------------------------------------------ library */

int qs_gguf_quantize_rows(unsigned type, const float *src, uint64_t rows, uint64_t cols,
			  const float *importance, void *dst)
{
	if (type >= QS_GGUF_NTYPES || qs_gguf_row_bytes(type, cols) == UINT64_MAX)
		return -QS_EUSAGE;
	uint64_t nw;
	if (!qs_mul_u64(rows, cols, &nw) || nw > SIZE_MAX / sizeof(float))
		return -QS_ETOOBIG;
	if (rows == 0 || cols == 0)
		return 0;
	float *imp = NULL;
	if (importance) {
		imp = malloc((size_t)cols * sizeof(float));
		if (!imp)
			return -ENOMEM;
		int rc = normalize(importance, (size_t)cols, 1, imp);
		if (rc <= 0) {
			free(imp);
			imp = NULL;
			if (rc < 0)
				return rc;
		}
	}
	int rc = quantize_plain(type, imp, src, rows, cols, dst);
	free(imp);
	return rc;
}

int qs_gguf_dequantize_rows(unsigned type, const void *src, uint64_t rows, uint64_t cols,
			    float *dst)
{
	if (type >= QS_GGUF_NTYPES || qs_gguf_row_bytes(type, cols) == UINT64_MAX)
		return -QS_EUSAGE;
	const struct qs_kernels *k = qs_kernels_get();
	size_t c = (size_t)cols, nb = c / qs_gguf_block_weights(type);
	size_t rb = (size_t)qs_gguf_row_bytes(type, cols);
	for (size_t r = 0; r < rows; r++)
		k->gguf_dequantize_row(type, (const uint8_t *)src + r * rb, nb, dst + r * c);
	return 0;
}

const struct qs_scheme_ops qs_scheme_gguf = {
	.name = "gguf",
	.params = gguf_param_table,
	.payload_size = gguf_payload_size,
	.scratch_size = gguf_scratch_size,
	.quantize = gguf_quantize,
	.dequantize = gguf_dequantize,
	.wants = QS_WANT_IMPORTANCE | QS_WANT_HESSIAN,
	.prep_size = gguf_prep_size,
	.prepare = gguf_prepare,
	.quantize_prep = gguf_quantize_prep,
};

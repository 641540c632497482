/* daq.c - DAQ (Luo et al., "DAQ: Density-Aware Post-Training Weight-Only
 * Quantization For LLMs", arXiv:2410.12187): a floating-point-style code
 * book per group, aligned on where the group's weights are dense, then a
 * sign-gradient search over scale and centre that minimizes the group's
 * (importance-weighted) squared error (the same definition is in
 * qshard(5); change both or neither).
 *
 * Parameters (canonical text "daq:bits=B,format=F,group=G,iters=I"):
 *   format  nf4: the 16 NormalFloat levels of QLoRA (default);
 *           fp4: E2M1, +-{0, 0.5, 1, 1.5, 2, 3, 4, 6}/6 (15 levels; code
 *                15 is never written and reads as 6/6);
 *           int: 2^bits uniform levels -1 + 2k/(2^bits - 1);
 *   bits    4 for nf4 and fp4 (default 4); 2, 3 or 4 for int;
 *   group   32, 64, 128 (default 64);
 *   iters   range-adjustment steps, 0..64 (default 5: 207 MB/s of bf16 per core
 *           at group 64 against 178 for 6 steps, for -0.08 dB; 0 = alignment
 *           only).
 * The level table lev[] lies in [-1, 1]; mid[k] = 0.5f*(lev[k] + lev[k+1]).
 *
 * Per group (n weights, NaNs left out of every statistic), f32 arithmetic:
 *  1. density-centric alignment: q_lo, q_hi = the 2.5% and 97.5% quantiles
 *     (sorted a[] of the m non-NaN weights, -0 as +0, of which only the K
 *     = 25(n-1)/1000 + 2 smallest and largest are needed: kernels.h
 *     daq_range; h = 0.025*(m-1) as the
 *     integer ratio 25(m-1)/1000, q = a[i] + f*(a[i+1] - a[i]), i = floor
 *     h, f = its fraction, mirrored for q_hi), centre z = fp16 nearest of
 *     0.5f*(q_lo + q_hi); scale s = the smallest fp16 >= max(mx - z, z -
 *     mn), the half-range of the whole group around the dense centre;
 *  2. learnable dynamic range adjustment: E(z, s) = sum v_i e_i^2, e_i =
 *     w_i - (z + s*lev[c_i]), c_i = nearest_code((w_i - z) * (1/s)) (see
 *     kernels.h, daq_eval), v_i = the weight's importance (1 without).
 *     Step sizes ds = s/16, dz = s/32.  Step t = 0..iters-1 moves s (t even) or
 *     z (t odd) by its step in the direction of -sign(dE/d.) (dE/ds =
 *     -2 sum v e lev[c], dE/dz = -2 sum v e), rounds the candidate to the
 *     nearest fp16 and keeps it when its E is smaller (that step then
 *     x1.5), else quarters it; a zero gradient, a candidate equal to
 *     the current value, s <= 0 or an fp16 overflow count as a rejection.
 *     Stops early once both steps are below s/2048 (fp16 resolution).
 *     (Six steps of these sizes match what eight did with dz = s/16 and
 *     halving: 18.07 against 18.06 dB on bench-kernels, 3/4 the cost.)
 * Back: w' = z + s*lev[c] (product rounded, then the sum).  A group with a
 * magnitude above 65504 (so any Inf) fails with -QS_ETOOBIG; a group of
 * only NaNs has z = s = 0; NaN weights get code 0.
 *
 * Importance (QS_WANT_IMPORTANCE): prepare stores the tensor's vector
 * normalized to mean 1 plus 0.01 (so no weight is ignored); v_i is the
 * value of the weight's input column.  Without it quantize_prep equals
 * quantize.
 *
 * Payload of a chunk of R rows x C cols, G = ceil(C / group) groups per
 * row (the last may be shorter), all little-endian:
 *   1. R*G fp16 scales s, row-major;
 *   2. R*G fp16 centres z, row-major;
 *   3. R*C codes of `bits` bits as one LSB-first bitstream in row-major
 *      order (row r at bit r*C*bits), zero-padded to a byte.
 * payload_size = 4*R*G + ceil(R*C*bits / 8); bits per weight for C a
 * multiple of group: bits + 32/group (daq defaults: 4.5).
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "grouped.h"
#include "kernels.h"
#include "scheme.h"
#include "util.h"
#include "wksp.h"

#define DAQ_MAX_GROUP 128u
#define DAQ_MAX_ITERS 64u
#define DAQ_MAX_K 5u     /* 25 (DAQ_MAX_GROUP - 1) / 1000 + 2 */

enum { FMT_INT, FMT_FP4, FMT_NF4 };
static const char *const fmt_names[] = {"int", "fp4", "nf4"};

/* QLoRA's NF4 (Dettmers et al., arXiv:2305.14314, appendix E). */
static const float nf4_levels[16] = {
	-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
	-0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
	0.07958029955625534f, 0.16093020141124725f, 0.24611230850220947f,
	0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
	0.7229568362236023f, 1.0f,
};

struct daq_book {
	float lev[16];  /* padded: codes past nlev-1 read the top level */
	float mid[15];
	unsigned nlev;
};

static void make_book(unsigned fmt, unsigned bits, struct daq_book *b)
{
	static const float e2m1[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
	if (fmt == FMT_NF4) {
		b->nlev = 16;
		memcpy(b->lev, nf4_levels, sizeof(nf4_levels));
	} else if (fmt == FMT_FP4) {
		b->nlev = 15;
		for (unsigned k = 0; k < 7; k++)
			b->lev[k] = -e2m1[7 - k] / 6.0f;
		for (unsigned k = 0; k < 8; k++)
			b->lev[7 + k] = e2m1[k] / 6.0f;
	} else {
		unsigned q = (1u << bits) - 1;
		b->nlev = q + 1;
		for (unsigned k = 0; k <= q; k++)
			b->lev[k] = (float)(2.0 * k / q - 1.0);
	}
	for (unsigned k = b->nlev; k < 16; k++)
		b->lev[k] = b->lev[b->nlev - 1];
	for (unsigned k = 0; k + 1 < b->nlev; k++)
		b->mid[k] = 0.5f * (b->lev[k] + b->lev[k + 1]);
}

struct daq_params {
	unsigned bits;
	unsigned format;  /* FMT_* */
	unsigned group;
	unsigned iters;
};

static const struct qs_param daq_param_table[] = {
	QS_PARAM_ONE_OF(struct daq_params, bits, 4, "code width (4 unless format=int)", 2, 3, 4),
	QS_PARAM_NAME(struct daq_params, format, FMT_NF4, "code book", "int", "fp4", "nf4"),
	QS_PARAM_ONE_OF(struct daq_params, group, 64, "weights per group", 32, 64, 128),
	QS_PARAM_RANGE(struct daq_params, iters, 5, 0, DAQ_MAX_ITERS, "range-adjustment steps"),
	QS_PARAM_END,
};

static const struct daq_params *P(const struct qs_scheme *s)
{
	return QS_SCHEME_PARAMS(struct daq_params, s);
}

static int daq_check(const struct qs_scheme *s, struct qs_diag *diag)
{
	if (P(s)->format != FMT_INT && P(s)->bits != 4)
		return qs_diag_set(diag, -QS_EUSAGE, "daq: format=%s needs bits=4 (got %u)",
				   fmt_names[P(s)->format], P(s)->bits);
	return 0;
}

static bool params_ok(const struct qs_scheme *s)
{
	return qs_scheme_params_ok(s) && daq_check(s, NULL) == 0;
}

static uint64_t daq_payload_size(const struct qs_scheme *s, uint64_t rows, uint64_t cols)
{
	if (!params_ok(s))
		return UINT64_MAX;
	return qs_grouped_payload_size(P(s)->bits, P(s)->group, rows, cols);
}

/* One row at a time: its fp16 scales and centres and its codes. */
static uint64_t daq_scratch_size(const struct qs_scheme *s, uint64_t rows, uint64_t cols)
{
	(void)rows;
	if (!params_ok(s))
		return UINT64_MAX;
	return qs_grouped_scratch_size(P(s)->group, cols);
}

static int check_chunk(const struct qs_scheme *s, uint64_t rows, uint64_t cols)
{
	if (!params_ok(s))
		return -QS_EUSAGE;
	return qs_grouped_fits(P(s)->bits, P(s)->group, rows, cols) ? 0 : -QS_ETOOBIG;
}

static float f16_round(float v)
{
	return qs_f16_to_f32(qs_f32_to_f16(v));
}

/* The smallest fp16 >= v (v >= 0), or Inf. */
static float f16_up(float v)
{
	uint16_t h = qs_f32_to_f16(v);
	float f = qs_f16_to_f32(h);
	if (f < v)
		f = qs_f16_to_f32((uint16_t)(h + 1));
	return f;
}

/* Quantizes one group; codes[n], the scale and centre as fp16 bits. */
static int daq_group(const struct qs_kernels *k, const struct daq_book *b, unsigned iters,
		     const float *w, const float *imp, size_t n, uint8_t *codes,
		     uint16_t *s16, uint16_t *z16)
{
	float lo[DAQ_MAX_K], hi[DAQ_MAX_K];
	/* the quantile positions need at most the K smallest and largest:
	 * K for all n weights bounds it for the m <= n that are not NaN */
	unsigned K = 25u * (unsigned)(n - 1) / 1000u + 2;
	size_t m = k->daq_range(w, n, K, lo, hi);

	if (m == 0) {
		*s16 = *z16 = 0;
		memset(codes, 0, n);
		return 0;
	}
	if (!(lo[0] >= -65504.0f) || !(hi[0] <= 65504.0f))
		return -QS_ETOOBIG;
	unsigned num = 25u * (unsigned)(m - 1), qi = num / 1000u;
	float mn = lo[0], mx = hi[0];
	float f = (float)(num % 1000u) / 1000.0f;
	float qlo = lo[qi], qhi = hi[qi];
	if (qi + 1 < m) {
		qlo = qlo + f * (lo[qi + 1] - qlo);
		qhi = qhi + f * (hi[qi + 1] - qhi);
	}
	float z = f16_round(0.5f * (qlo + qhi));
	float need = fmaxf(mx - z, z - mn);
	float s = f16_up(need);
	if (!isfinite(z) || !isfinite(s))
		return -QS_ETOOBIG;

	const float *lev = b->lev, *mid = b->mid;
	uint8_t tmp[DAQ_MAX_GROUP];
	uint8_t *cur = codes, *cand = tmp;
	float out[3], cout[3];
	float inv = s > 0 ? 1.0f / s : 0.0f;
	k->daq_eval(w, imp, n, z, s, inv, lev, mid, b->nlev, cur, out);
	float ds = s * 0.0625f, dz = s * 0.03125f, stop = s * (1.0f / 2048.0f);
	for (unsigned t = 0; t < iters && s > 0; t++) {
		if (ds < stop && dz < stop)
			break;
		bool on_s = (t & 1) == 0;
		float g = on_s ? out[1] : out[2];
		float *step = on_s ? &ds : &dz;
		float cs = s, cz = z;
		float *mv = on_s ? &cs : &cz;  /* the other one is already fp16 */
		if (g > 0)
			*mv = f16_round(*mv + *step);
		else if (g < 0)
			*mv = f16_round(*mv - *step);
		if (g == 0 || (cs == s && cz == z) || !(cs > 0) || !isfinite(cs) ||
		    !isfinite(cz)) {
			*step *= 0.25f;
			continue;
		}
		float cinv = 1.0f / cs;
		k->daq_eval(w, imp, n, cz, cs, cinv, lev, mid, b->nlev, cand, cout);
		if (cout[0] < out[0]) {
			s = cs;
			z = cz;
			memcpy(out, cout, sizeof(out));
			uint8_t *sw = cur;
			cur = cand;
			cand = sw;
			*step *= 1.5f;
		} else {
			*step *= 0.25f;
		}
	}
	if (cur != codes)
		memcpy(codes, cur, n);
	*s16 = qs_f32_to_f16(s);
	*z16 = qs_f32_to_f16(z);
	return 0;
}

static int quantize_imp(const struct qs_scheme *s, const float *imp, const float *w,
			uint64_t rows, uint64_t cols, uint8_t *out, void *scratch)
{
	int rc = check_chunk(s, rows, cols);
	if (rc)
		return rc;
	if (rows == 0 || cols == 0)
		return 0;

	const struct qs_kernels *k = qs_kernels_get();
	struct daq_book b;
	struct qs_grouped_chunk ch = qs_grouped_chunk_of(P(s)->bits, P(s)->group, rows, cols, scratch);
	size_t ng = ch.ng, c = ch.cols, g = P(s)->group;
	struct qs_grouped_row t = ch.t;  /* scales in a, centres in b */

	make_book(P(s)->format, ch.bits, &b);
	for (size_t r = 0; r < rows; r++) {
		const float *wr = w + r * c;
		for (size_t j = 0; j < ng; j++) {
			size_t n = c - j * g < g ? c - j * g : g;
			rc = daq_group(k, &b, P(s)->iters, wr + j * g, imp ? imp + j * g : NULL, n,
				       t.codes + j * g, &t.a[j], &t.b[j]);
			if (rc)
				return rc;
		}
		qs_grouped_put_row(&ch, k, out, r);
	}
	return 0;
}

static int daq_quantize(const struct qs_scheme *s, const float *w, uint64_t rows,
			uint64_t cols, uint8_t *out, void *scratch)
{
	return quantize_imp(s, NULL, w, rows, cols, out, scratch);
}

static int daq_dequantize(const struct qs_scheme *s, const uint8_t *in, uint64_t rows,
			  uint64_t cols, float *out, void *scratch)
{
	int rc = check_chunk(s, rows, cols);
	if (rc)
		return rc;
	if (rows == 0 || cols == 0)
		return 0;

	const struct qs_kernels *k = qs_kernels_get();
	struct daq_book b;
	struct qs_grouped_chunk ch = qs_grouped_chunk_of(P(s)->bits, P(s)->group, rows, cols, scratch);
	size_t ng = ch.ng, c = ch.cols, g = P(s)->group;
	struct qs_grouped_row t = ch.t;

	make_book(P(s)->format, ch.bits, &b);
	for (size_t r = 0; r < rows; r++) {
		qs_grouped_get_row(&ch, k, in, r);
		for (size_t j = 0; j < ng; j++) {
			float sc = qs_f16_to_f32(t.a[j]);
			float z = qs_f16_to_f32(t.b[j]);
			size_t n = c - j * g < g ? c - j * g : g;
			for (size_t i = 0; i < n; i++) {
				float p = sc * b.lev[t.codes[j * g + i] & 15];
				out[r * c + j * g + i] = z + p;
			}
		}
	}
	return 0;
}

/* ---- per-tensor importance ---- */

/* prep: u64 1 when an importance vector follows, then f32[cols]. */
static uint64_t daq_prep_size(const struct qs_scheme *s, uint64_t cols)
{
	(void)s;
	if (cols > (UINT64_MAX - 8) / 4)
		return UINT64_MAX;
	return 8 + 4 * cols;
}

/* Shared with claq through a copy: normalizes stats->importance into
 * dst[cols] (mean 1, plus 0.01), or returns 0 when there is none to use. */
static int norm_importance(const struct qs_tensor_stats *st, float *dst,
			   struct qs_diag *diag)
{
	double sum = 0;
	if (!st || !st->importance)
		return 0;
	for (uint64_t j = 0; j < st->cols; j++) {
		float v = st->importance[j];
		if (!(v >= 0) || !isfinite(v))
			return qs_diag_set(diag, -QS_EFORMAT,
					   "tensor '%s': importance value %" PRIu64
					   " is negative or not finite", st->name ? st->name : "?", j);
		sum += v;
	}
	if (!(sum > 0))
		return 0;
	double mean = sum / (double)st->cols;
	for (uint64_t j = 0; j < st->cols; j++)
		dst[j] = (float)(st->importance[j] / mean + 0.01);
	return 1;
}

static int daq_prepare(const struct qs_scheme *s, const struct qs_tensor_stats *st,
		       void *prep, struct qs_diag *diag)
{
	(void)s;
	uint8_t *p = prep;
	int rc = norm_importance(st, (float *)(p + 8), diag);
	if (rc < 0)
		return rc;
	qs_put_le64(p, (uint64_t)rc);
	return 0;
}

static int daq_quantize_prep(const struct qs_scheme *s, const void *prep, const float *w,
			     uint64_t rows, uint64_t cols, uint8_t *out, void *scratch)
{
	const uint8_t *p = prep;
	const float *imp = p && qs_get_le64(p) ? (const float *)(p + 8) : NULL;
	return quantize_imp(s, imp, w, rows, cols, out, scratch);
}

const struct qs_scheme_ops qs_scheme_daq = {
	.name = "daq",
	.params = daq_param_table,
	.check = daq_check,
	.payload_size = daq_payload_size,
	.scratch_size = daq_scratch_size,
	.quantize = daq_quantize,
	.dequantize = daq_dequantize,
	.wants = QS_WANT_IMPORTANCE,
	.prep_size = daq_prep_size,
	.prepare = daq_prepare,
	.quantize_prep = daq_quantize_prep,
};

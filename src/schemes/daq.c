/* daq.c - DAQ (Luo et al., "DAQ: Density-Aware Post-Training Weight-Only
 * Quantization For LLMs", arXiv:2410.12187; reference code
 * awq/quantize/daq.py): a floating-point-style code book per group,
 * re-centred on where the group's weights are dense (density-centric
 * alignment, DCA), then its scale and centre tuned by finite differences
 * and sign-gradient steps on the group's *output* error (learnable dynamic
 * range adjustment, LDRA).  The same definition is in qshard(5); change
 * both or neither.
 *
 * Parameters (canonical text "daq:bits=B,format=F,group=G,iters=I"):
 *   format  nf4: the 16 NormalFloat levels of QLoRA (default);
 *           fp4: E2M1, +-{0, 0.5, 1, 1.5, 2, 3, 4, 6}/6 (15 levels; code
 *                15 is never written and reads as 6/6);
 *           int: 2^bits uniform levels -1 + 2k/(2^bits - 1);
 *   bits    4 for nf4 and fp4 (default 4); 2, 3 or 4 for int;
 *   group   32, 64, 128 (default 128, the paper's);
 *   iters   LDRA steps, 0..1000 (default 100: 5 error evaluations a step,
 *           502 a group with the two starts, the reference's budget of ~500;
 *           0 = alignment only).
 * The level table lev[] lies in [-1, 1]; mid[k] = 0.5f*(lev[k] + lev[k+1]).
 *
 * Per group (n weights, NaNs left out of every statistic), f32 arithmetic:
 *  1. DCA: mn, mx = the group's extremes (kernels.h daq_range, k = 1); a
 *     histogram of DAQ_BINS equal bins over [mn, mx] (bin = floor((w - mn)
 *     * (DAQ_BINS / (mx - mn))) as f32, clamped to DAQ_BINS - 1); from the
 *     modal bin (most weights; ties: the lower bin) the interval grows one
 *     bin at a time toward the neighbour holding more weights (ties, or no
 *     neighbour left on one side: the lower side while there is one) until
 *     it holds at least half the group (2 count >= m); the density centre
 *     z = fp16 nearest of mn + (lo + hi + 1) * (mx - mn) / (2 DAQ_BINS),
 *     the interval's midpoint; the range keeps the group's width and is
 *     re-centred there: s = the smallest fp16 >= (mx - mn) / 2, so
 *     [z - s, z + s] covers the dense side and the far tail clips.
 *  2. LDRA on E(z, s), the group's error: with --hessian, e^T H_g e, H_g
 *     the diagonal block of the tensor's H = X^T X over the group's
 *     columns (the output error of the group's weights over the
 *     calibration inputs, cross-group terms left out; made symmetric,
 *     (H_g + H_g^T)/2, the same form), e_i = w_i - (z + s*lev[c_i]) in
 *     double (NaN: e = 0), the codes nearest_code's; evaluated
 *     incrementally around the walk's current point (daq_qform.c: a
 *     candidate costs O(n + k^2), k the codes that differ from the
 *     point's, a move of the point O(n k); double, fixed order, no FMA,
 *     no BLAS, so the same for every -T and SIMD level; equal to the
 *     direct sum within rounding); with
 *     only --importance, sum v_i e_i^2 (the diagonal, v normalized to mean
 *     1 plus 0.01); with neither, sum e_i^2 (weight error).  First the
 *     range covering the whole group around z, s_c = the smallest fp16 >=
 *     max(mx - z, z - mn), is evaluated too, and the walk starts from
 *     whichever of the two has the smaller E (ties: the clipped one); a
 *     far tail of salient weights can cost more clipped than the
 *     resolution clipping buys (+0.2 dB output SQNR on bench-quality's
 *     numpy checkpoint).  Step t =
 *     0..iters-1: a = a0 (1 - t/iters) with a0 = s_start/32, d = a/4;
 *     the finite differences E(z, s + d) - E(z, s - d) and E(z + d, s) -
 *     E(z - d, s) (each candidate rounded to fp16) give the signs; then
 *     s -= a sign(dE/ds), z -= a sign(dE/dz) (fp16; s > 0 kept).  Every
 *     point evaluated is a candidate: the one of least E (the earliest on
 *     ties) is kept, so LDRA never loses to the aligned start.
 * Back: w' = z + s*lev[c] (product rounded, then the sum).  A group with a
 * magnitude above 65504 (so any Inf) fails with -QS_ETOOBIG; a group of
 * only NaNs has z = s = 0; NaN weights get code 0.
 *
 * Statistics (QS_WANT_HESSIAN | QS_WANT_IMPORTANCE): prepare keeps the
 * diagonal blocks of H (ceil(cols / group) blocks of group^2 floats, never
 * the whole H) when --hessian has the tensor, else the normalized
 * importance vector; a Hessian entry beats importance.  Without either, quantize_prep equals quantize.
 *
 * Payload of a chunk of R rows x C cols, G = ceil(C / group) groups per
 * row (the last may be shorter), all little-endian:
 *   1. R*G fp16 scales s, row-major;
 *   2. R*G fp16 centres z, row-major;
 *   3. R*C codes of `bits` bits as one LSB-first bitstream in row-major
 *      order (row r at bit r*C*bits), zero-padded to a byte.
 * payload_size = 4*R*G + ceil(R*C*bits / 8); bits per weight for C a
 * multiple of group: bits + 32/group (daq defaults: 4.25).
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "daq_qform.h"
#include "grouped.h"
#include "kernels.h"
#include "scheme.h"
#include "util.h"
#include "wksp.h"

#define DAQ_MAX_GROUP 128u
_Static_assert(DAQ_MAX_GROUP <= QS_DAQ_QFORM_MAX, "daq_qform sized for the largest group");
#define DAQ_MAX_ITERS 1000u
#define DAQ_BINS 16u     /* one bin per nf4 level: our choice, the paper fixes none */

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
	QS_PARAM_ONE_OF(struct daq_params, group, 128, "weights per group", 32, 64, 128),
	QS_PARAM_RANGE(struct daq_params, iters, 100, 0, DAQ_MAX_ITERS,
		       "LDRA steps (5 error evaluations each)"),
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

/* The density centre of DCA as bin indices: the interval [*lo, *hi] grown
 * from the modal bin until it holds half of the m weights. */
static void modal_interval(const float *w, size_t n, size_t m, float mn, float mx,
			   unsigned *lo, unsigned *hi)
{
	unsigned cnt[DAQ_BINS] = {0};
	float k = (float)DAQ_BINS / (mx - mn);
	for (size_t i = 0; i < n; i++) {
		if (w[i] != w[i])
			continue;
		float t = (w[i] - mn) * k;
		unsigned b = t >= (float)DAQ_BINS ? DAQ_BINS - 1 : (unsigned)t;
		cnt[b]++;
	}
	unsigned mode = 0;
	for (unsigned b = 1; b < DAQ_BINS; b++)
		if (cnt[b] > cnt[mode])
			mode = b;
	unsigned a = mode, z = mode;
	size_t held = cnt[mode];
	while (2 * held < m) {
		bool left = a > 0, right = z + 1 < DAQ_BINS;
		if (left && (!right || cnt[a - 1] >= cnt[z + 1]))
			held += cnt[--a];
		else
			held += cnt[++z];
	}
	*lo = a;
	*hi = z;
}

/* The group's error at (z, s): the codes into codes[], and the error as
 * the statistics say (Hessian block h, else importance imp, else plain).
 * With a Hessian, E = e^T H e comes from the incremental evaluator qf
 * (daq_qform.c), initialised on the first call (*qf_ready == 0); the
 * codes are the kernel's either way. */
static double group_error(const struct qs_kernels *k, const struct daq_book *b, const float *w,
			  const float *imp, const float *h, size_t n, float z, float s,
			  uint8_t *codes, struct qs_daq_qform *qf, int *qf_ready)
{
	float out[3];
	float inv = s > 0 ? 1.0f / s : 0.0f;
	if (h && *qf_ready)
		return qs_daq_qform_eval(qf, z, s, inv, codes);
	k->daq_eval(w, h ? NULL : imp, n, z, s, inv, b->lev, b->mid, b->nlev, codes, out);
	if (!h)
		return out[0];
	qs_daq_qform_init(qf, h, w, b->lev, b->mid, b->nlev - 1, n, z, s, inv, codes);
	*qf_ready = 1;
	return qf->eb;
}

/* Quantizes one group; codes[n], the scale and centre as fp16 bits. */
static int daq_group(const struct qs_kernels *k, const struct daq_book *b, unsigned iters,
		     const float *w, const float *imp, const float *h, size_t n,
		     uint8_t *codes, uint16_t *s16, uint16_t *z16)
{
	float lo[1], hi[1];
	size_t m = k->daq_range(w, n, 1, lo, hi);

	if (m == 0) {
		*s16 = *z16 = 0;
		memset(codes, 0, n);
		return 0;
	}
	if (!(lo[0] >= -65504.0f) || !(hi[0] <= 65504.0f))
		return -QS_ETOOBIG;
	float mn = lo[0], mx = hi[0], z, s;
	if (mx > mn) {
		unsigned a, c;
		modal_interval(w, n, m, mn, mx, &a, &c);
		float width = mx - mn;
		z = f16_round(mn + (float)(a + c + 1) * width / (float)(2 * DAQ_BINS));
		s = f16_up(0.5f * width);
	} else {
		z = f16_round(mn);
		s = f16_up(fmaxf(mx - z, z - mn));
	}
	if (!isfinite(z) || !isfinite(s))
		return -QS_ETOOBIG;

	uint8_t tmp[DAQ_MAX_GROUP];
	uint8_t *best = codes, *cand = tmp;
	struct qs_daq_qform qf;
	int qf_ready = 0;
	float bs = s, bz = z;
	double be = group_error(k, b, w, imp, h, n, z, s, best, &qf, &qf_ready);
	/* every evaluation is a candidate: keeps the least error seen */
#define TRY(zz, ss, out)                                                                \
	do {                                                                            \
		float zz_ = f16_round(zz), ss_ = f16_round(ss);                           \
		if (!(ss_ > 0) || !isfinite(ss_) || !isfinite(zz_)) {                     \
			(out) = INFINITY;                                                   \
			break;                                                              \
		}                                                                           \
		(out) = group_error(k, b, w, imp, h, n, zz_, ss_, cand, &qf, &qf_ready);  \
		if ((out) < be) {                                                           \
			be = (out);                                                         \
			bz = zz_;                                                           \
			bs = ss_;                                                           \
			uint8_t *sw_ = best;                                                \
			best = cand;                                                        \
			cand = sw_;                                                         \
		}                                                                           \
	} while (0)
	/* the range that covers the whole group around z is one more
	 * candidate, and the walk starts from the better of the two: where a
	 * far tail holds salient weights, clipping it costs more than the
	 * resolution it buys */
	if (mx > mn && iters > 0) {
		float cover = f16_up(fmaxf(mx - z, z - mn));
		double ce;
		TRY(z, cover, ce);
		if (bs == cover) {
			s = cover;
			if (h)
				qs_daq_qform_commit(&qf);
		}
	}
	float a0 = s * (1.0f / 32.0f);
	for (unsigned t = 0; t < iters && s > 0; t++) {
		float a = a0 * (1.0f - (float)t / (float)iters), d = 0.25f * a;
		double sp, sm, zp, zm, cur;
		TRY(z, s + d, sp);
		TRY(z, s - d, sm);
		TRY(z + d, s, zp);
		TRY(z - d, s, zm);
		double gs = sp - sm, gz = zp - zm;
		float ns = gs > 0 ? s - a : gs < 0 ? s + a : s;
		float nz = gz > 0 ? z - a : gz < 0 ? z + a : z;
		ns = f16_round(ns);
		nz = f16_round(nz);
		if (ns > 0 && isfinite(ns))
			s = ns;
		if (isfinite(nz))
			z = nz;
		TRY(z, s, cur);
		/* the walk's point is the base the next step's four
		 * neighbours differ from in few codes */
		if (h && cur < INFINITY)
			qs_daq_qform_commit(&qf);
	}
#undef TRY
	if (best != codes)
		memcpy(codes, best, n);
	*s16 = qs_f32_to_f16(bs);
	*z16 = qs_f32_to_f16(bz);
	return 0;
}

/* imp: normalized importance [cols]; hb: the diagonal blocks of H, block j
 * (n_j x n_j, row-major) at hb + j * group^2; at most one of them. */
static int quantize_imp(const struct qs_scheme *s, const float *imp, const float *hb,
			const float *w, uint64_t rows, uint64_t cols, uint8_t *out,
			void *scratch)
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
			rc = daq_group(k, &b, P(s)->iters, wr + j * g, imp ? imp + j * g : NULL,
				       hb ? hb + j * g * g : NULL, n, t.codes + j * g, &t.a[j],
				       &t.b[j]);
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
	return quantize_imp(s, NULL, NULL, w, rows, cols, out, scratch);
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

/* ---- per-tensor statistics ---- */

/* prep: u64 mode (0 none, 1 importance, 2 Hessian blocks), f32[cols] of
 * importance, then, when the plan loads a Hessian for the tensor
 * (s->stats), ceil(cols / group) blocks of group^2 f32. */
enum { PREP_NONE, PREP_IMPORTANCE, PREP_HESSIAN };

static uint64_t hblocks_floats(const struct qs_scheme *s, uint64_t cols)
{
	uint64_t g = P(s)->group, n;
	if (!(s->stats & QS_WANT_HESSIAN))
		return 0;
	if (!qs_mul_u64(qs_grouped_groups(P(s)->group, cols), g * g, &n))
		return UINT64_MAX;
	return n;
}

static uint64_t daq_prep_size(const struct qs_scheme *s, uint64_t cols)
{
	uint64_t hf = hblocks_floats(s, cols);
	if (cols > (UINT64_MAX / 8) || hf > (UINT64_MAX / 8) - cols)
		return UINT64_MAX;
	return 8 + 4 * cols + 4 * hf;
}

/* Normalizes stats->importance into dst[cols] (mean 1, plus 0.01), or
 * returns 0 when there is none to use. */
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

/* Copies the diagonal blocks of stats->hessian into dst (see prep). */
static int copy_blocks(const struct qs_scheme *s, const struct qs_tensor_stats *st, float *dst,
		       struct qs_diag *diag)
{
	size_t c = (size_t)st->cols, g = P(s)->group;
	size_t ng = (size_t)qs_grouped_groups(P(s)->group, st->cols);
	for (size_t j = 0; j < ng; j++) {
		size_t n = c - j * g < g ? c - j * g : g;
		float *blk = dst + j * g * g;
		for (size_t a = 0; a < n; a++)
			for (size_t b = 0; b < n; b++) {
				float v = st->hessian[(j * g + a) * c + j * g + b];
				if (!isfinite(v))
					return qs_diag_set(diag, -QS_ENONFINITE,
							   "daq: tensor '%s': Hessian holds NaN or "
							   "Inf at [%zu, %zu]",
							   st->name ? st->name : "?", j * g + a,
							   j * g + b);
				blk[a * n + b] = v;
			}
		/* the block made symmetric ((H + H^T) / 2, the same e^T H e):
		 * the evaluator (daq_qform.c) reads column j as row j; an X^T X
		 * is symmetric already and passes unchanged */
		for (size_t a = 0; a < n; a++)
			for (size_t b = 0; b < a; b++) {
				float u = blk[a * n + b], v = blk[b * n + a];
				if (u != v)
					blk[a * n + b] = blk[b * n + a] =
						(float)(0.5 * ((double)u + (double)v));
			}
	}
	return 0;
}

static int daq_prepare(const struct qs_scheme *s, const struct qs_tensor_stats *st,
		       void *prep, struct qs_diag *diag)
{
	uint8_t *p = prep;
	uint64_t mode = PREP_NONE;
	if (st && st->hessian && hblocks_floats(s, st->cols)) {
		int rc = copy_blocks(s, st, (float *)(p + 8 + 4 * st->cols), diag);
		if (rc < 0)
			return rc;
		mode = PREP_HESSIAN;
	} else {
		int rc = norm_importance(st, (float *)(p + 8), diag);
		if (rc < 0)
			return rc;
		mode = rc ? PREP_IMPORTANCE : PREP_NONE;
	}
	qs_put_le64(p, mode);
	return 0;
}

static int daq_quantize_prep(const struct qs_scheme *s, const void *prep, const float *w,
			     uint64_t rows, uint64_t cols, uint8_t *out, void *scratch)
{
	const uint8_t *p = prep;
	uint64_t mode = p ? qs_get_le64(p) : PREP_NONE;
	const float *imp = mode == PREP_IMPORTANCE ? (const float *)(p + 8) : NULL;
	const float *hb = mode == PREP_HESSIAN ? (const float *)(p + 8 + 4 * cols) : NULL;
	return quantize_imp(s, imp, hb, w, rows, cols, out, scratch);
}

const struct qs_scheme_ops qs_scheme_daq = {
	.name = "daq",
	.params = daq_param_table,
	.check = daq_check,
	.payload_size = daq_payload_size,
	.scratch_size = daq_scratch_size,
	.quantize = daq_quantize,
	.dequantize = daq_dequantize,
	.wants = QS_WANT_IMPORTANCE | QS_WANT_HESSIAN,
	.prep_size = daq_prep_size,
	.prepare = daq_prepare,
	.quantize_prep = daq_quantize_prep,
	.prep_for_stats_only = true,
	.hessian_cost_linear = true,
};

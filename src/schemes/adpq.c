/* adpq.c - AdpQ (Ghaffari et al., "AdpQ: A Zero-shot Calibration Free
 * Adaptive Post Training Quantization Method for LLMs", arXiv:2405.13358):
 * per group, the weights that an Adaptive LASSO soft threshold flags as
 * salient are quantized apart from the rest, each set on its own grid (the
 * same definition is in qshard(5); change both or neither).
 *
 * Parameters (canonical text "adpq:bits=B,group=G,alpha=A,search=S,
 * scales=u8|f16,layout=planes|tight"):
 *   bits   2, 3, 4 (default 3);       group  64, 128, 256 (default 128);
 *   alpha  outlier fraction of each row, a decimal in [0, 0.25] with at
 *          most 4 fractional digits (default 0.0175);
 *   search clipped inlier ranges tried besides the full one, 0..16
 *          (default 8: each costs one more error pass over the group);
 *   scales u8: 8-bit group scales/mins under fp16 row super-scales
 *          (default), or f16: fp16 group scales/mins;
 *   layout planes: codes as bit planes, inlier codes folded around the zero
 *          code (default), or tight: one LSB-first bitstream of raw codes.
 * The defaults were chosen on weights qshard did not generate
 * (contrib/bench/bench-quality: a Llama trained on real text and
 * synth_ckpt.py's numpy checkpoint), not on mkckpt's: at bits=3 they give
 * 3.450 bpw on the numpy checkpoint's 1024/2816 columns (ggml q3_K: 3.438)
 * and 15.83 dB weight SQNR against q3_K's 14.52; search=8 is worth +1.3
 * dB there and +1.4 dB on the Llama over search=0 (search=16 adds nothing)
 * for about 1.7 times the kernel time; alpha 0.0175 vs 0.02 keeps q3_K's
 * size.  For q4_K's size at bits=4 use alpha=0.025 (4.512 bpw, 22.36 dB
 * vs 20.89).  The figures are in README.md ("Quality benchmark").
 *
 * Outliers.  Adaptive LASSO soft thresholding, w~ = sign(w) max(|w| -
 * lambda'/|w|, 0), is zero exactly when |w| <= sqrt(lambda'), so a threshold
 * flags the weights of largest magnitude (the paper's criterion; the centre
 * is 0, which fits weights of zero mean).  As in the paper, one lambda' is
 * set so that a target fraction is separated overall -- here per row: the
 * row's K = round(alpha * C) weights of largest |w| (K = floor((alpha*10^4
 * * C + 5000) / 10^4), halves up; ties to the lower index, a NaN counting
 * as |w| = 0).  Per row rather than per tensor because a row is what a chunk
 * always holds whole: the output cannot depend on --memory or -T, and no
 * pass over the whole tensor is needed before the first chunk is written;
 * and because rows of one tensor differ in scale (log-normal row norms are
 * common), a tensor-wide threshold would spend the outlier budget on the
 * loudest rows whole.  A group then holds k of the row's outliers, 0 <= k
 * <= group, as many as it really has (qs_adpq_select_row() in ref_adpq.c,
 * shared by every ISA).
 *
 * Per group, qmax = 2^bits - 1, omax = 2^(bits-1) - 1, f32 arithmetic with
 * every operation rounded separately (ref_adpq.c is the exact definition):
 *   inliers: [lo, hi] = min and max of the non-outliers (NaNs skipped),
 *     or, with search = S, the candidate [mid - f*h, mid + f*h], h = (hi -
 *     lo)/2, mid = lo + h, f = (32 - i)/32 for i = 1..S, whose inliers have
 *     a smaller squared error on the grid lo + c*(hi - lo)/qmax (the full
 *     range wins ties; each candidate's codes as below, with minf = its
 *     lower end; the error is measured in grid units, sum ((w - lo)/step -
 *     c)^2 times step^2, summed in 32 lanes as ref_adpq.c says);
 *     grid: w' = minf + c*step (product rounded, then the sum), c in
 *     0..qmax, minf <= lo and minf + qmax*step >= hi, c = clamp(nearest((w -
 *     minf) * (1/step)), 0, qmax), ties to even, NaN to 0, all 0 when
 *     step = 0;
 *   outliers: sign-magnitude codes, sign in bit bits-1 and m in 0..omax,
 *     |w'| = omin + m*ostep with omin <= min |w| and omin + omax*ostep >=
 *     max |w| over the group's outliers, m = clamp(nearest((|w| - omin) *
 *     (1/ostep)), 0, omax), the sign bit that of w.
 * scales=u8: per row, fp16 units D (step), DM (min), OD (outlier step), OM
 * (outlier min), each the smallest fp16 with 255*unit covering the row's
 * largest need; per group 8-bit codes: minf = -(DM*mc), mc the smallest with
 * DM*mc >= -lo (0 when lo >= 0); step = D*sc, sc the smallest with minf +
 * qmax*(D*sc) >= hi; omin = OM*oc, oc the largest with OM*oc <= min |w|;
 * ostep = OD*osc, the smallest that covers.  scales=f16: minf, omin = the
 * largest fp16 <= lo, min |w|; step, ostep = the smallest fp16 that covers.
 * layout=planes stores an inlier code c as its rank in the order z, z+1,
 * z-1, z+2, z-2, ... (then the rest of the longer side), z = the code
 * nearest 0.0 = nearest((0 - minf)/step); outlier codes are stored as is.
 * Groups whose values do not fit fp16 (so any Inf) fail with -QS_ETOOBIG.
 *
 * Payload of a chunk of R rows x C cols, G = ceil(C / group) groups per
 * row, K = round(alpha * C) outliers per row, L = log2(group), all
 * little-endian, every stream row-major with a fixed size per row (so a
 * reader can seek to any row):
 *   1. scales=u8: R x 4 fp16 (D, DM, OD, OM of each row), then 4 streams
 *      of R*G bytes: sc, mc, osc, oc;
 *      scales=f16: 4 streams of R*G fp16: step, minf, ostep, omin;
 *   2. the group counts in unary, per row and group k one bits then a zero
 *      (G + K bits a row), one LSB-first bitstream zero-padded to a byte;
 *      a row whose code does not end its G-th group exactly at its end is
 *      refused (-QS_EFORMAT);
 *   3. R*K outlier indices (position in the group, ascending within a
 *      group, groups in order) as an L-bit LSB-first bitstream,
 *      zero-padded to a byte;
 *   4. layout=tight: R*C codes of `bits` bits, LSB-first bitstream (row r
 *      at bit r*C*bits), zero-padded to a byte;
 *      layout=planes: `bits` planes of R*ceil(C/8) bytes, plane p holding
 *      bit p of each code, 8 codes a byte LSB-first, each row starting on a
 *      byte.  An outlier's code (its value: sign-magnitude on the group's
 *      outlier grid) sits at its position in the same stream.
 * payload_size = meta + ceil(R*(G+K)/8) + ceil(R*K*L/8) + codes, meta = 8R
 * + 4RG (u8) or 8RG (f16), codes = ceil(R*C*bits/8) (tight) or
 * bits*R*ceil(C/8) (planes).  Bits per weight for C a multiple of group:
 * bits + 32/group (u8; 64/group for f16) + 1/group + alpha*(L + 1) + 64/C
 * (u8 only); adpq:bits=3 defaults on 2048 columns: 3 + 0.25 + 0.008 + 0.14
 * + 0.031 = 3.429.
 */
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "adpq_scalar.h"
#include "decode_scalar.h"
#include "kernels.h"
#include "scheme.h"
#include "second_order.h"
#include "util.h"
#include "wksp.h"

#define SEARCH_MAX 16u

enum { SCALES_U8, SCALES_F16 };
enum { LAYOUT_PLANES, LAYOUT_TIGHT };

struct adpq_params {
	unsigned bits, group;
	unsigned alpha;   /* outlier fraction, units of 1e-4 */
	unsigned search;
	unsigned scales;  /* SCALES_* */
	unsigned layout;  /* LAYOUT_* */
};

static const struct qs_param adpq_param_table[] = {
	QS_PARAM_ONE_OF(struct adpq_params, bits, 3, "code width", 2, 3, 4),
	QS_PARAM_ONE_OF(struct adpq_params, group, 128, "weights per group", 64, 128, 256),
	QS_PARAM_DECIMAL(struct adpq_params, alpha, 175, 0, 2500, 4, false,
			 "fraction of each row quantized as outliers"),
	QS_PARAM_RANGE(struct adpq_params, search, 8, 0, SEARCH_MAX,
		       "clipped inlier ranges tried besides the full one"),
	QS_PARAM_NAME(struct adpq_params, scales, SCALES_U8, "group meta encoding", "u8", "f16"),
	QS_PARAM_NAME(struct adpq_params, layout, LAYOUT_PLANES, "code layout", "planes",
		      "tight"),
	QS_PARAM_END,
};

static const struct adpq_params *P(const struct qs_scheme *s)
{
	return QS_SCHEME_PARAMS(struct adpq_params, s);
}

static bool params_ok(const struct qs_scheme *s)
{
	return qs_scheme_params_ok(s);
}

static struct qs_adpq_params params_of(const struct qs_scheme *s)
{
	struct qs_adpq_params p;
	p.bits = P(s)->bits;
	p.group = P(s)->group;
	p.alpha_e4 = P(s)->alpha;
	p.search = P(s)->search;
	p.flags = (P(s)->scales == SCALES_F16 ? QS_ADPQ_SCALES_F16 : 0) |
		  (P(s)->layout == LAYOUT_PLANES ? QS_ADPQ_FOLD : 0);
	return p;
}

static unsigned log2_group(unsigned g)
{
	unsigned l = 0;
	while ((1u << l) < g)
		l++;
	return l;
}

static uint64_t groups_per_row(const struct qs_scheme *s, uint64_t cols)
{
	return cols / P(s)->group + (cols % P(s)->group != 0);
}

static uint64_t outliers_per_row(const struct qs_scheme *s, uint64_t cols)
{
	return qs_adpq_k(P(s)->alpha, cols);
}

struct sizes {
	uint64_t ng, nk, meta, cnt, idx, codes, total;
};

static bool chunk_sizes(const struct qs_scheme *s, uint64_t rows, uint64_t cols,
			struct sizes *z)
{
	uint64_t rg, t, nbits, plane;
	if (!params_ok(s))
		return false;
	z->ng = groups_per_row(s, cols);
	z->nk = outliers_per_row(s, cols);
	if (!qs_mul_u64(rows, z->ng, &rg))
		return false;
	if (P(s)->scales == SCALES_F16) {
		if (!qs_mul_u64(rg, 8, &z->meta))
			return false;
	} else if (!qs_mul_u64(rg, 4, &t) || !qs_mul_u64(rows, 8, &z->meta) ||
		   !qs_add_u64(z->meta, t, &z->meta)) {
		return false;
	}
	/* the unary group counts: ng zeros and nk ones a row */
	if (!qs_add_u64(z->ng, z->nk, &t) || !qs_mul_u64(rows, t, &nbits))
		return false;
	z->cnt = nbits / 8 + (nbits % 8 != 0);
	if (!qs_mul_u64(rows, z->nk, &t) || !qs_mul_u64(t, log2_group(P(s)->group), &nbits))
		return false;
	z->idx = nbits / 8 + (nbits % 8 != 0);
	if (P(s)->layout == LAYOUT_TIGHT) {
		if (!qs_mul_u64(rows, cols, &t) || !qs_mul_u64(t, P(s)->bits, &nbits))
			return false;
		z->codes = nbits / 8 + (nbits % 8 != 0);
	} else {
		plane = cols / 8 + (cols % 8 != 0);
		if (!qs_mul_u64(rows, plane, &t) || !qs_mul_u64(t, P(s)->bits, &z->codes))
			return false;
	}
	return qs_add_u64(z->meta, z->cnt, &t) && qs_add_u64(t, z->idx, &t) &&
	       qs_add_u64(t, z->codes, &z->total);
}

static uint64_t adpq_payload_size(const struct qs_scheme *s, uint64_t rows, uint64_t cols)
{
	struct sizes z;
	return chunk_sizes(s, rows, cols, &z) ? z.total : UINT64_MAX;
}

/* One row at a time: meta (4G u16), tmp (4G f32), codes (C), mask (C),
 * indices (K), counts (G u16), the unary count bits (G + K bytes), each
 * section 64-byte aligned (the memory window is computed from this size;
 * the carve's takes fit in it). */
static uint64_t sect(uint64_t n)
{
	return (n + QS_WKSP_ALIGN - 1) / QS_WKSP_ALIGN * QS_WKSP_ALIGN;
}

static uint64_t row_scratch_size(const struct qs_scheme *s, uint64_t cols)
{
	uint64_t ng = groups_per_row(s, cols);
	uint64_t nk = outliers_per_row(s, cols);
	return QS_WKSP_ALIGN + sect(8 * ng) + sect(16 * ng) + 2 * sect(cols) + sect(nk) +
	       sect(2 * ng) + sect(ng + nk);
}

static uint64_t hes_scratch_size(uint64_t rows, uint64_t cols, uint64_t ng);
static bool use_hessian(const struct qs_scheme *s);

/* With a Hessian the chunk's working copy, grids, flags, codes and one
 * block of errors follow the row's buffers. */
static uint64_t adpq_scratch_size(const struct qs_scheme *s, uint64_t rows, uint64_t cols)
{
	if (!params_ok(s) || cols > UINT64_MAX / 64)
		return UINT64_MAX;
	uint64_t base = row_scratch_size(s, cols), h;
	if (!use_hessian(s))
		return base;
	h = hes_scratch_size(rows, cols, groups_per_row(s, cols));
	if (h == UINT64_MAX || h > UINT64_MAX - base - QS_WKSP_ALIGN)
		return UINT64_MAX;
	return base + QS_WKSP_ALIGN + h;
}

static struct qs_adpq_row carve(void *scratch, size_t ng, size_t cols, size_t nk,
				uint8_t **unary)
{
	struct qs_wksp w;
	struct qs_adpq_row r;
	memset(&r, 0, sizeof(r));
	qs_wksp_init(&w, scratch);
	r.meta = qs_wksp_take(&w, 8 * (uint64_t)ng, QS_WKSP_ALIGN);
	r.tmp = qs_wksp_take(&w, 16 * (uint64_t)ng, QS_WKSP_ALIGN);
	r.codes = qs_wksp_take(&w, cols, QS_WKSP_ALIGN);
	r.mask = qs_wksp_take(&w, cols, QS_WKSP_ALIGN);
	r.idx = qs_wksp_take(&w, nk, QS_WKSP_ALIGN);
	r.counts = qs_wksp_take(&w, 2 * (uint64_t)ng, QS_WKSP_ALIGN);
	*unary = qs_wksp_take(&w, ng + nk, QS_WKSP_ALIGN);
	return r;
}

/* Group counts <-> their unary code: per group, count ones then a zero
 * (G + K bits a row whatever the split, so every row of the stream has the
 * same size and a reader can seek to any row). */
static void counts_to_unary(const uint16_t *counts, size_t ng, uint8_t *u)
{
	for (size_t g = 0; g < ng; g++) {
		memset(u, 1, counts[g]);
		u += counts[g];
		*u++ = 0;
	}
}

/* -QS_EFORMAT unless the bits hold exactly ng groups of at most `group`
 * outliers each. */
static int unary_to_counts(const uint8_t *u, size_t nbits, size_t ng, unsigned group,
			   uint16_t *counts)
{
	size_t g = 0;
	memset(counts, 0, ng * sizeof(*counts));
	for (size_t i = 0; i < nbits; i++) {
		if (u[i] == 0)
			g++;
		else if (g >= ng || counts[g] >= group)
			return -QS_EFORMAT;
		else
			counts[g]++;
	}
	return g == ng ? 0 : -QS_EFORMAT;
}

static int check_chunk(const struct qs_scheme *s, uint64_t rows, uint64_t cols,
		       struct sizes *z)
{
	uint64_t nw;
	if (!params_ok(s))
		return -QS_EUSAGE;
	if (!chunk_sizes(s, rows, cols, z) || z->total > SIZE_MAX ||
	    !qs_mul_u64(rows, cols, &nw) || nw > SIZE_MAX ||
	    adpq_scratch_size(s, rows, cols) > SIZE_MAX)
		return -QS_ETOOBIG;
	return 0;
}

/* ---- with --hessian: AdpQ's separation first, then GPTQ's compensation ----
 *
 * The follow-up use of AdpQ as the first step of a calibration method: the
 * outliers and both grids of every group are fixed by the calibration-free
 * pass above on the original weights (GPTQ's "static groups": the row's u8
 * super-scales need every group's range before any code is chosen), then
 * the codes are chosen column by column as GPTQ does (Frantar et al.,
 * arXiv:2210.17323): with H^-1 = U^T U (U upper triangular, from the
 * shared engine's preparation, second_order.c: dead columns, dampening
 * 0.01 of the mean diagonal, LAPACK), column j's value x is rounded on its
 * grid (the inlier grid, or the group's sign-magnitude outlier grid for an
 * outlier), e = (x - q) / U[j,j], and every later column of the row gets
 * w[k] -= e * U[j,k].  The updates are batched (GPTQ's lazy batch update):
 * within a block of SO_BLOCK columns row by row in plain C, then the
 * block's errors reach the later columns as one cblas_sgemm, W[:, after]
 * -= E U[block, after].  An outlier is compensated like any other weight:
 * its own grid is fine (it spans only the outliers' magnitudes), and the
 * error of every weight, outlier or not, is pushed onto the weights not yet
 * rounded.  The payload is exactly adpq's (same counts, indices and grids;
 * only the codes differ), so adpq's dequantize reads it.  Rows share H, so
 * a chunk is as good as the tensor.  As for gptq, the sgemm is OpenBLAS's:
 * reproducible on one machine for any -T or --memory, possibly not across
 * CPU types. */
#define SO_BLOCK 128u
#define SO_DAMP_E4 100u /* gptq's default dampening */

static bool use_hessian(const struct qs_scheme *s)
{
	return (s->stats & QS_WANT_HESSIAN) != 0;
}

struct hes_scratch {
	float *w;       /* R x C working copy; compensated as the pass goes */
	float *grid;    /* R x G x 4: minf, step, omin, ostep as dequantize rebuilds them */
	uint8_t *omask; /* R x C: 1 for an outlier */
	uint8_t *codes; /* R x C stored codes */
	float *e;       /* R x SO_BLOCK errors of the current block */
};

static uint64_t hes_scratch_size(uint64_t rows, uint64_t cols, uint64_t ng)
{
	uint64_t rc, t;
	if (!qs_mul_u64(rows, cols, &rc) || rc > UINT64_MAX / 64 || ng > UINT64_MAX / 64 ||
	    !qs_mul_u64(rows, 16 * ng, &t))
		return UINT64_MAX;
	return sect(4 * rc) + sect(t) + 2 * sect(rc) + sect(4 * rows * SO_BLOCK);
}

static struct hes_scratch hes_carve(void *base, size_t R, size_t c, size_t ng)
{
	struct qs_wksp w;
	struct hes_scratch h;
	qs_wksp_init(&w, base);
	h.w = qs_wksp_take(&w, 4 * (uint64_t)R * c, QS_WKSP_ALIGN);
	h.grid = qs_wksp_take(&w, 16 * (uint64_t)R * ng, QS_WKSP_ALIGN);
	h.omask = qs_wksp_take(&w, (uint64_t)R * c, QS_WKSP_ALIGN);
	h.codes = qs_wksp_take(&w, (uint64_t)R * c, QS_WKSP_ALIGN);
	h.e = qs_wksp_take(&w, 4 * (uint64_t)R * SO_BLOCK, QS_WKSP_ALIGN);
	return h;
}

/* Keeps row r's grids and outlier flags from its calibration-free pass. */
static void hes_keep_row(struct hes_scratch *h, const struct qs_adpq_row *t,
			 const struct qs_adpq_params *p, const float *w, size_t r, size_t c,
			 size_t ng)
{
	float sup[4];
	qs_adpq_supers(t, sup);
	float *gr = h->grid + 4 * r * ng;
	for (size_t g = 0; g < ng; g++) {
		struct qs_adpq_grid q = qs_adpq_grid_of(t, sup, ng, g, p->flags);
		gr[4 * g] = q.minf;
		gr[4 * g + 1] = q.step;
		gr[4 * g + 2] = q.omin;
		gr[4 * g + 3] = q.ostep;
	}
	uint8_t *om = h->omask + r * c;
	memset(om, 0, c);
	const uint8_t *idx = t->idx;
	for (size_t g = 0; g < ng; g++) {
		for (unsigned o = 0; o < t->counts[g]; o++)
			om[g * p->group + idx[o]] = 1;
		idx += t->counts[g];
	}
	memcpy(h->w + r * c, w, c * sizeof(float));
}

/* Columns [a, b) of row r: codes on the fixed grids, errors to h->e, the
 * in-block updates. */
static void hes_block_row(struct hes_scratch *h, const struct qs_adpq_params *p,
			  const float *u, size_t r, size_t c, size_t ng, size_t a, size_t b)
{
	const unsigned qmax = (1u << p->bits) - 1u, omax = (1u << (p->bits - 1)) - 1u;
	const float qmaxf = (float)qmax, omaxf = (float)omax;
	const bool fold = (p->flags & QS_ADPQ_FOLD) != 0;
	float *wr = h->w + r * c, *er = h->e + r * SO_BLOCK;
	const float *gr = h->grid + 4 * r * ng;
	const uint8_t *om = h->omask + r * c;
	uint8_t *cr = h->codes + r * c;
	for (size_t j = a; j < b; j++) {
		size_t g = j / p->group;
		struct qs_adpq_grid q = {gr[4 * g], gr[4 * g + 1], gr[4 * g + 2], gr[4 * g + 3]};
		float x = wr[j], v;
		if (om[j]) {
			uint8_t co = qs_adpq_outlier_code(x, &q, qs_adpq_inv(q.ostep), omaxf, p->bits);
			float t = (float)(co & omax) * q.ostep;
			float mag = q.omin + t;
			v = (co >> (p->bits - 1)) & 1u ? -mag : mag;
			cr[j] = co;
		} else {
			float inv = qs_adpq_inv(q.step);
			unsigned ci = qs_round_code((x - q.minf) * inv, qmaxf);
			float t = (float)ci * q.step;
			v = q.minf + t;
			cr[j] = (uint8_t)(fold ? qs_adpq_fold(ci, qs_adpq_zero_code(&q, inv, qmaxf), qmax)
					       : ci);
		}
		float e = (x - v) / u[j * c + j];
		e = fabsf(e) <= FLT_MAX ? e : 0.0f;  /* a NaN or Inf weight pushes nothing */
		er[j - a] = e;
		const float *uj = u + j * c;
		for (size_t k = j + 1; k < b; k++)
			wr[k] -= e * uj[k];
	}
}

static void hes_pass(struct hes_scratch *h, const struct qs_adpq_params *p, const float *u,
		     size_t R, size_t c, size_t ng)
{
	for (size_t a = 0; a < c; a += SO_BLOCK) {
		size_t b = c - a < SO_BLOCK ? c : a + SO_BLOCK;
		for (size_t r = 0; r < R; r++)
			hes_block_row(h, p, u, r, c, ng, a, b);
		if (b < c)
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)R,
				    (blasint)(c - b), (blasint)(b - a), -1.0f, h->e, SO_BLOCK,
				    u + a * c + b, (blasint)c, 1.0f, h->w + b, (blasint)c);
	}
}

/* Where a chunk's rows go in its payload (the sections of the format
 * comment at the top), and the per-row buffers of the kernels. */
struct chunk_out {
	const struct qs_kernels *k;
	struct qs_adpq_params p;
	size_t ng, nk, c, R, plane;
	unsigned lg;
	bool u8, tight;
	uint8_t *super, *meta, *cnt, *idx, *codes, *unary;
	struct qs_adpq_row t;
};

static struct chunk_out chunk_out_of(const struct qs_scheme *s, const struct sizes *z,
				     uint64_t rows, uint64_t cols, uint8_t *out, void *scratch)
{
	struct chunk_out o;
	o.k = qs_kernels_get();
	o.p = params_of(s);
	o.ng = (size_t)z->ng;
	o.nk = (size_t)z->nk;
	o.c = (size_t)cols;
	o.R = (size_t)rows;
	o.plane = o.c / 8 + (o.c % 8 != 0);
	o.lg = log2_group(P(s)->group);
	o.u8 = P(s)->scales == SCALES_U8;
	o.tight = P(s)->layout == LAYOUT_TIGHT;
	o.super = out;
	o.meta = out + (o.u8 ? 8 * o.R : 0);
	o.cnt = out + z->meta;
	o.idx = o.cnt + z->cnt;
	o.codes = o.idx + z->idx;
	o.t = carve(scratch, o.ng, o.c, o.nk, &o.unary);
	return o;
}

/* Row r's codes (codes[c]) into the payload: packed LSB-first, or as
 * bit planes. */
static void put_codes(const struct chunk_out *o, const uint8_t *codes, size_t r)
{
	if (o->tight)
		o->k->pack_bits(codes, o->c, o->p.bits, o->codes, (uint64_t)r * o->c * o->p.bits);
	else
		o->k->pack_planes(codes, o->c, o->p.bits, o->codes + r * o->plane, o->R * o->plane);
}

/* Row r's grids, group counts and outlier indices (o->t, as the row kernel
 * left them) into the payload. */
static void put_row_meta(const struct chunk_out *o, size_t r)
{
	const size_t ng = o->ng, R = o->R;
	for (size_t j = 0; j < 4; j++) {
		const uint16_t *mj = o->t.meta + j * ng;
		if (o->u8) {
			qs_put_le16(o->super + 8 * r + 2 * j, o->t.super[j]);
			uint8_t *d = o->meta + (j * R + r) * ng;
			for (size_t g = 0; g < ng; g++)
				d[g] = (uint8_t)mj[g];
		} else {
			uint8_t *d = o->meta + 2 * (j * R + r) * ng;
			for (size_t g = 0; g < ng; g++)
				qs_put_le16(d + 2 * g, mj[g]);
		}
	}
	counts_to_unary(o->t.counts, ng, o->unary);
	o->k->pack_bits(o->unary, ng + o->nk, 1, o->cnt, (uint64_t)r * (ng + o->nk));
	o->k->pack_bits(o->t.idx, o->nk, o->lg, o->idx, (uint64_t)r * o->nk * o->lg);
}

/* One row through the calibration-free kernel into the payload; 1 when a
 * group's range does not fit the scale encoding. */
static int put_row(struct chunk_out *o, const float *w, size_t r)
{
	if (o->k->adpq_quantize_row(w, o->c, &o->p, &o->t))
		return 1;
	put_row_meta(o, r);
	put_codes(o, o->t.codes, r);
	return 0;
}

/* u: the factor of H^-1 (cols x cols), or NULL for the calibration-free
 * scheme. */
static int quantize_with(const struct qs_scheme *s, const float *u, const float *w,
			 uint64_t rows, uint64_t cols, uint8_t *out, void *scratch)
{
	struct sizes z;
	int rc = check_chunk(s, rows, cols, &z);
	if (rc)
		return rc;
	if (rows == 0 || cols == 0)
		return 0;
	if (u && (cols > INT32_MAX || rows > INT32_MAX))
		return -QS_ETOOBIG;

	struct chunk_out o = chunk_out_of(s, &z, rows, cols, out, scratch);
	const size_t c = o.c, R = o.R, ng = o.ng;
	if (!u) {
		for (size_t r = 0; r < R; r++)
			if (put_row(&o, w + r * c, r))
				return -QS_ETOOBIG;
		return 0;
	}
	struct hes_scratch h = hes_carve((uint8_t *)scratch + row_scratch_size(s, cols), R, c, ng);
	for (size_t r = 0; r < R; r++) {
		if (o.k->adpq_quantize_row(w + r * c, c, &o.p, &o.t))
			return -QS_ETOOBIG;
		put_row_meta(&o, r);
		hes_keep_row(&h, &o.t, &o.p, w + r * c, r, c, ng);
	}
	hes_pass(&h, &o.p, u, R, c, ng);
	for (size_t r = 0; r < R; r++)
		put_codes(&o, h.codes + r * c, r);
	return 0;
}

/* adpq from the source bytes (scheme.h quantize_src), calibration-free
 * only: each row is decoded and checked into `row`, where it stays in
 * L1/L2 for the selection's and the range search's passes, so the chunk
 * is never copied to f32 in memory (issue 16).  The same payload as
 * adpq_quantize() on the decoded chunk: the kernel sees the same row.
 * Once a row holds NaN/Inf without sanitize, or a group overflows, the
 * payload will not be used: the rest is only decoded, so the chunk's
 * whole NaN/Inf count is still reported (rtn's rule; the pipeline's NaN
 * error comes first). */
static int adpq_quantize_src(const struct qs_scheme *s, unsigned kind, const void *src,
			     uint64_t rows, uint64_t cols, int sanitize, uint8_t *out,
			     void *scratch, float *row, size_t *nonfinite,
			     const struct qs_row_hook *hook)
{
	struct sizes z;
	int rc = check_chunk(s, rows, cols, &z);
	if (rc)
		return rc;
	if (use_hessian(s))
		return -QS_EUSAGE;  /* GPTQ's pass needs the chunk: quantize_prep */
	if (rows == 0 || cols == 0)
		return 0;

	struct chunk_out o = chunk_out_of(s, &z, rows, cols, out, scratch);
	const size_t esz = kind == QS_SRC_KIND_F32 ? 4 : 2;
	bool quantizing = true;
	for (size_t r = 0; r < o.R; r++) {
		if (hook)
			hook->before_row(hook->user, r);
		size_t bad = o.k->decode_checked(kind, (const uint8_t *)src + r * o.c * esz, row, o.c);
		*nonfinite += bad;
		if (bad && !sanitize)
			quantizing = false;
		if (!quantizing)
			continue;
		if (bad)
			qs_sanitize_scalar(row, o.c);
		if (put_row(&o, row, r)) {
			if (sanitize)
				return -QS_ETOOBIG;
			rc = -QS_ETOOBIG;
			quantizing = false;
		}
	}
	return rc;
}

static int adpq_quantize(const struct qs_scheme *s, const float *w, uint64_t rows,
			 uint64_t cols, uint8_t *out, void *scratch)
{
	return quantize_with(s, NULL, w, rows, cols, out, scratch);
}

/* Per-tensor state: a header, then (with --hessian) the shared engine's. */
struct adpq_prep {
	uint32_t magic;
	uint32_t have_factor;
	uint64_t cols;
};
#define ADPQ_PREP_MAGIC 0x51504441u
#define PREP_HDR sect(sizeof(struct adpq_prep))

static uint64_t adpq_prep_size(const struct qs_scheme *s, uint64_t cols)
{
	uint64_t so;
	if (!use_hessian(s))
		return QS_WKSP_ALIGN + PREP_HDR;
	so = qs_so_prep_size(cols);
	if (so == UINT64_MAX || so > UINT64_MAX - 2 * QS_WKSP_ALIGN - PREP_HDR)
		return UINT64_MAX;
	return QS_WKSP_ALIGN + PREP_HDR + so;
}

static struct adpq_prep *prep_hdr(const void *prep)
{
	uintptr_t a = ((uintptr_t)prep + QS_WKSP_ALIGN - 1) & ~(uintptr_t)(QS_WKSP_ALIGN - 1);
	return (struct adpq_prep *)a;
}

static int adpq_prepare(const struct qs_scheme *s, const struct qs_tensor_stats *st, void *prep,
			struct qs_diag *diag)
{
	struct adpq_prep *hd = prep_hdr(prep);
	memset(hd, 0, sizeof(*hd));
	hd->magic = ADPQ_PREP_MAGIC;
	hd->cols = st->cols;
	if (!st->hessian || !use_hessian(s))
		return 0;
	struct qs_so_cfg cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.bits = 4;  /* only the factorization is used: any legal grid */
	cfg.group = 128;
	cfg.damp_e4 = SO_DAMP_E4;
	int rc = qs_so_prepare(&cfg, st, (uint8_t *)hd + PREP_HDR, s->text, diag);
	if (rc < 0)
		return rc;
	hd->have_factor = qs_so_prep_factor((uint8_t *)hd + PREP_HDR, st->cols) != NULL;
	return 0;
}

static int adpq_quantize_prep(const struct qs_scheme *s, const void *prep, const float *w,
			      uint64_t rows, uint64_t cols, uint8_t *out, void *scratch)
{
	const float *u = NULL;
	if (prep) {
		const struct adpq_prep *hd = prep_hdr(prep);
		if (hd->magic != ADPQ_PREP_MAGIC || hd->cols != cols)
			return -QS_EUSAGE;
		if (hd->have_factor && use_hessian(s))
			u = qs_so_prep_factor((const uint8_t *)hd + PREP_HDR, cols);
	}
	return quantize_with(s, u, w, rows, cols, out, scratch);
}

static int adpq_dequantize(const struct qs_scheme *s, const uint8_t *in, uint64_t rows,
			   uint64_t cols, float *out, void *scratch)
{
	struct sizes z;
	int rc = check_chunk(s, rows, cols, &z);
	if (rc)
		return rc;
	if (rows == 0 || cols == 0)
		return 0;

	const struct qs_kernels *k = qs_kernels_get();
	struct qs_adpq_params p = params_of(s);
	size_t ng = (size_t)z.ng, nk = (size_t)z.nk, c = (size_t)cols, R = (size_t)rows;
	unsigned lg = log2_group(P(s)->group);
	bool u8 = P(s)->scales == SCALES_U8;
	uint8_t *unary;
	struct qs_adpq_row t = carve(scratch, ng, c, nk, &unary);
	const uint8_t *meta = in + (u8 ? 8 * R : 0);
	const uint8_t *cnt = in + z.meta;
	const uint8_t *idx = cnt + z.cnt;
	const uint8_t *codes = idx + z.idx;
	size_t plane = c / 8 + (c % 8 != 0);

	for (size_t r = 0; r < R; r++) {
		for (size_t j = 0; j < 4; j++) {
			uint16_t *mj = t.meta + j * ng;
			if (u8) {
				t.super[j] = qs_get_le16(in + 8 * r + 2 * j);
				const uint8_t *d = meta + (j * R + r) * ng;
				for (size_t g = 0; g < ng; g++)
					mj[g] = d[g];
			} else {
				const uint8_t *d = meta + 2 * (j * R + r) * ng;
				for (size_t g = 0; g < ng; g++)
					mj[g] = qs_get_le16(d + 2 * g);
			}
		}
		k->unpack_bits(cnt, (uint64_t)r * (ng + nk), ng + nk, 1, unary);
		if (unary_to_counts(unary, ng + nk, ng, P(s)->group, t.counts))
			return -QS_EFORMAT;
		k->unpack_bits(idx, (uint64_t)r * nk * lg, nk, lg, t.idx);
		if (P(s)->layout == LAYOUT_TIGHT)
			k->unpack_bits(codes, (uint64_t)r * c * P(s)->bits, c, P(s)->bits, t.codes);
		else
			k->unpack_planes(codes + r * plane, R * plane, c, P(s)->bits, t.codes);
		if (k->adpq_dequantize_row(&t, c, &p, out + r * c))
			return -QS_EFORMAT;
	}
	return 0;
}

const struct qs_scheme_ops qs_scheme_adpq = {
	.name = "adpq",
	.params = adpq_param_table,
	.payload_size = adpq_payload_size,
	.scratch_size = adpq_scratch_size,
	.quantize = adpq_quantize,
	.dequantize = adpq_dequantize,
	.wants = QS_WANT_HESSIAN,
	.prep_size = adpq_prep_size,
	.prepare = adpq_prepare,
	.quantize_prep = adpq_quantize_prep,
	.prep_for_stats_only = true,
	.quantize_src = adpq_quantize_src,
};

/* adpq.c - AdpQ (Ghaffari et al., "AdpQ: A Zero-shot Calibration Free
 * Adaptive Post Training Quantization Method for LLMs", arXiv:2405.13358):
 * per group, the weights that an Adaptive LASSO soft threshold flags as
 * salient are quantized apart from the rest, each set on its own grid (the
 * same definition is in qshard(5); change both or neither).
 *
 * Parameters (canonical text "adpq:bits=B,group=G,alpha=A,search=S,
 * scales=u8|f16,layout=planes|tight"):
 *   bits   2, 3, 4 (default 3);       group  64, 128, 256 (default 128);
 *   alpha  outlier fraction, a decimal in [0, 0.25] with at most 4
 *          fractional digits (default 0.02);
 *   search clipped inlier ranges tried besides the full one, 0..16
 *          (default 0: each costs one more error pass over the weights,
 *          about +0.4 dB for the first four at 3 bits but a third of
 *          the AVX2 throughput each, and the default has to keep up
 *          with a 2.5 GB/s disk on 2 cores);
 *   scales u8: 8-bit group scales/mins under fp16 row super-scales
 *          (default), or f16: fp16 group scales/mins;
 *   layout planes: codes as bit planes, inlier codes folded around the zero
 *          code (default), or tight: one LSB-first bitstream of raw codes.
 * The defaults are the best contrib/bench/bench-kernels measured at
 * <= 3.45 bpw among those quantizing >= 1.25 GB/s of bf16 a core (AVX2).
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
 * (u8 only); adpq:bits=3 defaults on 2048 columns: 3 + 0.25 + 0.008 + 0.16
 * + 0.031 = 3.449.
 */
#include <stdio.h>
#include <string.h>

#include "kernels.h"
#include "scheme.h"
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
	QS_PARAM_DECIMAL(struct adpq_params, alpha, 200, 0, 2500, 4, false,
			 "fraction of each group quantized as outliers"),
	QS_PARAM_RANGE(struct adpq_params, search, 0, 0, SEARCH_MAX,
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

static uint64_t adpq_scratch_size(const struct qs_scheme *s, uint64_t rows, uint64_t cols)
{
	(void)rows;
	if (!params_ok(s) || cols > UINT64_MAX / 64)
		return UINT64_MAX;
	uint64_t ng = groups_per_row(s, cols);
	uint64_t nk = outliers_per_row(s, cols);
	return QS_WKSP_ALIGN + sect(8 * ng) + sect(16 * ng) + 2 * sect(cols) + sect(nk) +
	       sect(2 * ng) + sect(ng + nk);
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

static int adpq_quantize(const struct qs_scheme *s, const float *w, uint64_t rows,
			 uint64_t cols, uint8_t *out, void *scratch)
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
	uint8_t *meta = out + (u8 ? 8 * R : 0);
	uint8_t *cnt = out + z.meta;
	uint8_t *idx = cnt + z.cnt;
	uint8_t *codes = idx + z.idx;
	size_t plane = c / 8 + (c % 8 != 0);

	for (size_t r = 0; r < R; r++) {
		if (k->adpq_quantize_row(w + r * c, c, &p, &t))
			return -QS_ETOOBIG;
		for (size_t j = 0; j < 4; j++) {
			const uint16_t *mj = t.meta + j * ng;
			if (u8) {
				qs_put_le16(out + 8 * r + 2 * j, t.super[j]);
				uint8_t *d = meta + (j * R + r) * ng;
				for (size_t g = 0; g < ng; g++)
					d[g] = (uint8_t)mj[g];
			} else {
				uint8_t *d = meta + 2 * (j * R + r) * ng;
				for (size_t g = 0; g < ng; g++)
					qs_put_le16(d + 2 * g, mj[g]);
			}
		}
		counts_to_unary(t.counts, ng, unary);
		k->pack_bits(unary, ng + nk, 1, cnt, (uint64_t)r * (ng + nk));
		k->pack_bits(t.idx, nk, lg, idx, (uint64_t)r * nk * lg);
		if (P(s)->layout == LAYOUT_TIGHT)
			k->pack_bits(t.codes, c, P(s)->bits, codes, (uint64_t)r * c * P(s)->bits);
		else
			k->pack_planes(t.codes, c, P(s)->bits, codes + r * plane, R * plane);
	}
	return 0;
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
};

/* ref_adpq.c - the portable scalar adpq kernels: the definition of the
 * scheme's output (adpq.c documents the format; this file the arithmetic).
 *
 * As in ref.c, every floating-point expression is a fixed sequence of
 * separately rounded IEEE f32 operations (no FMA, no reassociation), so a
 * SIMD variant can reproduce it bit for bit.  The only reductions whose
 * order matters are the squared-error sums of the range search: each is
 * accumulated in 32 lanes (lane l takes the group's elements l, l+32, ...,
 * in order), folded to 8 as b[l] = (a[l] + a[l+8]) + (a[l+16] + a[l+24]),
 * and those combined as
 *     ((b0+b4) + (b2+b6)) + ((b1+b5) + (b3+b7)),
 * which is what four AVX2 accumulators (independent add chains; one would
 * make the search latency-bound) and a 256 -> 128 -> 64 -> 32 bit fold
 * compute.  Min/max
 * reductions may run in any order (NaNs are skipped, zeros compared equal
 * and their sign never reaches the output).
 *
 * The outlier set is defined by its result, not by the algorithm: the
 * row's K weights of largest |w| (compared as the integer bit patterns of
 * |w|; a NaN counts as 0), ties going to the lower index.  Every variant
 * calls qs_adpq_select_row_with() for it (with its own vector passes).
 */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "adpq_scalar.h"
#include "kernels.h"

#define F16_INF 0x7c00u
#define F16_MAX_F 65504.0f
/* Range search: candidate i keeps the fraction (32 - i)/32 of the inlier
 * range around its midpoint. */
#define SEARCH_DEN 32.0f

size_t qs_adpq_k(unsigned alpha_e4, size_t n)
{
	/* alpha_e4 <= 2500 and n < 2^50 (any chunk a row can be): no overflow */
	return (size_t)(((uint64_t)alpha_e4 * n + 5000u) / 10000u);
}

static inline uint16_t f16_down(float x)
{
	return qs_f16_round_down(x, qs_f32_to_f16, qs_f16_to_f32);
}

static inline uint16_t f16_up(float x)
{
	return qs_f16_round_up_pos(x, qs_f32_to_f16, qs_f16_to_f32);
}

static inline uint32_t mag_key(float w)
{
	return qs_adpq_key(w);
}

/* The K-th largest key among n keys (1 <= K <= n): those of w[0..n-1], or
 * with sel, of w[sel[0..n-1]].  One histogram pass on the top 11 bits of
 * the key (exponent and 3 mantissa bits: 8 bins an octave, so a
 * bell-shaped row spreads over many bins) finds the bin that holds it; its
 * few keys are then sorted (insertion, at most CAND_MAX of them), or, when
 * the bin is crowded (constant rows), a most-significant-digit radix
 * select over the remaining 20 bits finishes (passes over the keys, no
 * scratch).  Either way a fixed number of passes whatever the data: no
 * adversarial quadratic case, which a crafted checkpoint could otherwise
 * use to stall a conversion.  *eq gets how many of the keys equal to the
 * result belong to the K largest. */
#define TOP_SHIFT QS_ADPQ_KEY_SHIFT
#define TOP_BINS QS_ADPQ_KEY_BINS
#define CAND_MAX 256u

static inline uint32_t key_of(const float *w, const uint32_t *sel, size_t i)
{
	return mag_key(w[sel ? sel[i] : i]);
}

static uint32_t kth_largest_key(const float *w, const uint32_t *sel, size_t n, size_t K,
				unsigned first_bin, size_t *eq)
{
	/* every key is in bin first_bin or above: only those bins are
	 * cleared (a few dozen for the candidates of a row, not 2048) */
	uint32_t hist[TOP_BINS], top = 0;
	memset(hist + first_bin, 0, (TOP_BINS - first_bin) * sizeof(*hist));
	for (size_t i = 0; i < n; i++) {
		uint32_t v = key_of(w, sel, i);
		hist[v >> TOP_SHIFT]++;
		top = v > top ? v : top;
	}
	/* from the largest key's bin down (the ~1000 empty bins above a
	 * weight row's largest would cost more than the candidates) */
	size_t rank = K;
	unsigned bin = top >> TOP_SHIFT;
	while (rank > hist[bin]) {
		rank -= hist[bin];
		bin--;
	}
	if (hist[bin] <= CAND_MAX) {
		uint32_t cand[CAND_MAX] = {0};
		size_t nc = 0;
		for (size_t i = 0; i < n; i++) {
			uint32_t v = key_of(w, sel, i);
			if (v >> TOP_SHIFT != bin)
				continue;
			size_t j = nc++;
			while (j > 0 && cand[j - 1] < v) {  /* descending */
				cand[j] = cand[j - 1];
				j--;
			}
			cand[j] = v;
		}
		uint32_t t = cand[rank - 1];
		size_t e = 0;
		for (size_t j = 0; j < rank; j++)
			e += cand[j] == t;
		*eq = e;
		return t;
	}
	/* radix select on bits 19..12, 11..4, 3..0 among the bin's keys */
	static const unsigned shift[3] = {12, 4, 0}, width[3] = {8, 8, 4};
	uint32_t prefix = (uint32_t)bin << TOP_SHIFT, known = ~0u << TOP_SHIFT;
	for (unsigned d = 0; d < 3; d++) {
		uint32_t h[256] = {0}, m = (1u << width[d]) - 1u;
		for (size_t i = 0; i < n; i++) {
			uint32_t v = key_of(w, sel, i);
			if ((v & known) == prefix)
				h[(v >> shift[d]) & m]++;
		}
		uint32_t dg = m;
		while (rank > h[dg]) {
			rank -= h[dg];
			dg--;
		}
		prefix |= dg << shift[d];
		known |= m << shift[d];
	}
	*eq = rank;
	return prefix;
}

/* The scalar definitions of the two selection passes a SIMD variant may
 * replace (adpq_scalar.h says what they must compute). */
static uint32_t blockmax_hist_scalar(const float *w, size_t n, uint32_t *hist)
{
	size_t i = 0;
	uint32_t top = 0;
	for (; i + 64 <= n; i += 64)
		for (unsigned j = 0; j < 8; j++) {
			uint32_t m = 0;
			for (unsigned s = 0; s < 64; s += 8) {
				uint32_t v = mag_key(w[i + s + j]);
				m = v > m ? v : m;
			}
			hist[m >> TOP_SHIFT]++;
			top = m > top ? m : top;
		}
	return qs_adpq_blockmax_scalar(w, i, n, hist, top);
}

static size_t collect_scalar(const float *w, size_t n, uint32_t lo, uint32_t *out, size_t cap)
{
	return qs_adpq_collect_scalar(w, 0, n, lo, out, 0, cap);
}

/* Takes the K largest among the n keys of w (or w[sel[]]), in index
 * order: those above the K-th largest t, and of those equal to it the
 * first eq. */
static QS_ALWAYS_INLINE void take_top_with(const float *w, const uint32_t *sel, size_t n,
					   uint32_t t, size_t eq, size_t G, unsigned lg,
					   struct qs_adpq_row *r)
{
	size_t o = 0;
	for (size_t j = 0; j < n; j++) {
		uint32_t v = key_of(w, sel, j);
		bool take = v > t || (v == t && eq > 0);
		if (!take)
			continue;
		if (v == t)
			eq--;
		size_t i = sel ? sel[j] : j;
		r->idx[o++] = (uint8_t)(lg ? i & (G - 1) : i % G);
		r->counts[lg ? i >> lg : i / G]++;
	}
}

/* The scheme's groups are powers of two: a shift and a mask then, not a
 * division per outlier (the same quotient and remainder). */
static void take_top(const float *w, const uint32_t *sel, size_t n, uint32_t t, size_t eq,
		     size_t G, struct qs_adpq_row *r)
{
	if (G > 1 && (G & (G - 1)) == 0)
		take_top_with(w, sel, n, t, eq, G, (unsigned)__builtin_ctzll(G), r);
	else
		take_top_with(w, sel, n, t, eq, G, 0, r);
}

/* AdpQ's soft threshold w~ = sign(w) max(|w| - lambda'/|w|, 0) is zero
 * exactly when |w| <= sqrt(lambda'), so one lambda' separates the weights
 * above a magnitude.  lambda' is set per row so that the row's K =
 * round(alpha*n) largest are separated: sqrt(lambda') = t, the K-th largest
 * |w| (of the weights equal to t, the lower indices first, so exactly K).
 * Groups then carry as many outliers as they really hold: none in a quiet
 * group, many where a hot channel or salient weights sit.
 *
 * Finding t fast (the result is defined above; the path only sets the
 * speed): the row is cut into nb disjoint blocks (adpq_scalar.h), and the
 * bin of the K-th largest block maximum is a lower bound L on t's bin,
 * because those K maxima are K distinct weights at or above it.  The
 * weights at or above L (usually little more than K) are collected with
 * their indices, and t is found among them alone; only when they are too
 * many (constant rows, K beyond the candidate buffer) is the whole row
 * searched.  Two passes over the row instead of three, both of them
 * vectorizable (the block maxima and the compare-and-compact). */
#define CAND_CAP 4096u

void qs_adpq_select_row_with(const float *w, size_t n, const struct qs_adpq_params *p,
			     struct qs_adpq_row *r, qs_adpq_blockmax_hist_fn blockmax_hist,
			     qs_adpq_collect_fn collect)
{
	const size_t G = p->group, ng = G ? n / G + (n % G != 0) : 0;
	size_t K = qs_adpq_k(p->alpha_e4, n), eq;
	memset(r->counts, 0, ng * sizeof(*r->counts));
	if (K == 0 || n == 0 || G == 0)
		return;
	if (K > n)
		K = n;
	const size_t nb = n / 64 * 8 + n % 64;
	uint32_t cand[CAND_CAP + 16];  /* collect may store 16 past its count */
	size_t nc = SIZE_MAX;
	unsigned bin = 0;
	if (K <= nb && K <= CAND_CAP && n <= UINT32_MAX) {
		uint32_t hist[TOP_BINS] = {0};
		uint32_t top = blockmax_hist(w, n, hist);
		size_t rank = K;
		bin = top >> TOP_SHIFT;
		while (rank > hist[bin]) {  /* ends: the nb >= K maxima are counted */
			rank -= hist[bin];
			bin--;
		}
		nc = collect(w, n, (uint32_t)bin << TOP_SHIFT, cand, CAND_CAP);
	}
	if (nc <= CAND_CAP) {
		uint32_t t = kth_largest_key(w, cand, nc, K, bin, &eq);
		take_top(w, cand, nc, t, eq, G, r);
	} else {
		uint32_t t = kth_largest_key(w, NULL, n, K, 0, &eq);
		take_top(w, NULL, n, t, eq, G, r);
	}
}

void qs_adpq_select_row(const float *w, size_t n, const struct qs_adpq_params *p,
			struct qs_adpq_row *r)
{
	qs_adpq_select_row_with(w, n, p, r, blockmax_hist_scalar, collect_scalar);
}

/* The 0/1 outlier mask of one group from its in-group indices. */
static void mask_of(const uint8_t *idx, unsigned k, size_t n, uint8_t *mask)
{
	memset(mask, 0, n);
	for (unsigned o = 0; o < k; o++)
		mask[idx[o]] = 1;
}

/* Min and max over the weights with mask[i] == want (of |w| when absval),
 * NaNs skipped; 0, 0 when none. */
static void masked_range(const float *w, const uint8_t *mask, size_t n, uint8_t want,
			 int absval, float *mn_out, float *mx_out)
{
	float mn = INFINITY, mx = -INFINITY;
	for (size_t i = 0; i < n; i++) {
		float v = absval ? fabsf(w[i]) : w[i];
		int use = mask[i] == want;
		float a = use ? v : INFINITY, b = use ? v : -INFINITY;
		mn = a < mn ? a : mn;
		mx = b > mx ? b : mx;
	}
	if (mn > mx) {
		mn = 0.0f;
		mx = 0.0f;
	}
	*mn_out = mn;
	*mx_out = mx;
}

/* Squared error of the inliers on the grid lo + c*step, measured in grid
 * units and scaled once: with q = (w - lo)*(1/step) and c its clamped
 * nearest code, sum (q - c)^2 in the lane order of the header comment, times
 * step*step.  Measuring in grid units saves the dequantize-and-subtract of
 * every candidate (the search is the hot loop); it differs from the
 * error in w only by rounding.  Outliers and NaNs contribute 0. */
static float grid_error(const float *w, const uint8_t *mask, size_t n, float lo,
			float step, float qmaxf)
{
	float a[32] = {0}, acc[8];
	float inv = 1.0f / step;
	for (size_t i = 0; i < n; i++) {
		float q = (w[i] - lo) * inv;
		float c = (float)qs_round_code(q, qmaxf);
		float d = q - c;
		float e = d * d;
		a[i % 32] += (mask[i] || w[i] != w[i]) ? 0.0f : e;
	}
	for (size_t l = 0; l < 8; l++)
		acc[l] = (a[l] + a[l + 8]) + (a[l + 16] + a[l + 24]);
	float s0 = acc[0] + acc[4], s1 = acc[1] + acc[5];
	float s2 = acc[2] + acc[6], s3 = acc[3] + acc[7];
	return ((s0 + s2) + (s1 + s3)) * (step * step);
}

/* The inlier range: [mn, mx], or the clipped candidate with the smallest
 * squared error (the first on ties). */
static void inlier_range(const float *w, const uint8_t *mask, size_t n,
			 const struct qs_adpq_params *p, float *lo_out, float *hi_out)
{
	float mn, mx;
	masked_range(w, mask, n, 0, 0, &mn, &mx);
	*lo_out = mn;
	*hi_out = mx;
	float qmaxf = (float)((1u << p->bits) - 1u), step;
	if (!qs_adpq_search_runs(mn, mx, p, &step))
		return;
	float best = grid_error(w, mask, n, mn, step, qmaxf);
	float h = (mx - mn) * 0.5f;
	float mid = mn + h;
	for (unsigned i = 1; i <= p->search; i++) {
		float f = (SEARCH_DEN - (float)i) / SEARCH_DEN;
		float fh = f * h;
		float lo = mid - fh, hi = mid + fh;
		float st = (hi - lo) / qmaxf;
		if (!(st > 0.0f))
			break;
		float e = grid_error(w, mask, n, lo, st, qmaxf);
		if (e < best) {
			best = e;
			*lo_out = lo;
			*hi_out = hi;
		}
	}
}

/* Smallest fp16 unit u with u*255 >= need (need >= 0); Inf on overflow. */
uint16_t qs_adpq_super_unit(float need)
{
	uint16_t u = f16_up(need / 255.0f);
	while (u < QS_F16_INF && qs_f16_to_f32(u) * 255.0f < need)
		u++;
	return u;
}

/* u8 code c in 0..255 with unit*c >= x (x >= 0), the smallest such:
 * estimated with the row's reciprocal iu = 1/unit (no division per group),
 * then corrected both ways, so the estimate's rounding cannot matter. */
static unsigned code_up(float x, float unit, float iu)
{
	if (!(x > 0.0f) || !(unit > 0.0f))
		return 0;
	float q = x * iu;
	unsigned c = q >= 255.0f ? 255u : (unsigned)q;
	if ((float)c < q && c < 255)
		c++;
	while (c < 255 && unit * (float)c < x)
		c++;
	while (c > 0 && unit * (float)(c - 1) >= x)
		c--;
	return c;
}

/* Step code: smallest c with base + qmaxf*(unit*c) >= top (monotone in c,
 * so an estimate corrected both ways is exact). */
static unsigned step_code(float base, float top, float qmaxf, float iq, float unit,
			  float iu)
{
	if (!(unit > 0.0f) || !(top > base))
		return 0;
	unsigned c = code_up((top - base) * iq, unit, iu);
	while (c < 255 && base + qmaxf * (unit * (float)c) < top)
		c++;
	while (c > 0 && base + qmaxf * (unit * (float)(c - 1)) >= top)
		c--;
	return c;
}

/* fp16 step: smallest fp16 s with base + qmaxf*s >= top; Inf on overflow. */
static uint16_t step_f16(float base, float top, float qmaxf)
{
	if (!(top > base))
		return 0;
	uint16_t s = f16_up((top - base) / qmaxf);
	while (s < QS_F16_INF && base + qmaxf * qs_f16_to_f32(s) < top)
		s++;
	return s;
}

/* Phase 2 of quantize_row, shared with the SIMD variants: from the
 * group ranges in r->tmp (lo, hi, outlier min and max of |w|, ng each), the
 * group meta and super-scales.  Returns the number of groups that overflow
 * fp16, or SIZE_MAX when the row's super-scales do (meta zeroed). */
size_t qs_ref_adpq_grids(size_t ng, const struct qs_adpq_params *p, struct qs_adpq_row *r)
{
	const unsigned qmax = (1u << p->bits) - 1u, omax = (1u << (p->bits - 1)) - 1u;
	const float qmaxf = (float)qmax, omaxf = (float)omax;
	float *lo = r->tmp, *hi = lo + ng, *omn = hi + ng, *omx = omn + ng;
	const bool f16 = (p->flags & QS_ADPQ_SCALES_F16) != 0;
	uint16_t *m = r->meta;
	size_t overflowed = 0;

	memset(r->super, 0, sizeof(r->super));
	if (f16) {
		for (size_t g = 0; g < ng; g++) {
			if (!(lo[g] >= -QS_F16_MAX_F && lo[g] <= QS_F16_MAX_F && omn[g] <= QS_F16_MAX_F)) {
				overflowed++;
				m[g] = m[ng + g] = m[2 * ng + g] = m[3 * ng + g] = 0;
				continue;
			}
			uint16_t mn16 = f16_down(lo[g]), om16 = f16_down(omn[g]);
			uint16_t st16 = step_f16(qs_f16_to_f32(mn16), hi[g], qmaxf);
			uint16_t os16 = step_f16(qs_f16_to_f32(om16), omx[g], omaxf);
			if (st16 >= QS_F16_INF || os16 >= QS_F16_INF) {
				overflowed++;
				st16 = os16 = 0;
			}
			m[g] = st16;
			m[ng + g] = mn16;
			m[2 * ng + g] = os16;
			m[3 * ng + g] = om16;
		}
	} else {
		float need_min = 0.0f, need_omin = 0.0f;
		for (size_t g = 0; g < ng; g++) {
			float nl = -lo[g];
			need_min = nl > need_min ? nl : need_min;
			need_omin = omn[g] > need_omin ? omn[g] : need_omin;
		}
		struct qs_adpq_unit dmu, omu;
		if (!qs_adpq_unit_of(need_min, &dmu) || !qs_adpq_unit_of(need_omin, &omu))
			goto overflow;
		const float dmf = dmu.f, omf = omu.f, idm = dmu.inv, iom = omu.inv;
		float need_step = 0.0f, need_ostep = 0.0f;
		for (size_t g = 0; g < ng; g++) {
			unsigned mc = code_up(-lo[g], dmf, idm);
			unsigned oc = 0;
			if (omf > 0.0f) {
				/* the largest oc with omf*oc <= omin */
				float q = omn[g] * iom;
				oc = q >= 255.0f ? 255u : (unsigned)q;
				while (oc > 0 && omf * (float)oc > omn[g])
					oc--;
				while (oc < 255 && omf * (float)(oc + 1) <= omn[g])
					oc++;
			}
			m[ng + g] = (uint16_t)mc;
			m[3 * ng + g] = (uint16_t)oc;
			/* the bases as stored, kept in lo/omn for the step pass */
			lo[g] = -(dmf * (float)mc);
			omn[g] = omf * (float)oc;
			float s = (hi[g] - lo[g]) / qmaxf, os = (omx[g] - omn[g]) / omaxf;
			need_step = s > need_step ? s : need_step;
			need_ostep = os > need_ostep ? os : need_ostep;
		}
		struct qs_adpq_unit du, odu;
		if (!qs_adpq_unit_of(need_step, &du) || !qs_adpq_unit_of(need_ostep, &odu))
			goto overflow;
		float iq = 1.0f / qmaxf, ioq = 1.0f / omaxf;
		for (size_t g = 0; g < ng; g++) {
			m[g] = (uint16_t)step_code(lo[g], hi[g], qmaxf, iq, du.f, du.inv);
			m[2 * ng + g] = (uint16_t)step_code(omn[g], omx[g], omaxf, ioq, odu.f,
							    odu.inv);
		}
		r->super[0] = du.bits;
		r->super[1] = dmu.bits;
		r->super[2] = odu.bits;
		r->super[3] = omu.bits;
	}
	return overflowed;

overflow:
	memset(m, 0, 4 * ng * sizeof(*m));
	return SIZE_MAX;
}

size_t qs_ref_adpq_quantize_row(const float *w, size_t n, const struct qs_adpq_params *p,
				struct qs_adpq_row *r)
{
	const size_t G = p->group;
	if (n == 0)
		return 0;
	if (G == 0 || p->bits < 2 || p->bits > 4)
		return 1;
	const size_t ng = n / G + (n % G != 0);
	const unsigned qmax = (1u << p->bits) - 1u, omax = (1u << (p->bits - 1)) - 1u;
	const float qmaxf = (float)qmax, omaxf = (float)omax;
	float *lo = r->tmp, *hi = lo + ng, *omn = hi + ng, *omx = omn + ng;
	size_t overflowed;

	/* 1: the row's outliers, then the two ranges of every group */
	qs_adpq_select_row(w, n, p, r);
	const uint8_t *idx = r->idx;
	for (size_t g = 0, i = 0; i < n; g++, i += G) {
		size_t len = n - i < G ? n - i : G;
		unsigned k = r->counts[g];
		mask_of(idx, k, len, r->mask + i);
		idx += k;
		masked_range(w + i, r->mask + i, len, 1, 1, &omn[g], &omx[g]);
		inlier_range(w + i, r->mask + i, len, p, &lo[g], &hi[g]);
	}

	/* 2: the grids, stored exactly as dequantization will rebuild them */
	overflowed = qs_ref_adpq_grids(ng, p, r);
	if (overflowed == SIZE_MAX) {
		memset(r->codes, 0, n);
		return 1;
	}

	/* 3: codes */
	float sup[4];
	qs_adpq_supers(r, sup);
	for (size_t g = 0, i = 0; i < n; g++, i += G) {
		size_t len = n - i < G ? n - i : G;
		struct qs_adpq_grid q = qs_adpq_grid_of(r, sup, ng, g, p->flags);
		const float *wg = w + i;
		const uint8_t *mk = r->mask + i;
		uint8_t *c = r->codes + i;
		float inv = qs_adpq_inv(q.step), oinv = qs_adpq_inv(q.ostep);
		unsigned z = qs_adpq_zero_code(&q, inv, qmaxf);
		for (size_t j = 0; j < len; j++) {
			unsigned ci = qs_round_code((wg[j] - q.minf) * inv, qmaxf);
			if (p->flags & QS_ADPQ_FOLD)
				ci = qs_adpq_fold(ci, z, qmax);
			uint8_t co = qs_adpq_outlier_code(wg[j], &q, oinv, omaxf, p->bits);
			c[j] = mk[j] ? co : (uint8_t)ci;
		}
	}
	return overflowed;
}

size_t qs_ref_adpq_dequantize_row(const struct qs_adpq_row *r, size_t n,
				  const struct qs_adpq_params *p, float *w)
{
	const size_t G = p->group;
	if (n == 0 || G == 0 || p->bits < 2 || p->bits > 4)
		return 0;
	const size_t ng = n / G + (n % G != 0);
	const unsigned qmax = (1u << p->bits) - 1u;
	const float qmaxf = (float)qmax;
	const uint8_t *idx = r->idx;
	float sup[4];
	size_t bad = 0;

	qs_adpq_supers(r, sup);
	for (size_t g = 0, i = 0; i < n; g++, i += G) {
		size_t len = n - i < G ? n - i : G;
		struct qs_adpq_grid q = qs_adpq_grid_of(r, sup, ng, g, p->flags);
		const uint8_t *c = r->codes + i;
		float *wg = w + i;
		if (p->flags & QS_ADPQ_FOLD) {
			unsigned z = qs_adpq_zero_code(&q, qs_adpq_inv(q.step), qmaxf);
			for (size_t j = 0; j < len; j++) {
				float t = (float)qs_adpq_unfold(c[j] & qmax, z, qmax) * q.step;
				wg[j] = q.minf + t;
			}
		} else {
			for (size_t j = 0; j < len; j++) {
				float t = (float)(c[j] & qmax) * q.step;
				wg[j] = q.minf + t;
			}
		}
		unsigned k = r->counts[g];
		bad += qs_adpq_put_outliers(wg, c, len, idx, k, &q, p->bits);
		idx += k;
	}
	return bad;
}

/* Eight codes as one little-endian word: bit b of code i is bit 8i+b, so
 * a mask and one multiply gather a plane's 8 bits into the top byte (the
 * partial products never collide). */
static inline uint64_t load8(const uint8_t *c)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < 8; i++)
		v |= (uint64_t)c[i] << (8 * i);
	return v;
}

void qs_ref_pack_planes(const uint8_t *codes, size_t n, unsigned bits, uint8_t *dst,
			size_t plane_stride)
{
	const uint64_t lsb = 0x0101010101010101ull, gather = 0x0102040810204080ull;
	size_t nb = n / 8;
	for (size_t j = 0; j < nb; j++) {
		uint64_t v = load8(codes + 8 * j);
		for (unsigned b = 0; b < bits; b++)
			dst[b * plane_stride + j] = (uint8_t)((((v >> b) & lsb) * gather) >> 56);
	}
	if (n % 8) {
		uint8_t last[8] = {0};
		memcpy(last, codes + 8 * nb, n % 8);
		uint64_t v = load8(last);
		for (unsigned b = 0; b < bits; b++)
			dst[b * plane_stride + nb] = (uint8_t)((((v >> b) & lsb) * gather) >> 56);
	}
}

/* The inverse: a plane byte broadcast to 8 bytes, byte i keeping bit i,
 * then each nonzero byte turned into 1 (adding 0x7f sets bit 7 of a byte
 * exactly when it is nonzero, and cannot carry out of it). */
static inline uint64_t spread(uint8_t byte)
{
	uint64_t x = ((uint64_t)byte * 0x0101010101010101ull) & 0x8040201008040201ull;
	return ((x + 0x7f7f7f7f7f7f7f7full) >> 7) & 0x0101010101010101ull;
}

void qs_ref_unpack_planes(const uint8_t *src, size_t plane_stride, size_t n,
			  unsigned bits, uint8_t *codes)
{
	size_t nb = n / 8 + (n % 8 != 0);
	for (size_t j = 0; j < nb; j++) {
		uint64_t v = 0;
		for (unsigned b = 0; b < bits; b++)
			v |= spread(src[b * plane_stride + j]) << b;
		size_t m = n - 8 * j < 8 ? n - 8 * j : 8;
		for (size_t i = 0; i < m; i++)
			codes[8 * j + i] = (uint8_t)(v >> (8 * i));
	}
}

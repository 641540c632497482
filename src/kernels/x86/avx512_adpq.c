/* avx512_adpq.c - the adpq kernels for x86-64-v4 (AVX512F/BW/VL; built with
 * the flags of avx512.c, entered through its table).
 *
 * The structure is avx2_adpq.c's (adpq_scalar.h's skeleton with a select,
 * a ranges and a codes plug-in) on 16-lane vectors, and so are the rules
 * that keep it bit-identical to ref_adpq.c: every f32 expression the same
 * sequence of separately rounded operations (no FMA), VMINPS/VMAXPS written
 * as ref's `a < b ? a : b` (the second operand wins unless the first
 * compares less/greater, so NaNs fall to the same side), rounding with the
 * MXCSR default (nearest, ties to even) as ref's 2^23 trick does, and the
 * range-search sums in ref's lane order.  That order is AVX2's four 8-lane
 * accumulators (8-lane vector j into accumulator j % 4); a 16-lane vector v
 * is AVX2's vectors 2v and 2v+1, so two 16-lane accumulators hold them as
 * [a0|a1] (v even) and [a2|a3] (v odd), and the fold is ref's:
 * (a0 + a1) + (a2 + a3), then 256 -> 128 -> 64 -> 32.
 *
 * Where AVX-512 removes work:
 *   - the outliers, NaNs and a short group's pad lanes are a 16-bit mask
 *     per vector, not a NaN-blended copy plus an ordered-compare mask: the
 *     min/max and the error sums are masked operations (a masked-off lane
 *     is left as it is, which is what adding ref's 0.0 does to an
 *     accumulator that is never -0.0: it starts at +0.0 and only adds
 *     squares);
 *   - collect left-packs the indices of a vector's hits with VPCOMPRESSD
 *     (register form, then one whole store) instead of a permutation table;
 *   - bit planes: one VPTESTMB gives a plane's 64 bits.
 */
#include <immintrin.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "adpq_scalar.h"
#include "kernels.h"

#define SEARCH_DEN 32.0f
#define GMAX QS_ADPQ_GMAX
#define ZMAX (GMAX / 16u)
/* candidates whose errors one pass over the group computes */
#define BATCH 3u


/* ((a0+a4) + (a2+a6)) + ((a1+a5) + (a3+a7)), ref's lane fold. */
static inline float fold_sum(__m256 a)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
	__m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
	return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

/* lo half + hi half of a 16-lane accumulator: AVX2's a0 + a1 (or a2 + a3) */
static inline __m256 halves(__m512 a)
{
	return _mm256_add_ps(_mm512_castps512_ps256(a),
			     _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
}

/* (q - c)^2 of 16 weights, q = (w - lo)*inv, c its clamped nearest code.
 * The clamp is done on q's bits as signed integers, which moves it off the
 * floating-point min/max units (measured: the search runs ~15% faster on
 * Zen 4) and changes no d: a q >= +0.0, +Inf included, orders as its bits
 * do; a negative q (-0.0, -Inf, -NaN) is below 0 either way and becomes
 * +0.0; only a +NaN q differs (ref's clamp gives 0, this one qmax), and
 * there d = q - c is q's NaN either way, bit for bit. */
static inline __m512 sq_err(__m512 w, __m512 lv, __m512 iv, __m512i qi)
{
	__m512 q = _mm512_mul_ps(_mm512_sub_ps(w, lv), iv);
	__m512i ci = _mm512_min_epi32(_mm512_max_epi32(_mm512_castps_si512(q),
						       _mm512_setzero_si512()), qi);
	__m512 c = _mm512_roundscale_ps(_mm512_castsi512_ps(ci),
					_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	__m512 d = _mm512_sub_ps(q, c);
	return _mm512_mul_ps(d, d);
}

/* The squared-error sums of the three candidates (lo[c], inv[c]) in one
 * pass over the group's nz vectors of 16 at x (nz even: the group is
 * whole blocks of 32, keep[nz-1] = 0 when only nz-1 hold weights), each in
 * ref's order (header comment); six accumulators in registers, independent
 * chains.  The weights are read where they are (L1), not copied. */
static inline void batch_errors(const float *x, const __mmask16 *keep, size_t nz,
				const float *lo, const float *inv, float qmaxf, float *sum)
{
	const __m512i qv = _mm512_castps_si512(_mm512_set1_ps(qmaxf));
	__m512 a[BATCH], b[BATCH];
#pragma GCC unroll 16
	for (unsigned c = 0; c < BATCH; c++)
		a[c] = b[c] = _mm512_setzero_ps();
	for (size_t v = 0; v < nz; v += 2) {
		const __m512 x0 = _mm512_loadu_ps(x + 16 * v), x1 = _mm512_loadu_ps(x + 16 * v + 16);
		const __mmask16 k0 = keep[v], k1 = keep[v + 1];
#pragma GCC unroll 16
		for (unsigned c = 0; c < BATCH; c++) {
			const __m512 l = _mm512_set1_ps(lo[c]), i = _mm512_set1_ps(inv[c]);
			a[c] = _mm512_mask_add_ps(a[c], k0, a[c], sq_err(x0, l, i, qv));
			b[c] = _mm512_mask_add_ps(b[c], k1, b[c], sq_err(x1, l, i, qv));
		}
	}
#pragma GCC unroll 16
	for (unsigned c = 0; c < BATCH; c++)
		sum[c] = fold_sum(_mm256_add_ps(halves(a[c]), halves(b[c])));
}

/* Phase 1 of one group (wg: whole blocks of 32 readable, elements past len
 * +0.0): the outliers' |w| range (its k outliers have the in-group indices
 * idx[k]), and the inlier range, searched as ref's
 * inlier_range and grid_error do. */
static void group_ranges(const float *wg, size_t len, unsigned k,
			 const struct qs_adpq_params *p, uint8_t *om, const uint8_t *idx,
			 float *lo_out, float *hi_out, float *omn_out, float *omx_out)
{
	const size_t nz = (len + 15) / 16, nz2 = (nz + 1) / 2 * 2;
	uint64_t word[GMAX / 64] = {0};

	/* the outliers qs_adpq_select_row() chose, as bits */
	for (unsigned o = 0; o < k; o++)
		word[idx[o] / 64] |= 1ull << (idx[o] % 64);
	(void)om;  /* the masks live in registers here: r->mask is not needed */

	/* |w| range of the outliers, NaNs skipped as in ref */
	float fomn = INFINITY, fomx = -INFINITY;
	for (unsigned o = 0; o < k; o++) {
		float a = fabsf(wg[idx[o]]);
		fomn = a < fomn ? a : fomn;
		fomx = a > fomx ? a : fomx;
	}
	if (fomn > fomx)
		fomn = fomx = 0.0f;
	*omn_out = fomn;
	*omx_out = fomx;

	/* the inliers: not an outlier, not NaN, not a pad lane */
	__mmask16 keep[ZMAX + 1];
	__m512 mn = _mm512_set1_ps(INFINITY), mx = _mm512_set1_ps(-INFINITY);
	for (size_t v = 0; v < nz; v++) {
		unsigned m = (unsigned)(~(word[v / 4] >> (16 * (v % 4))) & 0xffffu);
		if (16 * v + 16 > len)
			m &= (1u << (len - 16 * v)) - 1u;
		__m512 y = _mm512_loadu_ps(wg + 16 * v);
		__mmask16 kv = _mm512_mask_cmp_ps_mask((__mmask16)m, y, y, _CMP_ORD_Q);
		keep[v] = kv;
		mn = _mm512_mask_min_ps(mn, kv, y, mn);
		mx = _mm512_mask_max_ps(mx, kv, y, mx);
	}
	keep[nz] = 0;
	float fmn = _mm512_reduce_min_ps(mn), fmx = _mm512_reduce_max_ps(mx);
	float step;
	if (!qs_adpq_range_done(&fmn, &fmx, p, lo_out, hi_out, &step))
		return;

	/* range search (ref's inlier_range and grid_error) */
	const float qmaxf = (float)((1u << p->bits) - 1u);
	/* the candidates first (ref's sequence, up to the first empty
	 * range), 16 lanes at a time (each lane the same operations as
	 * ref's scalar ones: one vector division instead of one a
	 * candidate), then their errors BATCH at a time (a short last batch
	 * repeats its last candidate) */
	float clo[32 + BATCH] __attribute__((aligned(64))), chi[32] __attribute__((aligned(64)));
	float cst[32] __attribute__((aligned(64))), civ[32 + BATCH] __attribute__((aligned(64)));
	float ce[32 + BATCH];
	const float h = (fmx - fmn) * 0.5f, mid = fmn + h;
	const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
	const __m512 den = _mm512_set1_ps(SEARCH_DEN), hv = _mm512_set1_ps(h);
	const __m512 midv = _mm512_set1_ps(mid), qvf = _mm512_set1_ps(qmaxf);
	unsigned nc = p->search + 1;
	for (unsigned base = 0; base <= p->search; base += 16) {
		__m512 iv = _mm512_add_ps(_mm512_set1_ps((float)base), iota);  /* exact */
		__m512 f = _mm512_div_ps(_mm512_sub_ps(den, iv), den);
		__m512 fh = _mm512_mul_ps(f, hv);
		__m512 lo = _mm512_sub_ps(midv, fh), hi = _mm512_add_ps(midv, fh);
		__m512 st = _mm512_div_ps(_mm512_sub_ps(hi, lo), qvf);
		if (base == 0) {
			/* candidate 0: the full range */
			lo = _mm512_mask_mov_ps(lo, 1, _mm512_set1_ps(fmn));
			hi = _mm512_mask_mov_ps(hi, 1, _mm512_set1_ps(fmx));
			st = _mm512_mask_mov_ps(st, 1, _mm512_set1_ps(step));
		}
		_mm512_store_ps(clo + base, lo);
		_mm512_store_ps(chi + base, hi);
		_mm512_store_ps(cst + base, st);
		_mm512_store_ps(civ + base, _mm512_div_ps(_mm512_set1_ps(1.0f), st));
		/* the first empty range ends the sequence (candidate 0's is
		 * not: step > 0 above) */
		unsigned empty = (unsigned)_mm512_cmp_ps_mask(st, _mm512_setzero_ps(), _CMP_NGT_UQ);
		if (empty) {
			unsigned at = base + (unsigned)__builtin_ctz(empty);
			if (at < nc)
				nc = at;
			break;
		}
	}
	for (unsigned i = nc; i % BATCH; i++) {
		clo[i] = clo[nc - 1];
		civ[i] = civ[nc - 1];
	}
	for (unsigned i = 0; i < nc; i += BATCH)
		batch_errors(wg, keep, nz2, clo + i, civ + i, qmaxf, ce + i);
	float best = ce[0] * (cst[0] * cst[0]);
	for (unsigned i = 1; i < nc; i++) {
		float e = ce[i] * (cst[i] * cst[i]);
		if (e < best) {
			best = e;
			*lo_out = clo[i];
			*hi_out = chi[i];
		}
	}
}

/* 64 stored inlier codes of the grid (minf, inv) from 64 weights at w, the
 * first `len` of them read (the rest +0.0; outliers are patched in
 * afterwards: a few a group). */
static inline __m512i codes64(const float *w, size_t len, __m512 minf, __m512 inv, __m512 qv,
			      bool fold, __m512i zv, __m512i mv)
{
	const __m512 zero = _mm512_setzero_ps();
	__m512i ci[4];
	for (unsigned j = 0; j < 4; j++) {
		size_t at = 16 * j;
		__mmask16 lm = len >= at + 16 ? 0xffffu
			     : len > at ? (__mmask16)((1u << (len - at)) - 1u) : 0;
		__m512 q = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(lm, w + at), minf), inv);
		q = _mm512_min_ps(_mm512_max_ps(q, zero), qv);
		ci[j] = _mm512_cvtps_epi32(q);
	}
	/* the packs work per 128-bit lane: dword 4t+s of ci[j] lands in
	 * byte 16t + 4j + s; one permutation of dwords restores the order */
	__m512i c = _mm512_packus_epi16(_mm512_packs_epi32(ci[0], ci[1]),
					_mm512_packs_epi32(ci[2], ci[3]));
	c = _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14,
						       3, 7, 11, 15), c);
	if (fold) {
		/* ref's fold(): d = |c - z|; d <= m ? (c > z ? 2d-1 : 2d) : m + d */
		__mmask64 gt = _mm512_cmpgt_epu8_mask(c, zv);
		__m512i d = _mm512_sub_epi8(_mm512_max_epu8(c, zv), _mm512_min_epu8(c, zv));
		__m512i dd = _mm512_add_epi8(d, d);
		__m512i near = _mm512_mask_sub_epi8(dd, gt, dd, _mm512_set1_epi8(1));
		__m512i far = _mm512_add_epi8(mv, d);
		__mmask64 le = _mm512_cmple_epu8_mask(d, mv);
		c = _mm512_mask_blend_epi8(le, far, near);
	}
	return c;
}

/* Phase 3 of one group, 64 codes at a time, a short tail through masked
 * loads and a masked store. */
static void group_codes(const float *wg, size_t len, const struct qs_adpq_grid *q, float inv,
			unsigned z, unsigned m, bool fold, float qmaxf, uint8_t *c)
{
	const __m512 qv = _mm512_set1_ps(qmaxf);
	const __m512 minf = _mm512_set1_ps(q->minf), iv = _mm512_set1_ps(inv);
	const __m512i zv = _mm512_set1_epi8((char)z), mv = _mm512_set1_epi8((char)m);
	for (size_t j = 0; j < len; j += 64) {
		size_t left = len - j;
		__m512i v = codes64(wg + j, left, minf, iv, qv, fold, zv, mv);
		if (left >= 64)
			_mm512_storeu_si512((void *)(c + j), v);
		else
			_mm512_mask_storeu_epi8(c + j, (__mmask64)((1ull << left) - 1u), v);
	}
}

/* ------------------------------------------------------- phase 2: grids */

/* ref_adpq.c's code_up() on 16 lanes: the smallest c in 0..255 with
 * unit*c >= x, estimated with iu = 1/unit and corrected both ways (each
 * lane's loop runs as ref's does: a lane leaves it when its condition
 * fails, and the condition depends only on its c); 0 where !(x > 0), in
 * lanes off `live`, or when !(unit > 0). */
static inline __m512i code_up16(__m512 x, float unit, float iu, __mmask16 live)
{
	const __m512 u = _mm512_set1_ps(unit);
	const __m512i one = _mm512_set1_epi32(1), top = _mm512_set1_epi32(255);
	__mmask16 ok = unit > 0.0f ? _mm512_mask_cmp_ps_mask(live, x, _mm512_setzero_ps(),
							   _CMP_GT_OQ) : 0;
	__m512 q = _mm512_mul_ps(x, _mm512_set1_ps(iu));
	/* c = q >= 255 ? 255 : (unsigned)q (q > 0 here) */
	__mmask16 big = _mm512_cmp_ps_mask(q, _mm512_set1_ps(255.0f), _CMP_GE_OQ);
	__m512i c = _mm512_mask_mov_epi32(_mm512_cvttps_epu32(q), big, top);
	__mmask16 lt255 = _mm512_cmplt_epu32_mask(c, top);
	c = _mm512_mask_add_epi32(c, ok & lt255 &
				     _mm512_cmp_ps_mask(_mm512_cvtepu32_ps(c), q, _CMP_LT_OQ),
				  c, one);
	for (;;) {
		__mmask16 m = ok & _mm512_cmplt_epu32_mask(c, top) &
			      _mm512_cmp_ps_mask(_mm512_mul_ps(u, _mm512_cvtepu32_ps(c)), x,
						 _CMP_LT_OQ);
		if (!m)
			break;
		c = _mm512_mask_add_epi32(c, m, c, one);
	}
	for (;;) {
		__m512i cm = _mm512_sub_epi32(c, one);
		__mmask16 m = ok & _mm512_cmpgt_epu32_mask(c, _mm512_setzero_si512()) &
			      _mm512_cmp_ps_mask(_mm512_mul_ps(u, _mm512_cvtepu32_ps(cm)), x,
						 _CMP_GE_OQ);
		if (!m)
			break;
		c = _mm512_mask_mov_epi32(c, m, cm);
	}
	return _mm512_maskz_mov_epi32(ok, c);
}

/* ref_adpq.c's step_code() on 16 lanes: the smallest c with
 * base + qmaxf*(unit*c) >= top; 0 where !(top > base) or !(unit > 0). */
static inline __m512i step_code16(__m512 base, __m512 top, float qmaxf, float iq, float unit,
				  float iu, __mmask16 live)
{
	const __m512 u = _mm512_set1_ps(unit), qv = _mm512_set1_ps(qmaxf);
	const __m512i one = _mm512_set1_epi32(1), c255 = _mm512_set1_epi32(255);
	__mmask16 ok = unit > 0.0f ? _mm512_mask_cmp_ps_mask(live, top, base, _CMP_GT_OQ) : 0;
	__m512i c = code_up16(_mm512_mul_ps(_mm512_sub_ps(top, base), _mm512_set1_ps(iq)), unit,
			      iu, ok);
	for (;;) {
		__m512 v = _mm512_add_ps(base, _mm512_mul_ps(qv, _mm512_mul_ps(u, _mm512_cvtepu32_ps(c))));
		__mmask16 m = ok & _mm512_cmplt_epu32_mask(c, c255) &
			      _mm512_cmp_ps_mask(v, top, _CMP_LT_OQ);
		if (!m)
			break;
		c = _mm512_mask_add_epi32(c, m, c, one);
	}
	for (;;) {
		__m512i cm = _mm512_sub_epi32(c, one);
		__m512 v = _mm512_add_ps(base, _mm512_mul_ps(qv, _mm512_mul_ps(u, _mm512_cvtepu32_ps(cm))));
		__mmask16 m = ok & _mm512_cmpgt_epu32_mask(c, _mm512_setzero_si512()) &
			      _mm512_cmp_ps_mask(v, top, _CMP_GE_OQ);
		if (!m)
			break;
		c = _mm512_mask_mov_epi32(c, m, cm);
	}
	return _mm512_maskz_mov_epi32(ok, c);
}

static inline __mmask16 lanes_left(size_t left)
{
	return (__mmask16)(left >= 16 ? 0xffffu : (1u << left) - 1u);
}

/* qs_ref_adpq_grids() with its per-group loops on 16 groups at a time
 * (u8 meta; fp16 meta is ref's own loop).  Each lane runs ref's
 * operations for its group; the row's maxima (the super-scales' needs)
 * are max reductions over values that are never NaN or -0.0 in a
 * winning position (the accumulators start at +0.0 and ref's
 * `a > b ? a : b` keeps +0.0 against -0.0, as VMAXPS does), so their
 * order does not matter. */
static size_t grids(size_t ng, const struct qs_adpq_params *p, struct qs_adpq_row *r)
{
	if (p->flags & QS_ADPQ_SCALES_F16)
		return qs_ref_adpq_grids(ng, p, r);
	const unsigned qmax = (1u << p->bits) - 1u, omax = (1u << (p->bits - 1)) - 1u;
	const float qmaxf = (float)qmax, omaxf = (float)omax;
	float *lo = r->tmp, *hi = lo + ng, *omn = hi + ng, *omx = omn + ng;
	uint16_t *m = r->meta;
	const __m512 zero = _mm512_setzero_ps();

	memset(r->super, 0, sizeof(r->super));
	__m512 nmin = zero, nomin = zero;
	for (size_t g = 0; g < ng; g += 16) {
		__mmask16 k = lanes_left(ng - g);
		/* ref's -lo[g]: the sign flipped, not 0 - lo */
		__m512 nl = _mm512_castsi512_ps(_mm512_xor_si512(
			_mm512_castps_si512(_mm512_maskz_loadu_ps(k, lo + g)),
			_mm512_set1_epi32((int)0x80000000u)));
		nmin = _mm512_mask_max_ps(nmin, k, nl, nmin);
		nomin = _mm512_mask_max_ps(nomin, k, _mm512_maskz_loadu_ps(k, omn + g), nomin);
	}
	struct qs_adpq_unit dmu, omu;
	if (!qs_adpq_unit_of(_mm512_reduce_max_ps(nmin), &dmu) ||
	    !qs_adpq_unit_of(_mm512_reduce_max_ps(nomin), &omu))
		goto overflow;
	const float dmf = dmu.f, omf = omu.f, idm = dmu.inv, iom = omu.inv;
	const __m512 dmv = _mm512_set1_ps(dmf), omv = _mm512_set1_ps(omf);
	const __m512i one = _mm512_set1_epi32(1), c255 = _mm512_set1_epi32(255);
	__m512 nstep = zero, nostep = zero;
	for (size_t g = 0; g < ng; g += 16) {
		__mmask16 k = lanes_left(ng - g);
		__m512 l = _mm512_maskz_loadu_ps(k, lo + g), on = _mm512_maskz_loadu_ps(k, omn + g);
		__m512 nl = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(l),
								  _mm512_set1_epi32((int)0x80000000u)));
		__m512i mc = code_up16(nl, dmf, idm, k);
		__m512i oc = _mm512_setzero_si512();
		if (omf > 0.0f) {
			/* the largest oc with omf*oc <= omin */
			__m512 q = _mm512_mul_ps(on, _mm512_set1_ps(iom));
			__mmask16 big = _mm512_cmp_ps_mask(q, _mm512_set1_ps(255.0f), _CMP_GE_OQ);
			oc = _mm512_mask_mov_epi32(_mm512_cvttps_epu32(q), big, c255);
			for (;;) {
				__m512i cm = _mm512_sub_epi32(oc, one);
				__mmask16 dn = k & _mm512_cmpgt_epu32_mask(oc, _mm512_setzero_si512()) &
					       _mm512_cmp_ps_mask(_mm512_mul_ps(omv, _mm512_cvtepu32_ps(oc)),
								  on, _CMP_GT_OQ);
				if (!dn)
					break;
				oc = _mm512_mask_mov_epi32(oc, dn, cm);
			}
			for (;;) {
				__m512i cp = _mm512_add_epi32(oc, one);
				__mmask16 up = k & _mm512_cmplt_epu32_mask(oc, c255) &
					       _mm512_cmp_ps_mask(_mm512_mul_ps(omv, _mm512_cvtepu32_ps(cp)),
								  on, _CMP_LE_OQ);
				if (!up)
					break;
				oc = _mm512_mask_mov_epi32(oc, up, cp);
			}
		}
		_mm512_mask_cvtepi32_storeu_epi16(m + ng + g, k, mc);
		_mm512_mask_cvtepi32_storeu_epi16(m + 3 * ng + g, k, oc);
		/* the bases as stored, kept in lo/omn for the step pass */
		l = _mm512_castsi512_ps(_mm512_xor_si512(
			_mm512_castps_si512(_mm512_mul_ps(dmv, _mm512_cvtepu32_ps(mc))),
			_mm512_set1_epi32((int)0x80000000u)));
		on = _mm512_mul_ps(omv, _mm512_cvtepu32_ps(oc));
		_mm512_mask_storeu_ps(lo + g, k, l);
		_mm512_mask_storeu_ps(omn + g, k, on);
		__m512 sv = _mm512_div_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, hi + g), l),
					  _mm512_set1_ps(qmaxf));
		__m512 os = _mm512_div_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, omx + g), on),
					  _mm512_set1_ps(omaxf));
		nstep = _mm512_mask_max_ps(nstep, k, sv, nstep);
		nostep = _mm512_mask_max_ps(nostep, k, os, nostep);
	}
	struct qs_adpq_unit du, odu;
	if (!qs_adpq_unit_of(_mm512_reduce_max_ps(nstep), &du) ||
	    !qs_adpq_unit_of(_mm512_reduce_max_ps(nostep), &odu))
		goto overflow;
	float iq = 1.0f / qmaxf, ioq = 1.0f / omaxf;
	for (size_t g = 0; g < ng; g += 16) {
		__mmask16 k = lanes_left(ng - g);
		__m512i sc = step_code16(_mm512_maskz_loadu_ps(k, lo + g), _mm512_maskz_loadu_ps(k, hi + g),
					 qmaxf, iq, du.f, du.inv, k);
		__m512i oc = step_code16(_mm512_maskz_loadu_ps(k, omn + g),
					 _mm512_maskz_loadu_ps(k, omx + g), omaxf, ioq, odu.f, odu.inv,
					 k);
		_mm512_mask_cvtepi32_storeu_epi16(m + g, k, sc);
		_mm512_mask_cvtepi32_storeu_epi16(m + 2 * ng + g, k, oc);
	}
	r->super[0] = du.bits;
	r->super[1] = dmu.bits;
	r->super[2] = odu.bits;
	r->super[3] = omu.bits;
	return 0;

overflow:
	memset(m, 0, 4 * ng * sizeof(*m));
	return SIZE_MAX;
}

static inline __m512 abs16(const float *w)
{
	return _mm512_castsi512_ps(_mm512_and_si512(_mm512_loadu_si512((const void *)w),
						    _mm512_set1_epi32(0x7fffffff)));
}

/* adpq_scalar.h's block maxima.  As in avx2_adpq.c the selection compares
 * |w| as floats (for non-NaN values the key order; a NaN, key 0, is left
 * out by the compares: VMAXPS returns its second operand, the running max,
 * which starts at +0.0).  A 16-lane vertical max over w[i..i+63] gives lane
 * l the max of {l, l+16, l+32, l+48}; the max of its two halves is the 8
 * blocks {j, j+8, ..., j+56}. */
static uint32_t blockmax_hist(const float *w, size_t n, uint32_t *hist)
{
	size_t i = 0;
	__m256 top = _mm256_setzero_ps();
	for (; i + 64 <= n; i += 64) {
		__m512 m = _mm512_max_ps(abs16(w + i), _mm512_setzero_ps());
		m = _mm512_max_ps(abs16(w + i + 16), m);
		m = _mm512_max_ps(abs16(w + i + 32), m);
		m = _mm512_max_ps(abs16(w + i + 48), m);
		__m256 m8 = _mm256_max_ps(
			_mm512_castps512_ps256(m),
			_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(m), 1)));
		top = _mm256_max_ps(m8, top);
		uint32_t b[8];
		_mm256_storeu_si256((__m256i *)b,
				    _mm256_srli_epi32(_mm256_castps_si256(m8), QS_ADPQ_KEY_SHIFT));
		for (unsigned j = 0; j < 8; j++)
			hist[b[j]]++;
	}
	uint32_t t[8], mx = 0;
	_mm256_storeu_si256((__m256i *)t, _mm256_castps_si256(top));
	for (unsigned j = 0; j < 8; j++)
		mx = t[j] > mx ? t[j] : mx;
	return qs_adpq_blockmax_scalar(w, i, n, hist, mx);
}

/* adpq_scalar.h's collect, 16 weights a step: a compare into a mask, the
 * hits' indices left-packed by VPCOMPRESSD and stored whole (out has room
 * for cap + 16, adpq_scalar.h).  lo = 0 takes every weight, NaNs
 * included: the scalar loop. */
static size_t collect(const float *w, size_t n, uint32_t lo, uint32_t *out, size_t cap)
{
	size_t c = 0, i = 0;
	float lf;
	memcpy(&lf, &lo, sizeof(lf));
	const __m512 lv = _mm512_set1_ps(lf);
	const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
					       14, 15);
	for (; lo > 0 && i + 16 <= n; i += 16) {
		__mmask16 m = _mm512_cmp_ps_mask(abs16(w + i), lv, _CMP_GE_OQ);
		__m512i ids = _mm512_add_epi32(_mm512_set1_epi32((int)i), iota);
		_mm512_storeu_si512((void *)(out + c), _mm512_maskz_compress_epi32(m, ids));
		c += (unsigned)__builtin_popcount((unsigned)m);
		if (c > cap)
			return cap + 1;
	}
	return qs_adpq_collect_scalar(w, i, n, lo, out, c, cap);
}

static void select_row(const float *w, size_t n, const struct qs_adpq_params *p,
		       struct qs_adpq_row *r)
{
	qs_adpq_select_row_with(w, n, p, r, blockmax_hist, collect);
}

size_t qs_avx512_adpq_quantize_row(const float *w, size_t n, const struct qs_adpq_params *p,
				   struct qs_adpq_row *r)
{
	return qs_adpq_quantize_row_grids(w, n, p, r, select_row, group_ranges, grids, group_codes);
}

/* Plane b of 64 codes: VPTESTMB of bit b gives its 64 bits in order. */
void qs_avx512_pack_planes(const uint8_t *codes, size_t n, unsigned bits, uint8_t *dst,
			   size_t plane_stride)
{
	size_t nb = n / 64;
	for (size_t j = 0; j < nb; j++) {
		__m512i v = _mm512_loadu_si512((const void *)(codes + 64 * j));
		for (unsigned b = 0; b < bits; b++) {
			uint64_t m = _mm512_test_epi8_mask(v, _mm512_set1_epi8((char)(1u << b)));
			memcpy(dst + b * plane_stride + 8 * j, &m, 8);  /* little-endian */
		}
	}
	if (n % 64)
		qs_ref_pack_planes(codes + 64 * nb, n % 64, bits, dst + 8 * nb, plane_stride);
}

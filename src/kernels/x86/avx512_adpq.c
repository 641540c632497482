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
	if (fmn > fmx)
		fmn = fmx = 0.0f;
	*lo_out = fmn;
	*hi_out = fmx;

	/* range search (ref's inlier_range and grid_error) */
	const float qmaxf = (float)((1u << p->bits) - 1u);
	float step = (fmx - fmn) / qmaxf;
	if (!p->search || !(step > 0.0f) || !(step < 1e30f))
		return;
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
	for (; i < n; i++) {
		uint32_t v = qs_adpq_key(w[i]);
		hist[v >> QS_ADPQ_KEY_SHIFT]++;
		mx = v > mx ? v : mx;
	}
	return mx;
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
	return qs_adpq_quantize_row_with(w, n, p, r, select_row, group_ranges, group_codes);
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

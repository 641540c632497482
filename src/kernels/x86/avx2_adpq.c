/* avx2_adpq.c - the adpq kernels for x86-64 with AVX2 (built with the
 * flags of avx2.c, entered through its table).
 *
 * Bit-identical to ref_adpq.c, which defines the output: every f32
 * expression is the same sequence of separately rounded operations (no FMA),
 * the range-search sums use ref's lane order (vector j goes to accumulator
 * j % 4, whose lane l is element 8j + l; the four are added pairwise and
 * folded 256 -> 128 -> 64 -> 32 as ref's header says), MINPS/MAXPS
 * are written as ref's `a < b ? a : b` (they return the second operand
 * unless the first compares less/greater, so NaNs fall to the same side),
 * and a clamped value rounds with the MXCSR default (nearest, ties to even),
 * as ref's 2^23 trick does.  The per-group grids (phase 2) are ref's code,
 * qs_ref_adpq_grids().
 *
 * Outliers: the row's set comes from qs_adpq_select_row_with() (ref_adpq.c),
 * shared by every variant, with its two passes over the row (the block
 * maxima and the compare-and-compact) vectorized here (see abs8() for why
 * float compares give ref's key order).  Then the set only becomes bit
 * masks.
 *
 * A group shorter than the scheme's group (a row's last) is copied into a
 * buffer padded with +0.0 and the pad lanes masked out; the pads add +0.0
 * to the error lanes after ref's last element, which changes no sum.
 */
#include <immintrin.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "adpq_scalar.h"
#include "kernels.h"

#define SEARCH_DEN 32.0f
#define GMAX QS_ADPQ_GMAX
#define VMAX (GMAX / 8u)

/* ((a0+a4) + (a2+a6)) + ((a1+a5) + (a3+a7)), ref's lane fold. */
static inline float fold_sum(__m256 a)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
	__m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
	return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

static inline float hmin(__m256 a)
{
	__m128 s = _mm_min_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
	s = _mm_min_ps(s, _mm_movehl_ps(s, s));
	return _mm_cvtss_f32(_mm_min_ss(s, _mm_movehdup_ps(s)));
}

static inline float hmax(__m256 a)
{
	__m128 s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
	s = _mm_max_ps(s, _mm_movehl_ps(s, s));
	return _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)));
}

/* (q - c)^2 of 8 weights, q = (w - lo)*inv, c its clamped nearest code.
 * The clamp runs on q's bits as signed integers, off the floating-point
 * min/max units, and changes no d (avx512_adpq.c's sq_err says why). */
static inline __m256 sq_err(__m256 w, __m256 lv, __m256 iv, __m256 qv)
{
	__m256 q = _mm256_mul_ps(_mm256_sub_ps(w, lv), iv);
	__m256i ci = _mm256_min_epi32(_mm256_max_epi32(_mm256_castps_si256(q),
						       _mm256_setzero_si256()),
				      _mm256_castps_si256(qv));
	__m256 c = _mm256_round_ps(_mm256_castsi256_ps(ci),
				   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	__m256 d = _mm256_sub_ps(q, c);
	return _mm256_mul_ps(d, d);
}

/* Phase 1 of one group (wg: whole blocks of 32 readable, elements past len
 * +0.0): the bits of its k outliers (in-group indices idx[k]) per 8 weights
 * in om[], and the ranges.  The range passes and the search run on a copy whose
 * outliers, NaNs and pads are all NaN, which MINPS/MAXPS skip as ref's
 * ternaries do and an ordered-compare mask zeroes in the error sums. */
static void group_ranges(const float *wg, size_t len, unsigned k,
			 const struct qs_adpq_params *p, uint8_t *om, const uint8_t *idx,
			 float *lo_out, float *hi_out, float *omn_out, float *omx_out)
{
	const size_t nv = (len + 7) / 8, nv4 = (nv + 3) / 4 * 4;
	uint64_t word[GMAX / 64] = {0};

	/* the outliers qs_adpq_select_row() chose, as bits */
	for (unsigned o = 0; o < k; o++)
		word[idx[o] / 64] |= 1ull << (idx[o] % 64);
	memcpy(om, word, nv);  /* little-endian: byte v = vector v's 8 bits */

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

	/* the inliers, everything else NaN */
	__m256 x[VMAX];
	const __m256 inf = _mm256_set1_ps(INFINITY), ninf = _mm256_set1_ps(-INFINITY);
	const __m256 nan = _mm256_set1_ps(NAN);
	const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
	__m256 mn = inf, mx = ninf;
	for (size_t v = 0; v < nv4; v++) {
		unsigned b = v < nv ? om[v] : 0;
		__m256i o = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)b), bit), bit);
		if (8 * v + 8 > len) {
			int r = len > 8 * v ? (int)(len - 8 * v) : 0;
			o = _mm256_or_si256(o, _mm256_cmpgt_epi32(_mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 8),
								  _mm256_set1_epi32(r)));
		}
		__m256 y = _mm256_blendv_ps(_mm256_loadu_ps(wg + 8 * v), nan, _mm256_castsi256_ps(o));
		x[v] = y;
		mn = _mm256_min_ps(y, mn);
		mx = _mm256_max_ps(y, mx);
	}
	float fmn = hmin(mn), fmx = hmax(mx);
	float step;
	if (!qs_adpq_range_done(&fmn, &fmx, p, lo_out, hi_out, &step))
		return;

	/* range search (ref's inlier_range and grid_error) */
	const float qmaxf = (float)((1u << p->bits) - 1u);
	const __m256 zero = _mm256_setzero_ps(), qv = _mm256_set1_ps(qmaxf);
	__m256 vm[VMAX];
	for (size_t v = 0; v < nv4; v++)
		vm[v] = _mm256_cmp_ps(x[v], x[v], _CMP_ORD_Q);
	/* the candidates first (ref's sequence, up to the first empty
	 * range), then their errors two at a time: one pass over the group
	 * loads each vector once for both and keeps two independent
	 * chains in flight; each candidate's sum is still its own four
	 * accumulators in ref's order */
	float clo[QS_ADPQ_SEARCH_MAX + 1], chi[QS_ADPQ_SEARCH_MAX + 1];
	float cst[QS_ADPQ_SEARCH_MAX + 1], ce[QS_ADPQ_SEARCH_MAX + 1];
	unsigned nc = 1;
	const float h = (fmx - fmn) * 0.5f, mid = fmn + h;
	clo[0] = fmn;
	chi[0] = fmx;
	cst[0] = step;
	for (unsigned i = 1; i <= p->search; i++, nc++) {
		float f = (SEARCH_DEN - (float)i) / SEARCH_DEN;
		float fh = f * h;
		clo[i] = mid - fh;
		chi[i] = mid + fh;
		cst[i] = (chi[i] - clo[i]) / qmaxf;
		if (!(cst[i] > 0.0f))
			break;
	}
	for (unsigned i = 0; i < nc; i += 2) {
		/* an odd last candidate is paired with itself */
		unsigned j = i + 1 < nc ? i + 1 : i;
		const __m256 lv = _mm256_set1_ps(clo[i]), iv = _mm256_set1_ps(1.0f / cst[i]);
		const __m256 lw = _mm256_set1_ps(clo[j]), iw = _mm256_set1_ps(1.0f / cst[j]);
		__m256 a0 = zero, a1 = zero, a2 = zero, a3 = zero;
		__m256 b0 = zero, b1 = zero, b2 = zero, b3 = zero;
#define ERR(v, l, iv_) _mm256_and_ps(sq_err(x[v], l, iv_, qv), vm[v])
		for (size_t v = 0; v < nv4; v += 4) {
			a0 = _mm256_add_ps(a0, ERR(v, lv, iv));
			b0 = _mm256_add_ps(b0, ERR(v, lw, iw));
			a1 = _mm256_add_ps(a1, ERR(v + 1, lv, iv));
			b1 = _mm256_add_ps(b1, ERR(v + 1, lw, iw));
			a2 = _mm256_add_ps(a2, ERR(v + 2, lv, iv));
			b2 = _mm256_add_ps(b2, ERR(v + 2, lw, iw));
			a3 = _mm256_add_ps(a3, ERR(v + 3, lv, iv));
			b3 = _mm256_add_ps(b3, ERR(v + 3, lw, iw));
		}
#undef ERR
		__m256 sa = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
		__m256 sb = _mm256_add_ps(_mm256_add_ps(b0, b1), _mm256_add_ps(b2, b3));
		ce[i] = fold_sum(sa) * (cst[i] * cst[i]);
		ce[j] = fold_sum(sb) * (cst[j] * cst[j]);
	}
	float best = ce[0];
	for (unsigned i = 1; i < nc; i++)
		if (ce[i] < best) {
			best = ce[i];
			*lo_out = clo[i];
			*hi_out = chi[i];
		}
}

/* 32 stored inlier codes of the grid (minf, inv) from w[32] (outliers are
 * patched in afterwards: a few a group). */
static inline __m256i codes32(const float *w, __m256 minf, __m256 inv, __m256 qv,
			      bool fold, __m256i zv, __m256i mv)
{
	const __m256 zero = _mm256_setzero_ps();
	__m256i ci[4];
	for (unsigned j = 0; j < 4; j++) {
		__m256 q = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(w + 8 * j), minf), inv);
		q = _mm256_min_ps(_mm256_max_ps(q, zero), qv);
		ci[j] = _mm256_cvtps_epi32(q);
	}
	const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
	__m256i c = _mm256_permutevar8x32_epi32(
		_mm256_packus_epi16(_mm256_packs_epi32(ci[0], ci[1]),
				    _mm256_packs_epi32(ci[2], ci[3])), perm);
	if (fold) {
		/* ref's fold(): d = |c - z|; d <= m ? (c > z ? 2d-1 : 2d) : m + d */
		__m256i gt = _mm256_cmpgt_epi8(c, zv);
		__m256i d = _mm256_sub_epi8(_mm256_max_epu8(c, zv), _mm256_min_epu8(c, zv));
		__m256i near = _mm256_add_epi8(_mm256_add_epi8(d, d), gt);
		__m256i far = _mm256_add_epi8(mv, d);
		__m256i le = _mm256_cmpeq_epi8(_mm256_min_epu8(d, mv), d);
		c = _mm256_blendv_epi8(far, near, le);
	}
	return c;
}

/* Phase 3 of one group, 32 codes at a time (a short tail through a
 * zero-padded copy). */
static void group_codes(const float *wg, size_t len, const struct qs_adpq_grid *q, float inv,
			unsigned z, unsigned m, bool fold, float qmaxf, uint8_t *c)
{
	const __m256 qv = _mm256_set1_ps(qmaxf);
	const __m256 minf = _mm256_set1_ps(q->minf), iv = _mm256_set1_ps(inv);
	const __m256i zv = _mm256_set1_epi8((char)z), mv = _mm256_set1_epi8((char)m);
	for (size_t j = 0; j < len; j += 32) {
		if (len - j >= 32) {
			_mm256_storeu_si256((__m256i *)(c + j),
					    codes32(wg + j, minf, iv, qv, fold, zv, mv));
		} else {
			float x[32] __attribute__((aligned(32))) = {0};
			uint8_t c8[32];
			memcpy(x, wg + j, (len - j) * sizeof(float));
			_mm256_storeu_si256((__m256i *)c8, codes32(x, minf, iv, qv, fold, zv, mv));
			memcpy(c + j, c8, len - j);
		}
	}
}

/* The two selection passes compare |w| as floats, not as integer keys:
 * for non-NaN values the float order of |w| is the key order (|w| >= 0,
 * denormals compared exactly under the default MXCSR), and a NaN, whose
 * key is 0, is left out by the compares themselves: MAXPS returns its
 * second operand when either is NaN, and an ordered >= is false.  Fewer
 * operations than the key's mask-and-compare. */
static inline __m256 abs8(const float *w)
{
	return _mm256_and_ps(_mm256_loadu_ps(w), _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)));
}

/* adpq_scalar.h's block maxima: the 8 blocks of 64 weights are the lanes of
 * a vertical max over 8 vectors (the running max second, so never NaN: a
 * block of NaNs has key 0, as the +0.0 start). */
static uint32_t blockmax_hist(const float *w, size_t n, uint32_t *hist)
{
	size_t i = 0;
	__m256 top = _mm256_setzero_ps();
	for (; i + 64 <= n; i += 64) {
		__m256 m = _mm256_max_ps(abs8(w + i), _mm256_setzero_ps());
		for (unsigned s = 8; s < 64; s += 8)
			m = _mm256_max_ps(abs8(w + i + s), m);
		top = _mm256_max_ps(m, top);
		uint32_t b[8];
		_mm256_storeu_si256((__m256i *)b,
				    _mm256_srli_epi32(_mm256_castps_si256(m), QS_ADPQ_KEY_SHIFT));
		for (unsigned j = 0; j < 8; j++)
			hist[b[j]]++;
	}
	uint32_t t[8], mx = 0;
	_mm256_storeu_si256((__m256i *)t, _mm256_castps_si256(top));
	for (unsigned j = 0; j < 8; j++)
		mx = t[j] > mx ? t[j] : mx;
	return qs_adpq_blockmax_scalar(w, i, n, hist, mx);
}

/* compact_pos[m]: the positions of the set bits of m, ascending, one a
 * byte from the lowest (the lane order of a left-packing permutation; the
 * table is just that definition evaluated for m = 0..255). */
static const uint64_t compact_pos[256] = {
	0, 0, 0x1ull, 0x100ull, 0x2ull, 0x200ull,
	0x201ull, 0x20100ull, 0x3ull, 0x300ull, 0x301ull, 0x30100ull,
	0x302ull, 0x30200ull, 0x30201ull, 0x3020100ull, 0x4ull, 0x400ull,
	0x401ull, 0x40100ull, 0x402ull, 0x40200ull, 0x40201ull, 0x4020100ull,
	0x403ull, 0x40300ull, 0x40301ull, 0x4030100ull, 0x40302ull, 0x4030200ull,
	0x4030201ull, 0x403020100ull, 0x5ull, 0x500ull, 0x501ull, 0x50100ull,
	0x502ull, 0x50200ull, 0x50201ull, 0x5020100ull, 0x503ull, 0x50300ull,
	0x50301ull, 0x5030100ull, 0x50302ull, 0x5030200ull, 0x5030201ull, 0x503020100ull,
	0x504ull, 0x50400ull, 0x50401ull, 0x5040100ull, 0x50402ull, 0x5040200ull,
	0x5040201ull, 0x504020100ull, 0x50403ull, 0x5040300ull, 0x5040301ull, 0x504030100ull,
	0x5040302ull, 0x504030200ull, 0x504030201ull, 0x50403020100ull, 0x6ull, 0x600ull,
	0x601ull, 0x60100ull, 0x602ull, 0x60200ull, 0x60201ull, 0x6020100ull,
	0x603ull, 0x60300ull, 0x60301ull, 0x6030100ull, 0x60302ull, 0x6030200ull,
	0x6030201ull, 0x603020100ull, 0x604ull, 0x60400ull, 0x60401ull, 0x6040100ull,
	0x60402ull, 0x6040200ull, 0x6040201ull, 0x604020100ull, 0x60403ull, 0x6040300ull,
	0x6040301ull, 0x604030100ull, 0x6040302ull, 0x604030200ull, 0x604030201ull, 0x60403020100ull,
	0x605ull, 0x60500ull, 0x60501ull, 0x6050100ull, 0x60502ull, 0x6050200ull,
	0x6050201ull, 0x605020100ull, 0x60503ull, 0x6050300ull, 0x6050301ull, 0x605030100ull,
	0x6050302ull, 0x605030200ull, 0x605030201ull, 0x60503020100ull, 0x60504ull, 0x6050400ull,
	0x6050401ull, 0x605040100ull, 0x6050402ull, 0x605040200ull, 0x605040201ull, 0x60504020100ull,
	0x6050403ull, 0x605040300ull, 0x605040301ull, 0x60504030100ull, 0x605040302ull, 0x60504030200ull,
	0x60504030201ull, 0x6050403020100ull, 0x7ull, 0x700ull, 0x701ull, 0x70100ull,
	0x702ull, 0x70200ull, 0x70201ull, 0x7020100ull, 0x703ull, 0x70300ull,
	0x70301ull, 0x7030100ull, 0x70302ull, 0x7030200ull, 0x7030201ull, 0x703020100ull,
	0x704ull, 0x70400ull, 0x70401ull, 0x7040100ull, 0x70402ull, 0x7040200ull,
	0x7040201ull, 0x704020100ull, 0x70403ull, 0x7040300ull, 0x7040301ull, 0x704030100ull,
	0x7040302ull, 0x704030200ull, 0x704030201ull, 0x70403020100ull, 0x705ull, 0x70500ull,
	0x70501ull, 0x7050100ull, 0x70502ull, 0x7050200ull, 0x7050201ull, 0x705020100ull,
	0x70503ull, 0x7050300ull, 0x7050301ull, 0x705030100ull, 0x7050302ull, 0x705030200ull,
	0x705030201ull, 0x70503020100ull, 0x70504ull, 0x7050400ull, 0x7050401ull, 0x705040100ull,
	0x7050402ull, 0x705040200ull, 0x705040201ull, 0x70504020100ull, 0x7050403ull, 0x705040300ull,
	0x705040301ull, 0x70504030100ull, 0x705040302ull, 0x70504030200ull, 0x70504030201ull, 0x7050403020100ull,
	0x706ull, 0x70600ull, 0x70601ull, 0x7060100ull, 0x70602ull, 0x7060200ull,
	0x7060201ull, 0x706020100ull, 0x70603ull, 0x7060300ull, 0x7060301ull, 0x706030100ull,
	0x7060302ull, 0x706030200ull, 0x706030201ull, 0x70603020100ull, 0x70604ull, 0x7060400ull,
	0x7060401ull, 0x706040100ull, 0x7060402ull, 0x706040200ull, 0x706040201ull, 0x70604020100ull,
	0x7060403ull, 0x706040300ull, 0x706040301ull, 0x70604030100ull, 0x706040302ull, 0x70604030200ull,
	0x70604030201ull, 0x7060403020100ull, 0x70605ull, 0x7060500ull, 0x7060501ull, 0x706050100ull,
	0x7060502ull, 0x706050200ull, 0x706050201ull, 0x70605020100ull, 0x7060503ull, 0x706050300ull,
	0x706050301ull, 0x70605030100ull, 0x706050302ull, 0x70605030200ull, 0x70605030201ull, 0x7060503020100ull,
	0x7060504ull, 0x706050400ull, 0x706050401ull, 0x70605040100ull, 0x706050402ull, 0x70605040200ull,
	0x70605040201ull, 0x7060504020100ull, 0x706050403ull, 0x70605040300ull, 0x70605040301ull, 0x7060504030100ull,
	0x70605040302ull, 0x7060504030200ull, 0x7060504030201ull, 0x706050403020100ull,
};

/* adpq_scalar.h's collect without a branch per hit (a row's candidates are
 * a few percent of it, so most blocks of 32 hold one and a branch on them
 * mispredicts): per 8 weights a compare, a movemask, and the indices of
 * the hits left-packed by one permutation and stored whole (8 entries; out
 * has room for cap + 16, adpq_scalar.h).  lo = 0 takes every weight, NaNs included:
 * the scalar loop. */
static size_t collect(const float *w, size_t n, uint32_t lo, uint32_t *out, size_t cap)
{
	size_t c = 0, i = 0;
	float lf;
	memcpy(&lf, &lo, sizeof(lf));
	const __m256 lv = _mm256_set1_ps(lf);
	const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
	for (; lo > 0 && i + 8 <= n; i += 8) {
		unsigned m = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(abs8(w + i), lv, _CMP_GE_OQ));
		__m256i perm = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)&compact_pos[m]));
		__m256i ids = _mm256_add_epi32(_mm256_set1_epi32((int)i), iota);
		_mm256_storeu_si256((__m256i *)(out + c), _mm256_permutevar8x32_epi32(ids, perm));
		c += (unsigned)__builtin_popcount(m);
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

size_t qs_avx2_adpq_quantize_row(const float *w, size_t n, const struct qs_adpq_params *p,
				 struct qs_adpq_row *r)
{
	return qs_adpq_quantize_row_with(w, n, p, r, select_row, group_ranges, group_codes);
}

void qs_avx2_pack_planes(const uint8_t *codes, size_t n, unsigned bits, uint8_t *dst,
			 size_t plane_stride)
{
	size_t nb = n / 32;
	for (size_t j = 0; j < nb; j++) {
		__m256i v = _mm256_loadu_si256((const __m256i *)(codes + 32 * j));
		for (unsigned b = 0; b < bits; b++) {
			/* bit b of each byte to its bit 7 (16-bit shifts of at
			 * most 7 cannot carry a lower byte's bit into bit 7) */
			uint32_t m = (uint32_t)_mm256_movemask_epi8(
				_mm256_slli_epi16(v, (int)(7 - b)));
			uint8_t *d = dst + b * plane_stride + 4 * j;
			d[0] = (uint8_t)m;
			d[1] = (uint8_t)(m >> 8);
			d[2] = (uint8_t)(m >> 16);
			d[3] = (uint8_t)(m >> 24);
		}
	}
	if (n % 32)
		qs_ref_pack_planes(codes + 32 * nb, n % 32, bits, dst + 4 * nb, plane_stride);
}

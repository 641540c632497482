/* avx2_daq.c - AVX2 daq kernels, bit-identical to ref_daq.c.
 *
 * daq_range keeps a sorted list of the k smallest (largest) per lane and
 * merges the lanes by inserting each partner lane's list (lanes 4, 2, 1
 * apart); the result is the same sequence as ref's because the values are
 * canonical (no NaN, no -0), so the k smallest are one sequence of bit
 * patterns whatever the insertion order.
 *
 * daq_eval: vector lane j is ref's accumulator j (element i goes to lane
 * i % 8 in both), the tail continues ref's scalar loop on the same
 * accumulators, and the lanes are combined in ref's order.  The code is
 * ref's count of midpoints below t (padded with +Inf to 15).  Built with
 * -ffp-contract=off: no FMA. */
#include <immintrin.h>
#include <math.h>

#include "daq_scalar.h"
#include "kernels.h"

#define RANGE_MAX_K 8u

/* Inserts a into the lane-wise ascending lists L[0..k) (the k smallest). */
static inline __attribute__((always_inline)) void ins_lo(__m256 *L, unsigned k, __m256 a)
{
#pragma GCC unroll 8
	for (unsigned j = 0; j < k; j++) {
		__m256 t = _mm256_min_ps(L[j], a);
		a = _mm256_max_ps(L[j], a);
		L[j] = t;
	}
}

static inline __attribute__((always_inline)) void ins_hi(__m256 *H, unsigned k, __m256 b)
{
#pragma GCC unroll 8
	for (unsigned j = 0; j < k; j++) {
		__m256 t = _mm256_max_ps(H[j], b);
		b = _mm256_min_ps(H[j], b);
		H[j] = t;
	}
}

static inline __attribute__((always_inline)) __m256 partner(__m256 v, unsigned d)
{
	if (d == 4)
		return _mm256_permute2f128_ps(v, v, 1);
	if (d == 2)
		return _mm256_shuffle_ps(v, v, _MM_SHUFFLE(1, 0, 3, 2));
	return _mm256_shuffle_ps(v, v, _MM_SHUFFLE(2, 3, 0, 1));
}

static inline __attribute__((always_inline)) size_t
range_k(const float *x, size_t n, unsigned k, float *lo, float *hi)
{
	__m256 L[RANGE_MAX_K], H[RANGE_MAX_K];
	const __m256 pinf = _mm256_set1_ps(INFINITY), ninf = _mm256_set1_ps(-INFINITY);
	const __m256 zero = _mm256_setzero_ps();
	__m256i cnt = _mm256_setzero_si256();
	size_t i = 0;

#pragma GCC unroll 8
	for (unsigned j = 0; j < k; j++) {
		L[j] = pinf;
		H[j] = ninf;
	}
	for (; i < n; i += 8) {
		__m256 v;
		if (i + 8 <= n) {
			v = _mm256_loadu_ps(x + i);
		} else {
			/* the tail padded with NaN, which is left out below */
			float t[8];
			for (unsigned q = 0; q < 8; q++)
				t[q] = i + q < n ? x[i + q] : NAN;
			v = _mm256_loadu_ps(t);
		}
		__m256 ok = _mm256_cmp_ps(v, v, _CMP_ORD_Q);
		v = _mm256_add_ps(v, zero);
		cnt = _mm256_sub_epi32(cnt, _mm256_castps_si256(ok));
		ins_lo(L, k, _mm256_blendv_ps(pinf, v, ok));
		ins_hi(H, k, _mm256_blendv_ps(ninf, v, ok));
	}
	for (unsigned d = 4; d >= 1; d /= 2) {
		__m256 PL[RANGE_MAX_K], PH[RANGE_MAX_K];
#pragma GCC unroll 8
		for (unsigned j = 0; j < k; j++) {
			PL[j] = partner(L[j], d);
			PH[j] = partner(H[j], d);
		}
#pragma GCC unroll 8
		for (unsigned j = 0; j < k; j++) {
			ins_lo(L, k, PL[j]);
			ins_hi(H, k, PH[j]);
		}
	}
#pragma GCC unroll 8
	for (unsigned j = 0; j < k; j++) {
		lo[j] = _mm256_cvtss_f32(L[j]);
		hi[j] = _mm256_cvtss_f32(H[j]);
	}
	__m128i c4 = _mm_add_epi32(_mm256_castsi256_si128(cnt), _mm256_extracti128_si256(cnt, 1));
	c4 = _mm_add_epi32(c4, _mm_shuffle_epi32(c4, _MM_SHUFFLE(1, 0, 3, 2)));
	c4 = _mm_add_epi32(c4, _mm_shuffle_epi32(c4, _MM_SHUFFLE(2, 3, 0, 1)));
	return (size_t)(uint32_t)_mm_cvtsi128_si32(c4);
}

size_t qs_avx2_daq_range(const float *x, size_t n, unsigned k, float *lo, float *hi)
{
	/* constant k: the lists live in registers */
	switch (k) {
	case 0:
		return range_k(x, n, 0, lo, hi);
	case 1:
		return range_k(x, n, 1, lo, hi);
	case 2:
		return range_k(x, n, 2, lo, hi);
	case 3:
		return range_k(x, n, 3, lo, hi);
	case 4:
		return range_k(x, n, 4, lo, hi);
	case 5:
		return range_k(x, n, 5, lo, hi);
	case 6:
		return range_k(x, n, 6, lo, hi);
	case 7:
		return range_k(x, n, 7, lo, hi);
	default:
		return qs_ref_daq_range(x, n, k, lo, hi);
	}
}

void qs_avx2_daq_eval(const float *x, const float *imp, size_t n, float z, float s, float inv,
		      const float *lev, const float *mid, unsigned nlev, uint8_t *codes,
		      float out[3])
{
	float se[8], sl[8], sv[8], m16[16];
	__m256 ae = _mm256_setzero_ps(), al = _mm256_setzero_ps(), av = _mm256_setzero_ps();
	__m256 vz = _mm256_set1_ps(z), vs = _mm256_set1_ps(s), vi = _mm256_set1_ps(inv);
	__m256 llo = _mm256_loadu_ps(lev), lhi = _mm256_loadu_ps(lev + 8);
	size_t i = 0;

	if (nlev < 2 || nlev > 16) {
		/* outside the contract's table: ref's count handles it */
		qs_ref_daq_eval(x, imp, n, z, s, inv, lev, mid, nlev, codes, out);
		return;
	}
	for (unsigned q = 0; q < 16; q++)
		m16[q] = q + 1 < nlev ? mid[q] : INFINITY;
	__m256 vm[15];
	for (unsigned q = 0; q < 15; q++)
		vm[q] = _mm256_set1_ps(m16[q]);
	for (; i + 8 <= n; i += 8) {
		__m256 xv = _mm256_loadu_ps(x + i);
		__m256 t = _mm256_mul_ps(_mm256_sub_ps(xv, vz), vi);
		/* a count of independent compares, summed as a tree: a short
		 * dependency chain, which is what bounds a 64-weight group */
		__m256i q[8];
#pragma GCC unroll 8
		for (unsigned k = 0; k < 7; k++)
			q[k] = _mm256_add_epi32(
				_mm256_castps_si256(_mm256_cmp_ps(t, vm[2 * k], _CMP_GT_OQ)),
				_mm256_castps_si256(_mm256_cmp_ps(t, vm[2 * k + 1], _CMP_GT_OQ)));
		q[7] = _mm256_castps_si256(_mm256_cmp_ps(t, vm[14], _CMP_GT_OQ));
		__m256i c = _mm256_sub_epi32(
			_mm256_setzero_si256(),
			_mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]),
							  _mm256_add_epi32(q[2], q[3])),
					 _mm256_add_epi32(_mm256_add_epi32(q[4], q[5]),
							  _mm256_add_epi32(q[6], q[7]))));
		/* lev[c] for c < 16: bit 3 of c picks the upper table */
		__m256 l = _mm256_blendv_ps(_mm256_permutevar8x32_ps(llo, c),
					    _mm256_permutevar8x32_ps(lhi, c),
					    _mm256_castsi256_ps(_mm256_slli_epi32(c, 28)));
		__m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(c),
					      _mm256_extracti128_si256(c, 1));
		_mm_storel_epi64((__m128i *)(void *)(codes + i), _mm_packus_epi16(p16, p16));
		__m256 y = _mm256_add_ps(vz, _mm256_mul_ps(vs, l));
		__m256 e = _mm256_sub_ps(xv, y);
		__m256 v = imp ? _mm256_mul_ps(e, _mm256_loadu_ps(imp + i)) : e;
		__m256 ok = _mm256_cmp_ps(xv, xv, _CMP_ORD_Q);
		e = _mm256_and_ps(e, ok);
		v = _mm256_and_ps(v, ok);
		ae = _mm256_add_ps(ae, _mm256_mul_ps(v, e));
		al = _mm256_add_ps(al, _mm256_mul_ps(v, l));
		av = _mm256_add_ps(av, v);
	}
	_mm256_storeu_ps(se, ae);
	_mm256_storeu_ps(sl, al);
	_mm256_storeu_ps(sv, av);
	if (i < n)
		qs_ref_nearest_code(x + i, n - i, z, inv, mid, nlev - 1, codes + i);
	qs_daq_eval_span(x, imp, i, n, z, s, lev, codes, se, sl, sv);
	qs_daq_eval_out(se, sl, sv, out);
}

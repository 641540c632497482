/* avx2_daq.c - AVX2 daq group evaluation, bit-identical to
 * qs_ref_daq_eval: vector lane j is ref's accumulator j (element i goes to
 * lane i % 8 in both), the tail continues ref's scalar loop on the same
 * accumulators, and the lanes are combined in ref's order.  Built with
 * -ffp-contract=off: no FMA. */
#include <immintrin.h>

#include "kernels.h"

void qs_avx2_daq_eval(const float *x, const float *imp, size_t n, float z, float s, float inv,
		      const float *lev, const float *mid, unsigned nlev, uint8_t *codes,
		      float out[3])
{
	float se[8], sl[8], sv[8];
	__m256 ae = _mm256_setzero_ps(), al = _mm256_setzero_ps(), av = _mm256_setzero_ps();
	__m256 vz = _mm256_set1_ps(z), vs = _mm256_set1_ps(s);
	__m256 lo = _mm256_loadu_ps(lev), hi = _mm256_loadu_ps(lev + 8);
	size_t i = 0;

	qs_avx2_nearest_code(x, n, z, inv, mid, nlev - 1, codes);
	for (; i + 8 <= n; i += 8) {
		__m256i c = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(codes + i)));
		/* lev[c] for c < 16: bit 3 of c picks the upper table */
		__m256 l = _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, c),
					    _mm256_permutevar8x32_ps(hi, c),
					    _mm256_castsi256_ps(_mm256_slli_epi32(c, 28)));
		__m256 xv = _mm256_loadu_ps(x + i);
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
	for (; i < n; i++) {
		float l = lev[codes[i]];
		float p = s * l;
		float y = z + p;
		float e = x[i] - y;
		float v = imp ? e * imp[i] : e;
		if (x[i] != x[i])
			e = v = 0.0f;
		float ve = v * e;
		float vl = v * l;
		se[i & 7] += ve;
		sl[i & 7] += vl;
		sv[i & 7] += v;
	}
	out[0] = ((se[0] + se[1]) + (se[2] + se[3])) + ((se[4] + se[5]) + (se[6] + se[7]));
	out[1] = ((sl[0] + sl[1]) + (sl[2] + sl[3])) + ((sl[4] + sl[5]) + (sl[6] + sl[7]));
	out[2] = ((sv[0] + sv[1]) + (sv[2] + sv[3])) + ((sv[4] + sv[5]) + (sv[6] + sv[7]));
}

/* avx2_claq.c - AVX2 nearest-code search (claq's code assignment, daq's
 * codes), bit-identical to qs_ref_nearest_code: the same subtraction and
 * multiplication per element, and a count of ordered greater-than compares
 * (false for NaN, like C's >) instead of a search. */
#include <immintrin.h>

#include "kernels.h"

void qs_avx2_nearest_code(const float *x, size_t n, float z, float inv, const float *mid,
			  unsigned nmid, uint8_t *codes)
{
	__m256 vm[31];
	__m256 vz = _mm256_set1_ps(z), vi = _mm256_set1_ps(inv);
	size_t i = 0;

	if (nmid > 31)
		nmid = 31;
	for (unsigned k = 0; k < nmid; k++)
		vm[k] = _mm256_set1_ps(mid[k]);
	for (; i + 8 <= n; i += 8) {
		__m256 t = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vz), vi);
		__m256i c = _mm256_setzero_si256();
		for (unsigned k = 0; k < nmid; k++)
			c = _mm256_sub_epi32(c, _mm256_castps_si256(
						    _mm256_cmp_ps(t, vm[k], _CMP_GT_OQ)));
		__m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(c),
					      _mm256_extracti128_si256(c, 1));
		_mm_storel_epi64((__m128i *)(void *)(codes + i), _mm_packus_epi16(p16, p16));
	}
	if (i < n)
		qs_ref_nearest_code(x + i, n - i, z, inv, mid, nmid, codes + i);
}

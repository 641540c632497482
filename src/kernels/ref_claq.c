/* ref_claq.c - the scalar nearest-code search shared by claq (code of a
 * weight under its column's sorted centroids) and daq (code of a scaled
 * weight under the format's levels); the definition every SIMD variant
 * must match bit for bit (kernels.h). */
#include "kernels.h"

void qs_ref_nearest_code(const float *x, size_t n, float z, float inv, const float *mid,
			 unsigned nmid, uint8_t *codes)
{
	for (size_t i = 0; i < n; i++) {
		float d = x[i] - z;
		float t = d * inv;
		unsigned c = 0;
		/* counting (not searching) keeps the result defined for any
		 * midpoints, even unsorted or NaN ones from a corrupt table */
		for (unsigned k = 0; k < nmid; k++)
			c += t > mid[k];
		codes[i] = (uint8_t)c;
	}
}

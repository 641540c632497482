/* ref_daq.c - the scalar daq kernels (daq.c): the group's range
 * statistics (its k smallest and k largest weights, for the density
 * quantiles) and the evaluation of a candidate (centre, scale): codes, the
 * importance-weighted squared error and the two gradient sums the range
 * adjustment steps on.  The definitions every SIMD variant must match bit
 * for bit (kernels.h). */
#include <math.h>

#include "daq_scalar.h"
#include "kernels.h"

size_t qs_ref_daq_range(const float *x, size_t n, unsigned k, float *lo, float *hi)
{
	size_t m = 0;

	for (unsigned j = 0; j < k; j++) {
		lo[j] = INFINITY;
		hi[j] = -INFINITY;
	}
	for (size_t i = 0; i < n; i++) {
		float a = x[i];
		if (a != a)
			continue;
		/* -0 as +0: the k smallest are then one sequence of bit
		 * patterns, whatever order a variant inserts in */
		a += 0.0f;
		m++;
		float b = a;
		for (unsigned j = 0; j < k; j++) {
			float t = lo[j] < a ? lo[j] : a;
			a = lo[j] < a ? a : lo[j];
			lo[j] = t;
			t = hi[j] > b ? hi[j] : b;
			b = hi[j] > b ? b : hi[j];
			hi[j] = t;
		}
	}
	return m;
}

void qs_ref_daq_eval(const float *x, const float *imp, size_t n, float z, float s, float inv,
		     const float *lev, const float *mid, unsigned nlev, uint8_t *codes,
		     float out[3])
{
	float se[8] = {0}, sl[8] = {0}, sv[8] = {0};

	qs_ref_nearest_code(x, n, z, inv, mid, nlev - 1, codes);
	qs_daq_eval_span(x, imp, 0, n, z, s, lev, codes, se, sl, sv);
	qs_daq_eval_out(se, sl, sv, out);
}

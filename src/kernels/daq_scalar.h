/* daq_scalar.h - daq_eval's per-element definition (kernels.h), written
 * once for ref_daq.c and the tails of the SIMD variants: element i goes
 * into lane i % 8 of the three sums, in order, and the lanes combine as
 * ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)). */
#ifndef QS_DAQ_SCALAR_H
#define QS_DAQ_SCALAR_H

#include <stddef.h>
#include <stdint.h>

/* Elements [i0, n) of x (codes already chosen) into the lane sums. */
static inline void qs_daq_eval_span(const float *x, const float *imp, size_t i0, size_t n,
				    float z, float s, const float *lev, const uint8_t *codes,
				    float se[8], float sl[8], float sv[8])
{
	for (size_t i = i0; i < n; i++) {
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
}

static inline float qs_daq_lanes(const float a[8])
{
	return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

static inline void qs_daq_eval_out(const float se[8], const float sl[8], const float sv[8],
				   float out[3])
{
	out[0] = qs_daq_lanes(se);
	out[1] = qs_daq_lanes(sl);
	out[2] = qs_daq_lanes(sv);
}

#endif /* QS_DAQ_SCALAR_H */

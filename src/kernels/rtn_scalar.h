/* rtn_scalar.h - rtn's per-group definition (rtn.c states it), written
 * once: ref.c and the SIMD variants plug in their own range reduction,
 * code loop and fp16 conversions, and share the grid search, the rounding
 * to a code and the scalar tails.  always_inline with constant function
 * arguments, so each variant compiles to the code it had when it carried
 * its own copy (after ggml's single generic definition per kernel).
 */
#ifndef QS_RTN_SCALAR_H
#define QS_RTN_SCALAR_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "decode_scalar.h"
#include "fp16_scalar.h"

/* Rounds q to the nearest integer code in 0..qmax, ties to even.  Clamping
 * first is the same as clamping after (rounding is monotone and both ends
 * are integers) and turns a NaN into 0 (the comparisons are false); then
 * for 0 <= q < 2^23, adding and subtracting 2^23 rounds exactly as
 * nearbyintf() does in the default mode, without a libm call or a
 * dependency on the current rounding mode.  Branch-free so it vectorizes.
 * Shared by rtn, adpq's grids and the second-order schemes. */
static inline unsigned qs_round_code(float q, float qmaxf)
{
	q = q > 0.0f ? q : 0.0f;
	q = q < qmaxf ? q : qmaxf;
	float r = (q + 0x1p23f) - 0x1p23f;
	return (unsigned)(int32_t)r;
}

/* Codes of w[0..n) on the grid minf + c*scalef, one weight at a time (the
 * reference, and every variant's tail). */
static inline void qs_rtn_codes_scalar(const float *w, size_t n, float minf, float scalef,
				       float qmaxf, uint8_t *codes)
{
	for (size_t i = 0; i < n; i++) {
		float d = w[i] - minf;
		float q = d / scalef;
		codes[i] = (uint8_t)qs_round_code(q, qmaxf);
	}
}

/* w' = minf + code*scalef (product rounded, then the sum). */
static inline void qs_rtn_values_scalar(const uint8_t *codes, size_t n, float minf,
					float scalef, float *w)
{
	for (size_t j = 0; j < n; j++) {
		float t = (float)codes[j] * scalef;
		w[j] = minf + t;
	}
}

typedef void (*qs_range_fn)(const float *w, size_t n, float *mn, float *mx);
typedef void (*qs_codes_fn)(const float *w, size_t n, float minf, float scalef, float qmaxf,
			    uint8_t *codes);
typedef void (*qs_values_fn)(const uint8_t *codes, size_t n, float minf, float scalef,
			     float *w);

/* One group of n weights (rtn.c's definition): range() gives the min and
 * max skipping NaNs (+Inf/-Inf for none), codes() the grid codes.  NaN
 * weights get code 0; a group of only NaNs is min 0, scale 0.  Returns 1
 * when the group's range does not fit fp16 (then scale = min = 0, codes
 * 0). */
static QS_ALWAYS_INLINE size_t qs_rtn_group(const float *w, size_t n, unsigned bits,
					    uint16_t *scale_out, uint16_t *min_out,
					    uint8_t *codes, qs_range_fn range, qs_codes_fn codes_of,
					    qs_to_f16_fn h_of, qs_from_f16_fn f_of)
{
	float mn, mx;
	range(w, n, &mn, &mx);
	if (mn > mx) {
		mn = 0.0f;
		mx = 0.0f;
	}
	/* an infinite mx overflows the scale below */
	if (!(mn >= -QS_F16_MAX_F && mn <= QS_F16_MAX_F))
		goto overflow;

	unsigned qmax = (1u << bits) - 1u;
	float qmaxf = (float)qmax;
	uint16_t min16 = qs_f16_round_down(mn, h_of, f_of);
	float minf = f_of(min16);

	float s = (mx - minf) / qmaxf;
	uint16_t scale16 = qs_f16_round_up_pos(s, h_of, f_of);
	for (;;) {
		if (scale16 >= QS_F16_INF)
			goto overflow;
		float scalef = f_of(scale16);
		float top = qmaxf * scalef;
		top = minf + top;
		if (!(top < mx))
			break;
		scale16++;
	}

	*scale_out = scale16;
	*min_out = min16;
	if (scale16 == 0) {
		memset(codes, 0, n);
		return 0;
	}
	codes_of(w, n, minf, f_of(scale16), qmaxf, codes);
	return 0;

overflow:
	*scale_out = 0;
	*min_out = 0;
	memset(codes, 0, n);
	return 1;
}

typedef size_t (*qs_rtn_group_fn)(const float *w, size_t n, unsigned bits, uint16_t *scale,
				  uint16_t *min, uint8_t *codes);

/* kernels.h rtn_quantize_row over the variant's group function. */
static QS_ALWAYS_INLINE size_t qs_rtn_quantize_row(const float *w, size_t n, unsigned group,
						   unsigned bits, uint16_t *scale, uint16_t *min,
						   uint8_t *codes, qs_rtn_group_fn group_fn)
{
	size_t overflowed = 0;
	if (group == 0 || bits == 0 || bits > 8)
		return n ? 1 : 0;
	for (size_t g = 0, i = 0; i < n; g++, i += group) {
		size_t len = n - i < group ? n - i : group;
		overflowed += group_fn(w + i, len, bits, &scale[g], &min[g], codes + i);
	}
	return overflowed;
}

typedef size_t (*qs_decode_fn)(unsigned kind, const void *src, float *dst, size_t n);

/* kernels.h rtn_quantize_src for one constant kind: group by group,
 * decode into buf (QS_RTN_SRC_MAX_GROUP floats, in L1), then the
 * variant's group function on it. */
static QS_ALWAYS_INLINE size_t qs_rtn_src_kind(unsigned kind, const void *src, size_t n,
					       unsigned group, unsigned bits, int sanitize,
					       uint16_t *scale, uint16_t *min, uint8_t *codes,
					       size_t *nonfinite, float *buf, qs_decode_fn decode,
					       qs_rtn_group_fn group_fn)
{
	const size_t esz = kind == QS_SRC_KIND_F32 ? 4 : 2;
	const uint8_t *s = src;
	size_t overflowed = 0, bad = 0;
	for (size_t g = 0, i = 0; i < n; g++, i += group) {
		size_t len = n - i < group ? n - i : group;
		size_t b = decode(kind, s + i * esz, buf, len);
		if (b) {
			bad += b;
			if (sanitize)
				qs_sanitize_scalar(buf, len);
		}
		overflowed += group_fn(buf, len, bits, &scale[g], &min[g], codes + i);
	}
	*nonfinite += bad;
	return overflowed;
}

/* kernels.h rtn_quantize_src over the variant's decode and group
 * functions (each kind its own loop, the switch outside it). */
static QS_ALWAYS_INLINE size_t qs_rtn_quantize_src(unsigned kind, const void *src, size_t n,
						   unsigned group, unsigned bits, int sanitize,
						   uint16_t *scale, uint16_t *min, uint8_t *codes,
						   size_t *nonfinite, qs_decode_fn decode,
						   qs_rtn_group_fn group_fn)
{
	float buf[QS_RTN_SRC_MAX_GROUP] __attribute__((aligned(64)));
	if (group == 0 || bits == 0 || bits > 8 || group > QS_RTN_SRC_MAX_GROUP)
		return n ? 1 : 0;
	switch (kind) {
	case QS_SRC_KIND_BF16:
		return qs_rtn_src_kind(QS_SRC_KIND_BF16, src, n, group, bits, sanitize, scale, min,
				       codes, nonfinite, buf, decode, group_fn);
	case QS_SRC_KIND_F16:
		return qs_rtn_src_kind(QS_SRC_KIND_F16, src, n, group, bits, sanitize, scale, min,
				       codes, nonfinite, buf, decode, group_fn);
	default:
		return qs_rtn_src_kind(QS_SRC_KIND_F32, src, n, group, bits, sanitize, scale, min,
				       codes, nonfinite, buf, decode, group_fn);
	}
}

/* kernels.h rtn_dequantize_row over the variant's value loop. */
static QS_ALWAYS_INLINE void qs_rtn_dequantize_row(const uint8_t *codes, size_t n,
						   unsigned group, const uint16_t *scale,
						   const uint16_t *min, float *w,
						   qs_values_fn values, qs_from_f16_fn f_of)
{
	if (group == 0)
		return;
	for (size_t g = 0, i = 0; i < n; g++, i += group) {
		size_t len = n - i < group ? n - i : group;
		values(codes + i, len, f_of(min[g]), f_of(scale[g]), w + i);
	}
}

#endif /* QS_RTN_SCALAR_H */

/* decode_scalar.h - source decoding with the non-finite check in the same
 * pass (kernels.h decode_checked), and the --allow-nonfinite replacement,
 * defined once for ref.c, the SIMD variants' tails and the pipeline.
 *
 * Why fused: decoding a chunk to f32 and then counting NaN/Inf in a second
 * pass walked the chunk from memory twice (issue 16's profile: 11% + 8% of
 * a conversion).  The count is taken on the source bits, which is exact:
 * bf16 and f16 widen exactly, so a value is NaN/Inf after decoding iff its
 * exponent field is all ones before.
 */
#ifndef QS_DECODE_SCALAR_H
#define QS_DECODE_SCALAR_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"

/* bf16 -> f32 bits: the top half, NaNs quieted (bit 22 set when the
 * magnitude is above Inf: bit 31 of 0x7f80 - |h| is then set), as
 * qs_bf16_to_f32 does. */
static inline uint32_t qs_bf16_bits_scalar(uint32_t h)
{
	uint32_t u = h << 16;
	u |= ((0x7f80u - (h & 0x7fffu)) >> 31) << 22;
	return u;
}

/* 1 when the source element's exponent field is all ones (NaN or Inf). */
static inline uint32_t qs_bf16_nonfinite(uint32_t h)
{
	return (h & 0x7f80u) == 0x7f80u;
}

static inline uint32_t qs_f16_nonfinite(uint32_t h)
{
	return (h & 0x7c00u) == 0x7c00u;
}

static inline uint32_t qs_f32_nonfinite(uint32_t u)
{
	return (u & 0x7f800000u) == 0x7f800000u;
}

/* A 16-bit source element at any address: the source may sit at an odd
 * offset (kernels accept unaligned sources; memcpy compiles to one load). */
static inline uint32_t qs_src_u16(const uint8_t *p)
{
	uint16_t h;
	memcpy(&h, p, sizeof(h));
	return h;
}

/* The scalar decode_checked of one kind, for ref.c and every variant's
 * tail. */
static inline size_t qs_decode_checked_scalar(unsigned kind, const void *src, float *dst,
					      size_t n)
{
	size_t bad = 0;
	switch (kind) {
	case QS_SRC_KIND_BF16: {
		const uint8_t *s = src;
		for (size_t i = 0; i < n; i++) {
			uint32_t h = qs_src_u16(s + 2 * i);
			uint32_t u = qs_bf16_bits_scalar(h);
			bad += qs_bf16_nonfinite(h);
			memcpy(&dst[i], &u, sizeof(u));
		}
		break;
	}
	case QS_SRC_KIND_F16: {
		const uint8_t *s = src;
		for (size_t i = 0; i < n; i++) {
			uint32_t h = qs_src_u16(s + 2 * i);
			dst[i] = qs_f16_to_f32((uint16_t)h);
			bad += qs_f16_nonfinite(h);
		}
		break;
	}
	default: {
		const uint8_t *s = src;
		for (size_t i = 0; i < n; i++) {
			uint32_t u;
			memcpy(&u, s + 4 * i, sizeof(u));
			bad += qs_f32_nonfinite(u);
			memcpy(&dst[i], &u, sizeof(u));
		}
		break;
	}
	}
	return bad;
}

/* With --allow-nonfinite: NaN becomes 0 and +-Inf the largest finite fp16
 * (the range every grid's fp16 scale can encode), so a scheme sees finite
 * input.  Tested on the bits, so it needs no libm and vectorizes. */
static inline void qs_sanitize_scalar(float *w, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t u;
		memcpy(&u, &w[i], sizeof(u));
		if ((u & 0x7fffffffu) > 0x7f800000u)
			w[i] = 0.0f;
		else if ((u & 0x7fffffffu) == 0x7f800000u)
			w[i] = (u >> 31) ? -65504.0f : 65504.0f;
	}
}

#endif /* QS_DECODE_SCALAR_H */

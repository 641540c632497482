/* fp16.c - exact scalar conversions between f32 and the two 16-bit float
 * formats (IEEE 754 binary16 and bfloat16), done on the bit patterns so the
 * result never depends on the compiler, the FPU mode or the host's F16C.
 *
 * Narrowing rounds to nearest, ties to even; widening is exact.  NaNs keep
 * their sign and the top payload bits and always come out quiet, matching
 * what F16C (vcvtph2ps/vcvtps2ph) does, so SIMD variants can agree with these
 * bit for bit.  Every SIMD variant uses these for its tails.
 */
#include <string.h>

#include "kernels.h"

static inline uint32_t f32_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof(u));
	return u;
}

static inline float bits_f32(uint32_t u)
{
	float f;
	memcpy(&f, &u, sizeof(f));
	return f;
}

float qs_bf16_to_f32(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	/* a signalling NaN would widen to a signalling NaN: quiet it */
	if ((h & 0x7fffu) > 0x7f80u)
		u |= 0x00400000u;
	return bits_f32(u);
}

float qs_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t exp = (h >> 10) & 0x1fu;
	uint32_t mant = h & 0x3ffu;

	if (exp == 0x1f) {
		if (mant == 0)
			return bits_f32(sign | 0x7f800000u);
		return bits_f32(sign | 0x7fc00000u | (mant << 13));
	}
	if (exp != 0)
		return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
	if (mant == 0)
		return bits_f32(sign);
	/* subnormal: mant * 2^-24 with the leading one at bit p becomes a
	 * normal f32 with exponent p - 24 */
	unsigned p = 31u - (unsigned)__builtin_clz(mant);
	return bits_f32(sign | ((p + 103u) << 23) | ((mant << (23 - p)) & 0x7fffffu));
}

uint16_t qs_f32_to_bf16(float f)
{
	uint32_t u = f32_bits(f);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((u >> 16) | 0x0040u);
	/* adding 0x7fff plus the kept lsb rounds half to even; a carry out of
	 * the mantissa bumps the exponent, up to Inf, which is correct */
	u += 0x7fffu + ((u >> 16) & 1u);
	return (uint16_t)(u >> 16);
}

uint16_t qs_f32_to_f16(float f)
{
	uint32_t u = f32_bits(f);
	uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
	uint32_t x = u & 0x7fffffffu;

	if (x > 0x7f800000u)
		return (uint16_t)(sign | 0x7e00u | ((x >> 13) & 0x3ffu));
	/* 65520 is halfway between 65504 (odd mantissa) and 2^16: the tie goes
	 * to the even side, which is Inf */
	if (x >= 0x477ff000u)
		return (uint16_t)(sign | 0x7c00u);
	if (x >= 0x38800000u) {
		/* normal: rebias the exponent (127 - 15 = 112), then round
		 * the 13 dropped mantissa bits half to even */
		x -= 0x38000000u;
		x += 0xfffu + ((x >> 13) & 1u);
		return (uint16_t)(sign | (x >> 13));
	}
	/* below 2^-25 (half the smallest subnormal), or exactly it (a tie
	 * to the even zero) */
	if (x <= 0x33000000u)
		return sign;
	/* subnormal: the result is the full significand shifted right so
	 * its unit is 2^-24; rounding may carry into the smallest normal */
	uint32_t e = x >> 23;
	uint32_t m = (x & 0x7fffffu) | 0x800000u;
	unsigned shift = 126u - e;  /* 14..24 */
	uint32_t h = m >> shift;
	uint32_t rem = m & ((1u << shift) - 1u);
	uint32_t half = 1u << (shift - 1);
	if (rem > half || (rem == half && (h & 1u)))
		h++;
	return (uint16_t)(sign | h);
}

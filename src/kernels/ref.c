/* ref.c - the portable scalar kernels: the definition of qshard's output.
 *
 * Every other variant (x86/avx2.c, arm/neon.c) must reproduce these results
 * bit for bit, so each floating-point expression here is a fixed sequence
 * of separately rounded IEEE operations: no fused multiply-add, no
 * reassociation, and reductions only where the order cannot matter (min and
 * max of finite values; the sign of a zero minimum is normalised).
 */
#include <math.h>
#include <string.h>

#include "kernels.h"

/* Inlined here rather than calling qs_bf16_to_f32 per element: this is the
 * converter's hottest loop, and written branch-free it vectorizes. */
static void ref_bf16_to_f32(const uint16_t *restrict src, float *restrict dst, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t h = src[i];
		uint32_t u = h << 16;
		/* quiet NaNs: bit 31 of the difference is (h & 0x7fff) > 0x7f80 */
		u |= ((0x7f80u - (h & 0x7fffu)) >> 31) << 22;
		memcpy(&dst[i], &u, sizeof(u));
	}
}

static void ref_f16_to_f32(const uint16_t *src, float *dst, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = qs_f16_to_f32(src[i]);
}

static void ref_f32_to_bf16(const float *src, uint16_t *dst, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = qs_f32_to_bf16(src[i]);
}

static void ref_f32_to_f16(const float *src, uint16_t *dst, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = qs_f32_to_f16(src[i]);
}

static size_t ref_count_nonfinite(const float *x, size_t n)
{
	size_t bad = 0;
	/* 32-bit partial counts over blocks keep the loop one width so it
	 * vectorizes */
	for (size_t i = 0; i < n;) {
		size_t end = n - i > 65536 ? i + 65536 : n;
		uint32_t part = 0;
		for (; i < end; i++) {
			uint32_t u;
			memcpy(&u, &x[i], sizeof(u));
			part += (u & 0x7f800000u) == 0x7f800000u;
		}
		bad += part;
	}
	return bad;
}

/* ------------------------------------------------------------------ rtn */

#define F16_INF 0x7c00u
#define F16_MAX_F 65504.0f

/* Largest fp16 <= x, for finite x with |x| <= 65504.  A zero (of either
 * sign) gives +0, so the stored min never depends on which zero a SIMD
 * min-reduction happened to keep. */
static uint16_t f16_round_down(float x)
{
	uint16_t h = qs_f32_to_f16(x);
	if (qs_f16_to_f32(h) > x) {
		if ((h & 0x7fffu) == 0)
			h = 0x8001u;      /* below a zero: the smallest negative subnormal */
		else if (h & 0x8000u)
			h++;              /* negative: larger magnitude */
		else
			h--;
	}
	if (h == 0x8000u)
		h = 0;
	return h;
}

/* Smallest fp16 >= x for x >= 0 (may return Inf, 0x7c00). */
static uint16_t f16_round_up_pos(float x)
{
	uint16_t h = qs_f32_to_f16(x);
	if (h & 0x8000u)
		return 0;                 /* -0 */
	if (h < F16_INF && qs_f16_to_f32(h) < x)
		h++;
	return h;
}

/* Rounds q to the nearest integer code in 0..qmax, ties to even.  Clamping
 * first is the same as clamping after (rounding is monotone and both ends
 * are integers) and turns a NaN into 0 (the comparisons are false); then
 * for 0 <= q < 2^23, adding and subtracting 2^23 rounds exactly as
 * nearbyintf() does in the default mode, without a libm call or a
 * dependency on the current rounding mode.  Branch-free so it vectorizes. */
static inline uint8_t rtn_code(float q, float qmaxf)
{
	q = q > 0.0f ? q : 0.0f;
	q = q < qmaxf ? q : qmaxf;
	float r = (q + 0x1p23f) - 0x1p23f;
	return (uint8_t)(int32_t)r;
}

/* Min and max of a group, skipping NaNs (a comparison with NaN is false),
 * so a NaN weight never moves the range whatever its position; +Inf/-Inf
 * for a group of only NaNs.  Eight independent lanes: for non-NaN values
 * min and max do not depend on the order (a zero's sign is normalised
 * later), so SIMD variants may reduce in any order. */
static void group_range(const float *w, size_t n, float *mn_out, float *mx_out)
{
	float mn[8], mx[8];
	for (int l = 0; l < 8; l++) {
		mn[l] = INFINITY;
		mx[l] = -INFINITY;
	}
	size_t i = 0;
	for (; i + 8 <= n; i += 8)
		for (int l = 0; l < 8; l++) {
			mn[l] = w[i + l] < mn[l] ? w[i + l] : mn[l];
			mx[l] = w[i + l] > mx[l] ? w[i + l] : mx[l];
		}
	for (; i < n; i++) {
		mn[0] = w[i] < mn[0] ? w[i] : mn[0];
		mx[0] = w[i] > mx[0] ? w[i] : mx[0];
	}
	for (int l = 1; l < 8; l++) {
		mn[0] = mn[l] < mn[0] ? mn[l] : mn[0];
		mx[0] = mx[l] > mx[0] ? mx[l] : mx[0];
	}
	*mn_out = mn[0];
	*mx_out = mx[0];
}

/* One group of n weights: see rtn.c for the definition.  NaN weights are
 * left out of the range and get code 0; a group of only NaNs is min 0,
 * scale 0.  Returns 1 when the group's range does not fit fp16 (then
 * scale = 0, min = 0, codes 0). */
static size_t rtn_group(const float *restrict w, size_t n, unsigned bits,
			uint16_t *scale_out, uint16_t *min_out, uint8_t *restrict codes)
{
	float mn, mx;
	group_range(w, n, &mn, &mx);
	if (mn > mx) {
		mn = 0.0f;
		mx = 0.0f;
	}
	/* an infinite mx overflows the scale below */
	if (!(mn >= -F16_MAX_F && mn <= F16_MAX_F))
		goto overflow;

	unsigned qmax = (1u << bits) - 1u;
	float qmaxf = (float)qmax;
	uint16_t min16 = f16_round_down(mn);
	float minf = qs_f16_to_f32(min16);

	float s = (mx - minf) / qmaxf;
	uint16_t scale16 = f16_round_up_pos(s);
	for (;;) {
		if (scale16 >= F16_INF)
			goto overflow;
		float scalef = qs_f16_to_f32(scale16);
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
	float scalef = qs_f16_to_f32(scale16);
	for (size_t i = 0; i < n; i++) {
		float d = w[i] - minf;
		float q = d / scalef;
		codes[i] = rtn_code(q, qmaxf);
	}
	return 0;

overflow:
	*scale_out = 0;
	*min_out = 0;
	memset(codes, 0, n);
	return 1;
}

static size_t ref_rtn_quantize_row(const float *w, size_t n, unsigned group,
				   unsigned bits, uint16_t *scale, uint16_t *min,
				   uint8_t *codes)
{
	size_t overflowed = 0;
	if (group == 0 || bits == 0 || bits > 8)
		return n ? 1 : 0;
	for (size_t g = 0, i = 0; i < n; g++, i += group) {
		size_t len = n - i < group ? n - i : group;
		overflowed += rtn_group(w + i, len, bits, &scale[g], &min[g], codes + i);
	}
	return overflowed;
}

static void ref_rtn_dequantize_row(const uint8_t *codes, size_t n, unsigned group,
				   const uint16_t *scale, const uint16_t *min, float *w)
{
	if (group == 0)
		return;
	for (size_t g = 0, i = 0; i < n; g++, i += group) {
		size_t len = n - i < group ? n - i : group;
		float scalef = qs_f16_to_f32(scale[g]);
		float minf = qs_f16_to_f32(min[g]);
		for (size_t j = 0; j < len; j++) {
			float t = (float)codes[i + j] * scalef;
			w[i + j] = minf + t;
		}
	}
}

/* ---------------------------------------------------------- bit packing */

/* Blocks of 8 codes are exactly `bits` bytes, so the bulk of a row moves as
 * one 64-bit word per block whatever the width; a start offset of `off`
 * bits just shifts the word, carrying its top `off` bits into the next
 * block.  always_inline with a constant `bits` lets the compiler unroll
 * each width. */
static inline __attribute__((always_inline)) size_t
pack_blocks(const uint8_t *codes, size_t nblk, unsigned bits, uint8_t *p,
	    unsigned off, uint64_t *carry)
{
	const uint64_t mask = (1u << bits) - 1u;
	uint64_t c = *carry;
	for (size_t b = 0; b < nblk; b++) {
		const uint8_t *k = codes + 8 * b;
		uint64_t v = 0;
		for (unsigned i = 0; i < 8; i++)
			v |= (k[i] & mask) << (i * bits);
		uint64_t out = (v << off) | c;
		for (unsigned i = 0; i < bits; i++)
			p[i] = (uint8_t)(out >> (8 * i));
		c = off ? v >> (8 * bits - off) : 0;
		p += bits;
	}
	*carry = c;
	return nblk * bits;
}

/* Caller contract (kernels.h): the bits below bitpos in the first byte are
 * kept (read-modify-write), so consecutive rows can be packed back to back
 * without zeroing the destination; the unused high bits of the last byte
 * are zeroed; nothing past it is touched. */
static void ref_pack_bits(const uint8_t *codes, size_t n, unsigned bits,
			  uint8_t *dst, uint64_t bitpos)
{
	if (n == 0 || bits == 0 || bits > 8)
		return;
	uint8_t *p = dst + bitpos / 8;
	unsigned off = (unsigned)(bitpos % 8);
	uint64_t carry = off ? (uint64_t)(*p & ((1u << off) - 1u)) : 0;
	size_t nblk = n / 8;
	size_t adv;

	switch (bits) {
	case 1: adv = pack_blocks(codes, nblk, 1, p, off, &carry); break;
	case 2: adv = pack_blocks(codes, nblk, 2, p, off, &carry); break;
	case 3: adv = pack_blocks(codes, nblk, 3, p, off, &carry); break;
	case 4: adv = pack_blocks(codes, nblk, 4, p, off, &carry); break;
	case 5: adv = pack_blocks(codes, nblk, 5, p, off, &carry); break;
	case 6: adv = pack_blocks(codes, nblk, 6, p, off, &carry); break;
	case 7: adv = pack_blocks(codes, nblk, 7, p, off, &carry); break;
	default: adv = pack_blocks(codes, nblk, 8, p, off, &carry); break;
	}
	p += adv;

	/* tail: fewer than 8 codes, through a bit accumulator */
	const unsigned mask = (1u << bits) - 1u;
	uint32_t acc = (uint32_t)carry;
	unsigned nacc = off;
	for (size_t i = nblk * 8; i < n; i++) {
		acc |= (uint32_t)(codes[i] & mask) << nacc;
		nacc += bits;
		while (nacc >= 8) {
			*p++ = (uint8_t)acc;
			acc >>= 8;
			nacc -= 8;
		}
	}
	if (nacc)
		*p = (uint8_t)acc;
}

static inline __attribute__((always_inline)) size_t
unpack_blocks(const uint8_t *p, size_t nblk, unsigned bits, unsigned off,
	      uint8_t *codes)
{
	const uint64_t mask = (1u << bits) - 1u;
	for (size_t b = 0; b < nblk; b++) {
		uint64_t v = 0;
		for (unsigned i = 0; i < bits; i++)
			v |= (uint64_t)p[i] << (8 * i);
		/* with an offset the block's top `off` bits sit in the next
		 * byte, which then belongs to the stream */
		if (off)
			v = (v >> off) | ((uint64_t)p[bits] << (8 * bits - off));
		uint8_t *k = codes + 8 * b;
		for (unsigned i = 0; i < 8; i++)
			k[i] = (uint8_t)((v >> (i * bits)) & mask);
		p += bits;
	}
	return nblk * bits;
}

static void ref_unpack_bits(const uint8_t *src, uint64_t bitpos, size_t n,
			    unsigned bits, uint8_t *codes)
{
	if (n == 0 || bits == 0 || bits > 8)
		return;
	const uint8_t *p = src + bitpos / 8;
	unsigned off = (unsigned)(bitpos % 8);
	size_t nblk = n / 8;
	size_t adv;

	switch (bits) {
	case 1: adv = unpack_blocks(p, nblk, 1, off, codes); break;
	case 2: adv = unpack_blocks(p, nblk, 2, off, codes); break;
	case 3: adv = unpack_blocks(p, nblk, 3, off, codes); break;
	case 4: adv = unpack_blocks(p, nblk, 4, off, codes); break;
	case 5: adv = unpack_blocks(p, nblk, 5, off, codes); break;
	case 6: adv = unpack_blocks(p, nblk, 6, off, codes); break;
	case 7: adv = unpack_blocks(p, nblk, 7, off, codes); break;
	default: adv = unpack_blocks(p, nblk, 8, off, codes); break;
	}
	p += adv;

	/* tail: read bytes only as they are needed, never past the last bit */
	const unsigned mask = (1u << bits) - 1u;
	uint32_t acc = 0;
	unsigned nacc = 0;
	if (off && nblk * 8 < n) {
		acc = (uint32_t)(*p++ >> off);
		nacc = 8 - off;
	}
	for (size_t i = nblk * 8; i < n; i++) {
		if (nacc < bits) {
			acc |= (uint32_t)*p++ << nacc;
			nacc += 8;
		}
		codes[i] = (uint8_t)(acc & mask);
		acc >>= bits;
		nacc -= bits;
	}
}

const struct qs_kernels qs_kernels_ref = {
	.name = "ref",
	.bf16_to_f32 = ref_bf16_to_f32,
	.f16_to_f32 = ref_f16_to_f32,
	.f32_to_bf16 = ref_f32_to_bf16,
	.f32_to_f16 = ref_f32_to_f16,
	.count_nonfinite = ref_count_nonfinite,
	.rtn_quantize_row = ref_rtn_quantize_row,
	.rtn_dequantize_row = ref_rtn_dequantize_row,
	.pack_bits = ref_pack_bits,
	.unpack_bits = ref_unpack_bits,
	.adpq_quantize_row = qs_ref_adpq_quantize_row,
	.adpq_dequantize_row = qs_ref_adpq_dequantize_row,
	.pack_planes = qs_ref_pack_planes,
	.unpack_planes = qs_ref_unpack_planes,
	.nearest_code = qs_ref_nearest_code,
	.daq_eval = qs_ref_daq_eval,
	.daq_range = qs_ref_daq_range,
};

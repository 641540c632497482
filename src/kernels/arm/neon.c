/* neon.c - the kernel table for AArch64 Advanced SIMD (baseline there, so
 * no extra build flags beyond -ffp-contract=off; chosen by dispatch.c).
 *
 * Every function reproduces ref.c bit for bit: the same IEEE operations in
 * the same order on each element and no fused multiply-add (GCC's
 * vmulq_f32/vaddq_f32 are plain vector arithmetic it would fuse into FMLA
 * under the default -ffp-contract=fast).  FMIN/FMAX propagate NaNs and
 * FMINNM/FMAXNM order the zeros, neither is ref's `a < b ? a : b`, so
 * selections are a compare plus a bitwise select.  Conversions to and from
 * fp16 use FCVT, which with the default FPCR (round to nearest even, no
 * flush to zero, no default NaN, IEEE half) matches fp16.c, NaN payloads
 * included.  Tails go to the scalar reference.
 *
 * Static names carry a neon_ prefix: tests/unit/neon_driver.c compiles
 * this file in one unit together with ref.c and fp16.c.
 */
#include <arm_neon.h>
#include <math.h>
#include <string.h>

#include "bits_scalar.h"
#include "kernels.h"
#include "rtn_scalar.h"

/* ----------------------------------------------------------- conversions */

static void neon_bf16_to_f32(const uint16_t *src, float *dst, size_t n)
{
	const uint32x4_t absm = vdupq_n_u32(0x7fffffffu);
	const uint32x4_t inf = vdupq_n_u32(0x7f800000u);
	const uint32x4_t quiet = vdupq_n_u32(0x00400000u);
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		uint16x8_t h = vld1q_u16(src + i);
		uint32x4_t a = vshll_n_u16(vget_low_u16(h), 16);
		uint32x4_t b = vshll_high_n_u16(h, 16);
		a = vorrq_u32(a, vandq_u32(vcgtq_u32(vandq_u32(a, absm), inf), quiet));
		b = vorrq_u32(b, vandq_u32(vcgtq_u32(vandq_u32(b, absm), inf), quiet));
		vst1q_f32(dst + i, vreinterpretq_f32_u32(a));
		vst1q_f32(dst + i + 4, vreinterpretq_f32_u32(b));
	}
	qs_kernels_ref.bf16_to_f32(src + i, dst + i, n - i);
}

static void neon_f16_to_f32(const uint16_t *src, float *dst, size_t n)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(src + i));
		vst1q_f32(dst + i, vcvt_f32_f16(vget_low_f16(h)));
		vst1q_f32(dst + i + 4, vcvt_high_f32_f16(h));
	}
	qs_kernels_ref.f16_to_f32(src + i, dst + i, n - i);
}

static void neon_f32_to_bf16(const float *src, uint16_t *dst, size_t n)
{
	const uint32x4_t absm = vdupq_n_u32(0x7fffffffu);
	const uint32x4_t inf = vdupq_n_u32(0x7f800000u);
	const uint32x4_t bias = vdupq_n_u32(0x7fffu);
	const uint32x4_t one = vdupq_n_u32(1);
	const uint32x4_t quiet = vdupq_n_u32(0x0040u);
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		uint16x4_t r[2];
		for (int k = 0; k < 2; k++) {
			uint32x4_t u = vld1q_u32((const uint32_t *)(const void *)(src + i + 4 * k));
			uint32x4_t nan = vcgtq_u32(vandq_u32(u, absm), inf);
			uint32x4_t hi = vshrq_n_u32(u, 16);
			uint32x4_t rn = vaddq_u32(u, vaddq_u32(bias, vandq_u32(hi, one)));
			rn = vshrq_n_u32(rn, 16);
			r[k] = vmovn_u32(vbslq_u32(nan, vorrq_u32(hi, quiet), rn));
		}
		vst1q_u16(dst + i, vcombine_u16(r[0], r[1]));
	}
	qs_kernels_ref.f32_to_bf16(src + i, dst + i, n - i);
}

static void neon_f32_to_f16(const float *src, uint16_t *dst, size_t n)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		float16x4_t lo = vcvt_f16_f32(vld1q_f32(src + i));
		float16x8_t h = vcvt_high_f16_f32(lo, vld1q_f32(src + i + 4));
		vst1q_u16(dst + i, vreinterpretq_u16_f16(h));
	}
	qs_kernels_ref.f32_to_f16(src + i, dst + i, n - i);
}

static size_t neon_count_nonfinite(const float *x, size_t n)
{
	const uint32x4_t expo = vdupq_n_u32(0x7f800000u);
	size_t bad = 0;
	size_t i = 0;

	while (i + 4 <= n) {
		size_t nvec = (n - i) / 4;
		if (nvec > (1u << 24))
			nvec = 1u << 24;
		uint32x4_t acc = vdupq_n_u32(0);
		for (size_t v = 0; v < nvec; v++, i += 4) {
			uint32x4_t u = vld1q_u32((const uint32_t *)(const void *)(x + i));
			acc = vsubq_u32(acc, vceqq_u32(vandq_u32(u, expo), expo));
		}
		bad += (size_t)vaddlvq_u32(acc);
	}
	return bad + qs_kernels_ref.count_nonfinite(x + i, n - i);
}

/* decode_checked (decode_scalar.h), 8 elements a step; the NaN/Inf test
 * on the source bits, lane counts flushed before they could wrap. */
static QS_ALWAYS_INLINE size_t neon_decode_kind(unsigned kind, const void *src, float *dst,
						size_t n)
{
	const uint32x4_t absm = vdupq_n_u32(0x7fffffffu);
	const uint32x4_t inf = vdupq_n_u32(0x7f800000u);
	const uint32x4_t quiet = vdupq_n_u32(0x00400000u);
	const uint16x8_t e16 = vdupq_n_u16(kind == QS_SRC_KIND_BF16 ? 0x7f80u : 0x7c00u);
	const uint8_t *s = src;
	const size_t esz = kind == QS_SRC_KIND_F32 ? 4 : 2;
	size_t bad = 0, i = 0;

	while (i + 8 <= n) {
		size_t nvec = (n - i) / 8;
		if (nvec > 16384)
			nvec = 16384;
		uint16x8_t acc = vdupq_n_u16(0);
		uint32x4_t acc32 = vdupq_n_u32(0);
		for (size_t v = 0; v < nvec; v++, i += 8) {
			if (kind == QS_SRC_KIND_F32) {
				uint32x4_t a = vld1q_u32((const uint32_t *)(const void *)(s + 4 * i));
				uint32x4_t b = vld1q_u32((const uint32_t *)(const void *)(s + 4 * i + 16));
				acc32 = vsubq_u32(acc32, vceqq_u32(vandq_u32(a, inf), inf));
				acc32 = vsubq_u32(acc32, vceqq_u32(vandq_u32(b, inf), inf));
				vst1q_u32((uint32_t *)(void *)(dst + i), a);
				vst1q_u32((uint32_t *)(void *)(dst + i + 4), b);
				continue;
			}
			uint16x8_t h = vld1q_u16((const uint16_t *)(const void *)(s + 2 * i));
			acc = vsubq_u16(acc, vceqq_u16(vandq_u16(h, e16), e16));
			if (kind == QS_SRC_KIND_BF16) {
				/* as neon_bf16_to_f32 */
				uint32x4_t a = vshll_n_u16(vget_low_u16(h), 16);
				uint32x4_t b = vshll_high_n_u16(h, 16);
				a = vorrq_u32(a, vandq_u32(vcgtq_u32(vandq_u32(a, absm), inf), quiet));
				b = vorrq_u32(b, vandq_u32(vcgtq_u32(vandq_u32(b, absm), inf), quiet));
				vst1q_f32(dst + i, vreinterpretq_f32_u32(a));
				vst1q_f32(dst + i + 4, vreinterpretq_f32_u32(b));
			} else {
				float16x8_t f = vreinterpretq_f16_u16(h);
				vst1q_f32(dst + i, vcvt_f32_f16(vget_low_f16(f)));
				vst1q_f32(dst + i + 4, vcvt_high_f32_f16(f));
			}
		}
		bad += (size_t)vaddlvq_u16(acc) + (size_t)vaddlvq_u32(acc32);
	}
	return bad + qs_decode_checked_scalar(kind, s + esz * i, dst + i, n - i);
}

static size_t neon_decode_checked(unsigned kind, const void *src, float *dst, size_t n)
{
	switch (kind) {
	case QS_SRC_KIND_BF16:
		return neon_decode_kind(QS_SRC_KIND_BF16, src, dst, n);
	case QS_SRC_KIND_F16:
		return neon_decode_kind(QS_SRC_KIND_F16, src, dst, n);
	default:
		return neon_decode_kind(QS_SRC_KIND_F32, src, dst, n);
	}
}

/* ------------------------------------------------------------------ rtn */

static inline uint16_t neon_h_of(float x)
{
	float16x4_t h = vcvt_f16_f32(vdupq_n_f32(x));
	return vget_lane_u16(vreinterpret_u16_f16(h), 0);
}

static inline float neon_f_of(uint16_t h)
{
	return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

static inline uint32x4_t neon_code4(const float *w, float32x4_t vmin, float32x4_t vscale,
				    float32x4_t vqmax)
{
	const float32x4_t magic = vdupq_n_f32(0x1p23f);
	const float32x4_t zero = vdupq_n_f32(0.0f);
	float32x4_t q = vdivq_f32(vsubq_f32(vld1q_f32(w), vmin), vscale);
	q = vbslq_f32(vcgtq_f32(q, zero), q, zero);
	q = vbslq_f32(vcltq_f32(q, vqmax), q, vqmax);
	q = vsubq_f32(vaddq_f32(q, magic), magic);
	return vcvtq_u32_f32(q);
}

static void neon_range(const float *w, size_t n, float *mn_out, float *mx_out)
{
	float32x4_t mn0 = vdupq_n_f32(INFINITY), mn1 = mn0;
	float32x4_t mx0 = vdupq_n_f32(-INFINITY), mx1 = mx0;
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		float32x4_t a = vld1q_f32(w + i), b = vld1q_f32(w + i + 4);
		mn0 = vbslq_f32(vcltq_f32(a, mn0), a, mn0);
		mx0 = vbslq_f32(vcgtq_f32(a, mx0), a, mx0);
		mn1 = vbslq_f32(vcltq_f32(b, mn1), b, mn1);
		mx1 = vbslq_f32(vcgtq_f32(b, mx1), b, mx1);
	}
	/* the accumulators never hold a NaN, so FMINV/FMAXV are plain
	 * min/max here (which zero they keep does not matter) */
	float lo = vminvq_f32(vminq_f32(mn0, mn1));
	float hi = vmaxvq_f32(vmaxq_f32(mx0, mx1));
	for (; i < n; i++) {
		lo = w[i] < lo ? w[i] : lo;
		hi = w[i] > hi ? w[i] : hi;
	}
	*mn_out = lo;
	*mx_out = hi;
}

static void neon_codes(const float *w, size_t n, float minf, float scalef, float qmaxf,
		       uint8_t *codes)
{
	const float32x4_t vmin = vdupq_n_f32(minf);
	const float32x4_t vscale = vdupq_n_f32(scalef);
	const float32x4_t vqmax = vdupq_n_f32(qmaxf);
	size_t i = 0;

	for (; i + 16 <= n; i += 16) {
		uint16x8_t a = vcombine_u16(vmovn_u32(neon_code4(w + i, vmin, vscale, vqmax)),
					    vmovn_u32(neon_code4(w + i + 4, vmin, vscale, vqmax)));
		uint16x8_t b = vcombine_u16(vmovn_u32(neon_code4(w + i + 8, vmin, vscale, vqmax)),
					    vmovn_u32(neon_code4(w + i + 12, vmin, vscale, vqmax)));
		vst1q_u8(codes + i, vcombine_u8(vmovn_u16(a), vmovn_u16(b)));
	}
	qs_rtn_codes_scalar(w + i, n - i, minf, scalef, qmaxf, codes + i);
}

static size_t neon_rtn_group(const float *w, size_t n, unsigned bits, uint16_t *scale,
			     uint16_t *min, uint8_t *codes)
{
	return qs_rtn_group(w, n, bits, scale, min, codes, neon_range, neon_codes, neon_h_of,
			    neon_f_of);
}

static size_t neon_rtn_quantize_row(const float *w, size_t n, unsigned group, unsigned bits,
				    uint16_t *scale, uint16_t *min, uint8_t *codes)
{
	return qs_rtn_quantize_row(w, n, group, bits, scale, min, codes, neon_rtn_group);
}

static size_t neon_rtn_quantize_src(unsigned kind, const void *src, size_t n, unsigned group,
				    unsigned bits, int sanitize, uint16_t *scale, uint16_t *min,
				    uint8_t *codes, size_t *nonfinite)
{
	return qs_rtn_quantize_src(kind, src, n, group, bits, sanitize, scale, min, codes,
				   nonfinite, neon_decode_kind, neon_rtn_group);
}

static void neon_values(const uint8_t *codes, size_t len, float minf, float scalef, float *w)
{
	const float32x4_t vs = vdupq_n_f32(scalef);
	const float32x4_t vm = vdupq_n_f32(minf);
	size_t j = 0;
	for (; j + 8 <= len; j += 8) {
		uint16x8_t c = vmovl_u8(vld1_u8(codes + j));
		float32x4_t a = vcvtq_f32_u32(vmovl_u16(vget_low_u16(c)));
		float32x4_t b = vcvtq_f32_u32(vmovl_high_u16(c));
		vst1q_f32(w + j, vaddq_f32(vm, vmulq_f32(a, vs)));
		vst1q_f32(w + j + 4, vaddq_f32(vm, vmulq_f32(b, vs)));
	}
	qs_rtn_values_scalar(codes + j, len - j, minf, scalef, w + j);
}

static void neon_rtn_dequantize_row(const uint8_t *codes, size_t n, unsigned group,
				    const uint16_t *scale, const uint16_t *min, float *w)
{
	qs_rtn_dequantize_row(codes, n, group, scale, min, w, neon_values, neon_f_of);
}

/* ---------------------------------------------------------- bit packing */

/* Fast paths for 2, 3, 4 and 8 bits, 32 codes (4*bits bytes) at a time
 * from a byte-aligned start; the rest is ref's, continuing at the byte
 * boundary where the fast path stopped. */
static size_t neon_pack_fast(const uint8_t *codes, size_t n, unsigned bits, uint8_t *p)
{
	size_t i = 0;

	switch (bits) {
	case 2:
		for (; i + 32 <= n; i += 32, p += 8) {
			uint8x16_t x0 = vld1q_u8(codes + i), x1 = vld1q_u8(codes + i + 16);
			/* SLI keeps the destination's low bits and drops
			 * what shifts out of the inserted value, so pairs
			 * combine without masking */
			uint8x16_t a = vsliq_n_u8(vuzp1q_u8(x0, x1), vuzp2q_u8(x0, x1), 2);
			uint8x16_t b = vsliq_n_u8(vuzp1q_u8(a, a), vuzp2q_u8(a, a), 4);
			vst1_u8(p, vget_low_u8(b));
		}
		break;
	case 3: {
		static const uint8_t idx[16] = {0, 1, 2, 8, 9, 10, 16, 17, 18, 24, 25, 26,
						0xff, 0xff, 0xff, 0xff};
		const uint8x16_t tbl = vld1q_u8(idx);
		const uint8x16_t m3 = vdupq_n_u8(7);
		for (; i + 32 <= n; i += 32, p += 12) {
			uint8x16x2_t v;
			for (int k = 0; k < 2; k++) {
				uint8x16_t x = vandq_u8(vld1q_u8(codes + i + 16 * k), m3);
				/* 2 codes in 6 bits per u16, 4 in 12 per u32,
				 * 8 in 24 per u64 */
				uint16x8_t h = vreinterpretq_u16_u8(x);
				h = vandq_u16(vsraq_n_u16(h, h, 5), vdupq_n_u16(0x3f));
				uint32x4_t s = vreinterpretq_u32_u16(h);
				s = vandq_u32(vsraq_n_u32(s, s, 10), vdupq_n_u32(0xfff));
				uint64x2_t d = vreinterpretq_u64_u32(s);
				d = vsraq_n_u64(d, d, 20);
				v.val[k] = vreinterpretq_u8_u64(d);
			}
			uint8x16_t r = vqtbl2q_u8(v, tbl);
			uint32_t t = vgetq_lane_u32(vreinterpretq_u32_u8(r), 2);
			vst1_u8(p, vget_low_u8(r));
			memcpy(p + 8, &t, 4);
		}
		break;
	}
	case 4:
		for (; i + 32 <= n; i += 32, p += 16) {
			uint8x16_t x0 = vld1q_u8(codes + i), x1 = vld1q_u8(codes + i + 16);
			vst1q_u8(p, vsliq_n_u8(vuzp1q_u8(x0, x1), vuzp2q_u8(x0, x1), 4));
		}
		break;
	case 8:
		i = n;
		memcpy(p, codes, n);
		break;
	default:
		break;
	}
	return i;
}

static void neon_pack_bits(const uint8_t *codes, size_t n, unsigned bits, uint8_t *dst,
			   uint64_t bitpos)
{
	qs_pack_bits_with(codes, n, bits, dst, bitpos, neon_pack_fast);
}

static size_t neon_unpack_fast(const uint8_t *p, size_t n, unsigned bits, uint8_t *codes)
{
	size_t i = 0;

	switch (bits) {
	case 2: {
		const uint8x8_t m = vdup_n_u8(3);
		for (; i + 32 <= n; i += 32, p += 8) {
			uint8x8_t x = vld1_u8(p);
			uint8x8x2_t ab = vzip_u8(vand_u8(x, m), vand_u8(vshr_n_u8(x, 2), m));
			uint8x8x2_t cd = vzip_u8(vand_u8(vshr_n_u8(x, 4), m), vshr_n_u8(x, 6));
			uint16x4x2_t r0 = vzip_u16(vreinterpret_u16_u8(ab.val[0]),
						   vreinterpret_u16_u8(cd.val[0]));
			uint16x4x2_t r1 = vzip_u16(vreinterpret_u16_u8(ab.val[1]),
						   vreinterpret_u16_u8(cd.val[1]));
			vst1_u8(codes + i, vreinterpret_u8_u16(r0.val[0]));
			vst1_u8(codes + i + 8, vreinterpret_u8_u16(r0.val[1]));
			vst1_u8(codes + i + 16, vreinterpret_u8_u16(r1.val[0]));
			vst1_u8(codes + i + 24, vreinterpret_u8_u16(r1.val[1]));
		}
		break;
	}
	case 3: {
		/* u32 lane k holds codes 4k..4k+3: the two bytes from bit 12k,
		 * shifted right by 0 or 4 */
		static const uint8_t idx[2][16] = {
			{0, 1, 0xff, 0xff, 1, 2, 0xff, 0xff, 3, 4, 0xff, 0xff, 4, 5, 0xff, 0xff},
			{6, 7, 0xff, 0xff, 7, 8, 0xff, 0xff, 9, 10, 0xff, 0xff, 10, 11, 0xff, 0xff},
		};
		static const int32_t sh[4] = {0, -4, 0, -4};
		const uint8x16_t t0 = vld1q_u8(idx[0]), t1 = vld1q_u8(idx[1]);
		const int32x4_t shift = vld1q_s32(sh);
		const uint32x4_t m0 = vdupq_n_u32(7), m1 = vdupq_n_u32(7u << 8);
		const uint32x4_t m2 = vdupq_n_u32(7u << 16), m3 = vdupq_n_u32(7u << 24);
		for (; i + 32 <= n; i += 32, p += 12) {
			uint32_t t;
			memcpy(&t, p + 8, 4);
			uint8x16_t x = vcombine_u8(vld1_u8(p), vreinterpret_u8_u32(vdup_n_u32(t)));
			for (int k = 0; k < 2; k++) {
				uint32x4_t v = vreinterpretq_u32_u8(vqtbl1q_u8(x, k ? t1 : t0));
				v = vshlq_u32(v, shift);
				uint32x4_t r = vandq_u32(v, m0);
				r = vorrq_u32(r, vandq_u32(vshlq_n_u32(v, 5), m1));
				r = vorrq_u32(r, vandq_u32(vshlq_n_u32(v, 10), m2));
				r = vorrq_u32(r, vandq_u32(vshlq_n_u32(v, 15), m3));
				vst1q_u8(codes + i + 16 * k, vreinterpretq_u8_u32(r));
			}
		}
		break;
	}
	case 4: {
		const uint8x16_t m = vdupq_n_u8(15);
		for (; i + 32 <= n; i += 32, p += 16) {
			uint8x16_t x = vld1q_u8(p);
			uint8x16_t lo = vandq_u8(x, m), hi = vshrq_n_u8(x, 4);
			vst1q_u8(codes + i, vzip1q_u8(lo, hi));
			vst1q_u8(codes + i + 16, vzip2q_u8(lo, hi));
		}
		break;
	}
	case 8:
		i = n;
		memcpy(codes, p, n);
		break;
	default:
		break;
	}
	return i;
}

static void neon_unpack_bits(const uint8_t *src, uint64_t bitpos, size_t n, unsigned bits,
			     uint8_t *codes)
{
	qs_unpack_bits_with(src, bitpos, n, bits, codes, neon_unpack_fast);
}

const struct qs_kernels qs_kernels_neon = {
	.name = "neon",
	.bf16_to_f32 = neon_bf16_to_f32,
	.f16_to_f32 = neon_f16_to_f32,
	.f32_to_bf16 = neon_f32_to_bf16,
	.f32_to_f16 = neon_f32_to_f16,
	.count_nonfinite = neon_count_nonfinite,
	.decode_checked = neon_decode_checked,
	.rtn_quantize_row = neon_rtn_quantize_row,
	.rtn_quantize_src = neon_rtn_quantize_src,
	.rtn_dequantize_row = neon_rtn_dequantize_row,
	.pack_bits = neon_pack_bits,
	.unpack_bits = neon_unpack_bits,
	.adpq_quantize_row = qs_neon_adpq_quantize_row,
	.adpq_dequantize_row = qs_neon_adpq_dequantize_row,
	.pack_planes = qs_neon_pack_planes,
	.unpack_planes = qs_neon_unpack_planes,
	.gguf_quantize_row = qs_neon_gguf_quantize_row,
	.gguf_dequantize_row = qs_neon_gguf_dequantize_row,
	/* no NEON versions yet: the scalar definitions */
	.nearest_code = qs_ref_nearest_code,
	.daq_eval = qs_ref_daq_eval,
	.daq_range = qs_ref_daq_range,
};

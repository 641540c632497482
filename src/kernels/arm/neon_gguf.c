/* neon_gguf.c - the AArch64 NEON instance of the gguf kernels (gguf_impl.h
 * holds the one definition; this file maps its 8-lane vector type onto a
 * pair of float32x4_t).  Bit-identical to ref_gguf.c: min and max are
 * written as compare-and-select (`a < b ? a : b`), since FMIN/FMAX treat
 * NaN and signed zeros differently from the C expressions; FRINTN is
 * rintf in the default rounding mode; the reductions follow the same tree.
 * Transposed loads and code stores go through memory (exact moves). */
#include <arm_neon.h>
#include <math.h>
#include <string.h>

#include "kernels.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

typedef struct {
	float32x4_t lo, hi;
} v8;

typedef struct {
	uint32x4_t lo, hi;
} m8;

static inline v8 mk(float32x4_t lo, float32x4_t hi)
{
	v8 r = {lo, hi};
	return r;
}

static inline v8 v8_load(const float *p)
{
	return mk(vld1q_f32(p), vld1q_f32(p + 4));
}

static inline void v8_store(float *p, v8 a)
{
	vst1q_f32(p, a.lo);
	vst1q_f32(p + 4, a.hi);
}

static inline v8 v8_set1(float x)
{
	return mk(vdupq_n_f32(x), vdupq_n_f32(x));
}

static inline v8 v8_add(v8 a, v8 b)
{
	return mk(vaddq_f32(a.lo, b.lo), vaddq_f32(a.hi, b.hi));
}

static inline v8 v8_sub(v8 a, v8 b)
{
	return mk(vsubq_f32(a.lo, b.lo), vsubq_f32(a.hi, b.hi));
}

static inline v8 v8_mul(v8 a, v8 b)
{
	return mk(vmulq_f32(a.lo, b.lo), vmulq_f32(a.hi, b.hi));
}

/* FMLA: c + a * b rounded once */
static inline v8 v8_fma(v8 a, v8 b, v8 c)
{
	return mk(vfmaq_f32(c.lo, a.lo, b.lo), vfmaq_f32(c.hi, a.hi, b.hi));
}

static inline v8 v8_div(v8 a, v8 b)
{
	return mk(vdivq_f32(a.lo, b.lo), vdivq_f32(a.hi, b.hi));
}

static inline v8 v8_min(v8 a, v8 b)
{
	return mk(vbslq_f32(vcltq_f32(a.lo, b.lo), a.lo, b.lo),
		  vbslq_f32(vcltq_f32(a.hi, b.hi), a.hi, b.hi));
}

static inline v8 v8_max(v8 a, v8 b)
{
	return mk(vbslq_f32(vcgtq_f32(a.lo, b.lo), a.lo, b.lo),
		  vbslq_f32(vcgtq_f32(a.hi, b.hi), a.hi, b.hi));
}

static inline v8 v8_round(v8 a)
{
	return mk(vrndnq_f32(a.lo), vrndnq_f32(a.hi));
}

static inline v8 v8_abs(v8 a)
{
	return mk(vabsq_f32(a.lo), vabsq_f32(a.hi));
}

static inline float32x4_t ordered4(float32x4_t a)
{
	return vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(a), vceqq_f32(a, a)));
}

static inline v8 v8_ordered(v8 a)
{
	return mk(ordered4(a.lo), ordered4(a.hi));
}

static inline v8 v8_from_i8(const int8_t *p)
{
	int16x8_t h = vmovl_s8(vld1_s8(p));
	return mk(vcvtq_f32_s32(vmovl_s16(vget_low_s16(h))),
		  vcvtq_f32_s32(vmovl_s16(vget_high_s16(h))));
}

static inline void v8_load_t8(const float *p, unsigned stride, v8 *out)
{
	float t[8];
	for (unsigned i = 0; i < 8; i++) {
		for (unsigned j = 0; j < 8; j++)
			t[j] = p[j * stride + i];
		out[i] = v8_load(t);
	}
}

static inline void v8_store_u8(uint8_t *p, v8 a)
{
	float t[8];
	v8_store(t, a);
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(int)t[i];
}

static inline m8 mkm(uint32x4_t lo, uint32x4_t hi)
{
	m8 r = {lo, hi};
	return r;
}

static inline m8 v8_lt(v8 a, v8 b)
{
	return mkm(vcltq_f32(a.lo, b.lo), vcltq_f32(a.hi, b.hi));
}

static inline m8 v8_gt(v8 a, v8 b)
{
	return mkm(vcgtq_f32(a.lo, b.lo), vcgtq_f32(a.hi, b.hi));
}

static inline m8 v8_ge(v8 a, v8 b)
{
	return mkm(vcgeq_f32(a.lo, b.lo), vcgeq_f32(a.hi, b.hi));
}

static inline m8 m8_and(m8 a, m8 b)
{
	return mkm(vandq_u32(a.lo, b.lo), vandq_u32(a.hi, b.hi));
}

static inline m8 m8_or(m8 a, m8 b)
{
	return mkm(vorrq_u32(a.lo, b.lo), vorrq_u32(a.hi, b.hi));
}

static inline int m8_any(m8 a)
{
	return vmaxvq_u32(vorrq_u32(a.lo, a.hi)) != 0;
}

static inline v8 v8_sel(m8 m, v8 a, v8 b)
{
	return mk(vbslq_f32(m.lo, a.lo, b.lo), vbslq_f32(m.hi, a.hi, b.hi));
}

/* the fixed tree: (0,4) (1,5) (2,6) (3,7), then (s0,s2) (s1,s3), then both */
static inline float v8_hsum(v8 a)
{
	float32x4_t s = vaddq_f32(a.lo, a.hi);
	float32x2_t t = vadd_f32(vget_low_f32(s), vget_high_f32(s));
	return vget_lane_f32(t, 0) + vget_lane_f32(t, 1);
}

static inline float max2(float x, float y)
{
	return x > y ? x : y;
}

static inline float min2(float x, float y)
{
	return x < y ? x : y;
}

static inline float v8_hmax(v8 a)
{
	float t[8];
	v8_store(t, a);
	return max2(max2(max2(t[0], t[4]), max2(t[2], t[6])), max2(max2(t[1], t[5]), max2(t[3], t[7])));
}

static inline float v8_hmin(v8 a)
{
	float t[8];
	v8_store(t, a);
	return min2(min2(min2(t[0], t[4]), min2(t[2], t[6])), min2(min2(t[1], t[5]), min2(t[3], t[7])));
}

#define QS_GGUF_FN(name) qs_neon_gguf_##name
#include "gguf_impl.h"

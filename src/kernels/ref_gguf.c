/* ref_gguf.c - the portable scalar instance of the gguf kernels
 * (gguf_impl.h holds the one definition; this file supplies its 8-lane
 * vector type as a plain array, each lane one separately rounded IEEE
 * operation, so every SIMD instance must agree with it bit for bit). */
#include <math.h>
#include <string.h>

#include "kernels.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

typedef struct {
	float v[8];
} v8;

static inline v8 v8_load(const float *p)
{
	v8 r;
	memcpy(r.v, p, sizeof(r.v));
	return r;
}

static inline void v8_store(float *p, v8 a)
{
	memcpy(p, a.v, sizeof(a.v));
}

static inline v8 v8_set1(float x)
{
	v8 r;
	for (int i = 0; i < 8; i++)
		r.v[i] = x;
	return r;
}

#define V8_BINARY(name, expr)                       \
	static inline v8 name(v8 a, v8 b)           \
	{                                           \
		v8 r;                               \
		for (int i = 0; i < 8; i++) {       \
			float x = a.v[i], y = b.v[i]; \
			r.v[i] = (expr);            \
		}                                   \
		return r;                           \
	}
V8_BINARY(v8_add, x + y)
V8_BINARY(v8_sub, x - y)
V8_BINARY(v8_mul, x * y)
V8_BINARY(v8_min, x < y ? x : y)
V8_BINARY(v8_max, x > y ? x : y)
#undef V8_BINARY

/* one rounding (C99 fmaf), as VFMADD and FMLA */
static inline v8 v8_fma(v8 a, v8 b, v8 c)
{
	for (int i = 0; i < 8; i++)
		c.v[i] = fmaf(a.v[i], b.v[i], c.v[i]);
	return c;
}

static inline v8 v8_round(v8 a)
{
	for (int i = 0; i < 8; i++)
		a.v[i] = rintf(a.v[i]);
	return a;
}

static inline v8 v8_abs(v8 a)
{
	for (int i = 0; i < 8; i++)
		a.v[i] = fabsf(a.v[i]);
	return a;
}

static inline v8 v8_ordered(v8 a)
{
	for (int i = 0; i < 8; i++)
		a.v[i] = a.v[i] == a.v[i] ? a.v[i] : 0.0f;
	return a;
}

static inline v8 v8_from_i8(const int8_t *p)
{
	v8 r;
	for (int i = 0; i < 8; i++)
		r.v[i] = (float)p[i];
	return r;
}

static inline v8 v8_div(v8 a, v8 b)
{
	for (int i = 0; i < 8; i++)
		a.v[i] = a.v[i] / b.v[i];
	return a;
}

/* out[i] lane j = p[j * stride + i], i < 8 */
static inline void v8_load_t8(const float *p, unsigned stride, v8 *out)
{
	for (unsigned i = 0; i < 8; i++)
		for (unsigned j = 0; j < 8; j++)
			out[i].v[j] = p[j * stride + i];
}

static inline void v8_store_u8(uint8_t *p, v8 a)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(int)a.v[i];
}

typedef struct {
	unsigned char v[8];
} m8;

#define M8_CMP(name, op)                           \
	static inline m8 name(v8 a, v8 b)          \
	{                                          \
		m8 r;                              \
		for (int i = 0; i < 8; i++)        \
			r.v[i] = a.v[i] op b.v[i]; \
		return r;                          \
	}
M8_CMP(v8_lt, <)
M8_CMP(v8_gt, >)
M8_CMP(v8_ge, >=)
#undef M8_CMP

static inline m8 m8_and(m8 a, m8 b)
{
	for (int i = 0; i < 8; i++)
		a.v[i] = a.v[i] && b.v[i];
	return a;
}

static inline m8 m8_or(m8 a, m8 b)
{
	for (int i = 0; i < 8; i++)
		a.v[i] = a.v[i] || b.v[i];
	return a;
}

static inline int m8_any(m8 a)
{
	int r = 0;
	for (int i = 0; i < 8; i++)
		r |= a.v[i];
	return r;
}

static inline v8 v8_sel(m8 m, v8 a, v8 b)
{
	for (int i = 0; i < 8; i++)
		b.v[i] = m.v[i] ? a.v[i] : b.v[i];
	return b;
}

/* the fixed tree of gguf_impl.h */
static inline float v8_hsum(v8 a)
{
	float s0 = a.v[0] + a.v[4], s1 = a.v[1] + a.v[5];
	float s2 = a.v[2] + a.v[6], s3 = a.v[3] + a.v[7];
	return (s0 + s2) + (s1 + s3);
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
	float s0 = max2(a.v[0], a.v[4]), s1 = max2(a.v[1], a.v[5]);
	float s2 = max2(a.v[2], a.v[6]), s3 = max2(a.v[3], a.v[7]);
	return max2(max2(s0, s2), max2(s1, s3));
}

static inline float v8_hmin(v8 a)
{
	float s0 = min2(a.v[0], a.v[4]), s1 = min2(a.v[1], a.v[5]);
	float s2 = min2(a.v[2], a.v[6]), s3 = min2(a.v[3], a.v[7]);
	return min2(min2(s0, s2), min2(s1, s3));
}

#define QS_GGUF_FN(name) qs_ref_gguf_##name
#include "gguf_impl.h"

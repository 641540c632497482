/* avx2_gguf.c - the AVX2 instance of the gguf kernels (gguf_impl.h holds
 * the one definition; this file maps its 8-lane vector type onto __m256).
 * Bit-identical to ref_gguf.c: the same element-wise operations (MINPS and
 * MAXPS are `a < b ? a : b` and `a > b ? a : b`, ROUNDPS with nearest-even
 * is rintf in the default rounding mode) and the same reduction tree. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

typedef __m256 v8;

static inline v8 v8_load(const float *p)
{
	return _mm256_loadu_ps(p);
}

static inline void v8_store(float *p, v8 a)
{
	_mm256_storeu_ps(p, a);
}

static inline v8 v8_set1(float x)
{
	return _mm256_set1_ps(x);
}

static inline v8 v8_add(v8 a, v8 b)
{
	return _mm256_add_ps(a, b);
}

static inline v8 v8_sub(v8 a, v8 b)
{
	return _mm256_sub_ps(a, b);
}

static inline v8 v8_mul(v8 a, v8 b)
{
	return _mm256_mul_ps(a, b);
}

static inline v8 v8_min(v8 a, v8 b)
{
	return _mm256_min_ps(a, b);
}

static inline v8 v8_max(v8 a, v8 b)
{
	return _mm256_max_ps(a, b);
}

static inline v8 v8_round(v8 a)
{
	return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

static inline v8 v8_abs(v8 a)
{
	return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a);
}

static inline v8 v8_ordered(v8 a)
{
	return _mm256_and_ps(a, _mm256_cmp_ps(a, a, _CMP_ORD_Q));
}

static inline v8 v8_from_i8(const int8_t *p)
{
	__m128i b = _mm_loadl_epi64((const __m128i *)(const void *)p);
	return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
}

static inline __m128 fold(__m256 a, int op)
{
	__m128 lo = _mm256_castps256_ps128(a), hi = _mm256_extractf128_ps(a, 1);
	/* lanes (0,4) (1,5) (2,6) (3,7), then (s0,s2) (s1,s3), then the two */
	__m128 s = op == 0 ? _mm_add_ps(lo, hi) : op == 1 ? _mm_max_ps(lo, hi) : _mm_min_ps(lo, hi);
	__m128 t = _mm_movehl_ps(s, s);
	__m128 u = op == 0 ? _mm_add_ps(s, t) : op == 1 ? _mm_max_ps(s, t) : _mm_min_ps(s, t);
	__m128 v = _mm_shuffle_ps(u, u, 1);
	return op == 0 ? _mm_add_ss(u, v) : op == 1 ? _mm_max_ss(u, v) : _mm_min_ss(u, v);
}

static inline float v8_hsum(v8 a)
{
	return _mm_cvtss_f32(fold(a, 0));
}

static inline float v8_hmax(v8 a)
{
	return _mm_cvtss_f32(fold(a, 1));
}

static inline float v8_hmin(v8 a)
{
	return _mm_cvtss_f32(fold(a, 2));
}

#define QS_GGUF_FN(name) qs_avx2_gguf_##name
#include "gguf_impl.h"

/* fp16_scalar.h - the directed fp16 roundings every rtn-style grid needs,
 * defined once for ref.c, ref_adpq.c and the SIMD variants.
 *
 * Each takes the variant's own round-to-nearest conversions (h_of, f_of):
 * ref passes qs_f32_to_f16/qs_f16_to_f32, AVX2 its F16C instructions, NEON
 * its FCVT lanes; all are bit-identical (test_simd checks the edge cases),
 * and with a constant argument the call is inlined to the instruction.
 * Written with selects rather than branches: which way a group's min or
 * scale rounds is data-dependent, and the mispredictions used to cost more
 * than all the per-weight arithmetic of a 128-weight group (AVX2).
 */
#ifndef QS_FP16_SCALAR_H
#define QS_FP16_SCALAR_H

#include <stdint.h>

#define QS_F16_INF 0x7c00u
#define QS_F16_MAX_F 65504.0f

typedef uint16_t (*qs_to_f16_fn)(float x);
typedef float (*qs_from_f16_fn)(uint16_t h);

#define QS_ALWAYS_INLINE inline __attribute__((always_inline))

/* Largest fp16 <= x, for finite x with |x| <= 65504.  A zero (of either
 * sign) gives +0, so a stored min never depends on which zero a SIMD
 * min-reduction happened to keep. */
static QS_ALWAYS_INLINE uint16_t qs_f16_round_down(float x, qs_to_f16_fn h_of,
						   qs_from_f16_fn f_of)
{
	unsigned h = h_of(x);
	unsigned lower = (h & 0x7fffu) == 0 ? 0x8001u  /* below a zero: the smallest negative subnormal */
			 : (h & 0x8000u) ? h + 1u      /* negative: larger magnitude */
					 : h - 1u;
	h = f_of((uint16_t)h) > x ? lower : h;
	return (uint16_t)(h == 0x8000u ? 0u : h);
}

/* Smallest fp16 >= x for x >= 0 (QS_F16_INF when too large; -0 gives +0). */
static QS_ALWAYS_INLINE uint16_t qs_f16_round_up_pos(float x, qs_to_f16_fn h_of,
						     qs_from_f16_fn f_of)
{
	unsigned h = h_of(x);
	/* a negative h (only -0 here) is above QS_F16_INF as an unsigned, so
	 * it is never bumped, then becomes +0 */
	h += (unsigned)(h < QS_F16_INF) & (unsigned)(f_of((uint16_t)h) < x);
	return (uint16_t)(h & 0x8000u ? 0u : h);
}

#endif /* QS_FP16_SCALAR_H */

/* decode_src_check.h - the comparison behind test_simd's and neon_driver's
 * decode_checked and rtn_quantize_src checks (included by both; no cmocka
 * here so the cross-built NEON driver can use it).
 *
 * For every source kind (bf16, f16, f32), lengths 0..300 and a few large
 * ones, unaligned sources and random bit patterns (NaN, Inf, denormals)
 * as well as ordinary weights: K's decode_checked equals ref's, ref's
 * equals the two-pass definition (bf16_to_f32 / f16_to_f32 / copy, then
 * count_nonfinite), and K's rtn_quantize_src (sanitize off and on) equals
 * ref's decode_checked [+ qs_sanitize_scalar] + rtn_quantize_row.
 * Returns the number of mismatches; the first is described in what.
 */
#ifndef QS_DECODE_SRC_CHECK_H
#define QS_DECODE_SRC_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode_scalar.h"
#include "kernels.h"

static uint64_t dsc_state = 0x9e3779b97f4a7c15ull;
static uint64_t dsc_rnd(void)
{
	dsc_state ^= dsc_state >> 12;
	dsc_state ^= dsc_state << 25;
	dsc_state ^= dsc_state >> 27;
	return dsc_state * 0x2545f4914f6cdd1dull;
}

static int dsc_fail(int *bad, char *what, size_t wl, const char *name, unsigned kind,
		    size_t n, unsigned x)
{
	if ((*bad)++ == 0)
		snprintf(what, wl, "%s kind %u n=%zu (%u)", name, kind, n, x);
	return 0;
}

/* Source bytes of n elements of kind: mode 0 random bits, 1 weights-like
 * values (normal-ish, some huge, some exactly zero), 2 weights with a
 * sprinkling of NaN/Inf. */
static void dsc_fill(unsigned kind, uint8_t *src, size_t n, int mode)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t u = (uint32_t)dsc_rnd();
		if (mode) {
			float f = ((float)(int32_t)(u & 0xffffff) - 8388608.0f) * 0x1p-26f;
			if ((u >> 24) == 7)
				f *= 30000.0f;
			if ((u >> 24) == 9)
				f = 0.0f;
			if (mode == 2 && (u >> 24) == 11)
				f = (u & 1) ? INFINITY : -INFINITY;
			if (mode == 2 && (u >> 24) == 13)
				f = NAN;
			memcpy(&u, &f, 4);
			if (kind == QS_SRC_KIND_BF16)
				u = qs_f32_to_bf16(f);
			else if (kind == QS_SRC_KIND_F16)
				u = qs_f32_to_f16(f);
		}
		if (kind == QS_SRC_KIND_F32)
			memcpy(src + 4 * i, &u, 4);
		else {
			uint16_t h = (uint16_t)u;
			memcpy(src + 2 * i, &h, 2);
		}
	}
}

static int decode_src_check(const struct qs_kernels *R, const struct qs_kernels *K, char *what,
			    size_t wl)
{
	static const size_t big[] = {511, 1024, 4099, 65536 + 37, 300000};
	static const unsigned groups[] = {32, 64, 128, 256, 1, 7, 13, 100, 1024};
	const size_t ngroups = sizeof(groups) / sizeof(groups[0]);
	int bad = 0;
	for (unsigned kind = 0; kind < 3; kind++)
		for (size_t li = 0; li < 301 + sizeof(big) / sizeof(big[0]); li++) {
			size_t n = li <= 300 ? li : big[li - 301];
			size_t esz = kind == QS_SRC_KIND_F32 ? 4 : 2, off = 1 + li % 3;
			uint8_t *raw = malloc(n * esz + off + 1);
			float *a = malloc(n * 4 + 4), *b = malloc(n * 4 + 4);
			uint8_t *src = raw + off; /* never aligned to the element */
			int mode = (int)(li % 3);
			dsc_fill(kind, src, n, mode);
			size_t ca = R->decode_checked(kind, src, a, n);
			size_t cb = K->decode_checked(kind, src, b, n);
			if (ca != cb || memcmp(a, b, n * 4))
				dsc_fail(&bad, what, wl, "decode_checked", kind, n, (unsigned)ca);
			/* the two-pass definition, from an aligned copy */
			uint16_t *h = malloc(n * 4 + 4);
			memcpy(h, src, n * esz);
			if (kind == QS_SRC_KIND_BF16)
				R->bf16_to_f32(h, b, n);
			else if (kind == QS_SRC_KIND_F16)
				R->f16_to_f32(h, b, n);
			else
				memcpy(b, h, n * 4);
			if (ca != R->count_nonfinite(b, n) || memcmp(a, b, n * 4))
				dsc_fail(&bad, what, wl, "decode_checked vs two passes", kind, n, 0);
			free(h);

			/* rtn from the source vs from ref's decoded f32 */
			unsigned group = groups[(li + kind) % ngroups];
			unsigned bits = 1 + (unsigned)(li % 8);
			size_t ng = group ? n / group + (n % group != 0) : 0;
			uint16_t *s1 = calloc(ng + 1, 2), *s2 = calloc(ng + 1, 2);
			uint16_t *m1 = calloc(ng + 1, 2), *m2 = calloc(ng + 1, 2);
			uint8_t *c1 = calloc(n + 1, 1), *c2 = calloc(n + 1, 1);
			for (int sanitize = 0; sanitize < 2; sanitize++) {
				R->decode_checked(kind, src, a, n);
				if (sanitize)
					qs_sanitize_scalar(a, n);
				size_t o1 = R->rtn_quantize_row(a, n, group, bits, s1, m1, c1);
				size_t nf = 5;
				size_t o2 = K->rtn_quantize_src(kind, src, n, group, bits, sanitize, s2,
								m2, c2, &nf);
				if (o1 != o2 || nf != 5 + ca || memcmp(s1, s2, ng * 2) ||
				    memcmp(m1, m2, ng * 2) || memcmp(c1, c2, n))
					dsc_fail(&bad, what, wl,
						 sanitize ? "rtn_quantize_src sanitize" : "rtn_quantize_src",
						 kind, n, group * 16 + bits);
			}
			free(s1);
			free(s2);
			free(m1);
			free(m2);
			free(c1);
			free(c2);
			free(raw);
			free(a);
			free(b);
		}
	return bad;
}

#endif /* QS_DECODE_SRC_CHECK_H */

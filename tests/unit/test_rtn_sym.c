/* test_rtn_sym.c - the symmetric rtn scheme (src/schemes/rtn_sym.c): its
 * payload bytes for a hand-computed group, the error bound, zero kept
 * exact, short last groups and the failures. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "qshard.h"
#include "scheme.h"

static struct qs_scheme parse(const char *spec)
{
	struct qs_scheme s;
	assert_int_equal(qs_scheme_parse(spec, &s, NULL), 0);
	return s;
}

/* Quantizes w into a fresh payload (returned, or NULL on failure: *rc). */
static uint8_t *quantize(const struct qs_scheme *s, const float *w, uint64_t rows,
			 uint64_t cols, int *rc)
{
	uint64_t n = s->ops->payload_size(s, rows, cols);
	uint8_t *out = calloc(1, n + 1);
	void *scratch = malloc(s->ops->scratch_size(s, rows, cols));
	*rc = s->ops->quantize(s, w, rows, cols, out, scratch);
	free(scratch);
	if (*rc) {
		free(out);
		return NULL;
	}
	return out;
}

static void dequantize(const struct qs_scheme *s, const uint8_t *in, uint64_t rows,
		       uint64_t cols, float *w)
{
	void *scratch = malloc(s->ops->scratch_size(s, rows, cols));
	assert_int_equal(s->ops->dequantize(s, in, rows, cols, w, scratch), 0);
	free(scratch);
}

static void test_canonical_and_size(void **state)
{
	(void)state;
	struct qs_scheme s = parse("rtn_sym");
	assert_string_equal(s.text, "rtn_sym:bits=4,group=128");
	s = parse("rtn_sym:group=32,bits=3");
	assert_string_equal(s.text, "rtn_sym:bits=3,group=32");
	/* 2 rows of 100: 4 groups a row (the last of 4), 2*2*4 scale bytes,
	 * 600 bits of codes */
	assert_int_equal(s.ops->payload_size(&s, 2, 100), 16 + 75);
	struct qs_diag d;
	assert_int_equal(qs_scheme_parse("rtn_sym:bits=5", &s, &d), -QS_EUSAGE);
}

/* amax 7 at 4 bits: scale exactly 1, codes w + 8, packed two a byte. */
static void test_hand_group(void **state)
{
	(void)state;
	struct qs_scheme s = parse("rtn_sym:bits=4,group=32");
	float w[32] = {0}, back[32];
	for (int i = 0; i < 15; i++)
		w[i] = (float)(i - 7);
	w[15] = 2.5f;   /* ties to even: 2 */
	w[16] = -3.5f;  /* -4 */
	int rc;
	uint8_t *p = quantize(&s, w, 1, 32, &rc);
	assert_non_null(p);
	assert_int_equal(p[0], 0x00);  /* fp16 1.0 = 0x3c00, little-endian */
	assert_int_equal(p[1], 0x3c);
	assert_int_equal(p[2], 0x1 | 0x2 << 4);  /* codes of -7 and -6 */
	assert_int_equal(p[2 + 7] & 0xf0, (uint8_t)((2 + 8) << 4));  /* w[15] */
	assert_int_equal(p[2 + 8] & 0x0f, -4 + 8);                   /* w[16] */
	assert_int_equal(p[2 + 8] >> 4, 8);                          /* 0 is code 8 */
	dequantize(&s, p, 1, 32, back);
	for (int i = 0; i < 15; i++)
		assert_true(back[i] == w[i]);
	assert_true(back[15] == 2.0f && back[16] == -4.0f);
	for (int i = 17; i < 32; i++)
		assert_true(back[i] == 0.0f);  /* zero stays exactly zero */
	free(p);
}

/* |w' - w| <= scale/2 for every group, every width, short last groups. */
static void test_error_bound(void **state)
{
	(void)state;
	static const char *const specs[] = {"rtn_sym:bits=2,group=32", "rtn_sym:bits=3,group=64",
					    "rtn_sym:bits=4,group=128", "rtn_sym:bits=8,group=256"};
	const uint64_t rows = 3, cols = 300;
	float *w = malloc(rows * cols * sizeof(float)), *back = malloc(rows * cols * sizeof(float));
	uint32_t x = 7;
	for (uint64_t i = 0; i < rows * cols; i++) {
		x = x * 1664525u + 1013904223u;
		w[i] = ((float)(x >> 8) / (float)(1u << 24) - 0.5f) * (float)(1 + i % 7);
	}
	w[5] = 0.0f;
	for (size_t k = 0; k < sizeof(specs) / sizeof(specs[0]); k++) {
		struct qs_scheme s = parse(specs[k]);
		unsigned bits, group;
		assert_int_equal(qs_scheme_param(&s, "bits", &bits), 0);
		assert_int_equal(qs_scheme_param(&s, "group", &group), 0);
		int rc;
		uint8_t *p = quantize(&s, w, rows, cols, &rc);
		assert_non_null(p);
		dequantize(&s, p, rows, cols, back);
		uint64_t ng = (cols + group - 1) / group;
		for (uint64_t r = 0; r < rows; r++)
			for (uint64_t c = 0; c < cols; c++) {
				uint16_t h = (uint16_t)(p[2 * (r * ng + c / group)] |
							p[2 * (r * ng + c / group) + 1] << 8);
				float sc = qs_f16_to_f32(h), amax = 0;
				for (uint64_t j = c / group * group; j < cols && j < (c / group + 1) * group; j++)
					amax = fmaxf(amax, fabsf(w[r * cols + j]));
				/* the smallest fp16 scale that reaches amax */
				assert_true(sc * (float)((1 << (bits - 1)) - 1) >= amax);
				float e = fabsf(back[r * cols + c] - w[r * cols + c]);
				assert_true(e <= sc / 2 * (1 + 1e-4f));
			}
		assert_true(back[5] == 0.0f);
		free(p);
	}
	free(w);
	free(back);
}

static void test_unencodable(void **state)
{
	(void)state;
	struct qs_scheme s = parse("rtn_sym:bits=2,group=32");
	float w[32] = {0};
	int rc;
	w[3] = 1e5f;  /* 2 bits: scale = amax / 1, past fp16 */
	assert_null(quantize(&s, w, 1, 32, &rc));
	assert_int_equal(rc, -QS_ETOOBIG);
	w[3] = INFINITY;
	assert_null(quantize(&s, w, 1, 32, &rc));
	assert_int_equal(rc, -QS_ETOOBIG);
	w[3] = 60000.0f;  /* fits at 4 bits: 60000/7 */
	s = parse("rtn_sym:bits=4,group=32");
	uint8_t *p = quantize(&s, w, 1, 32, &rc);
	assert_non_null(p);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_canonical_and_size),
		cmocka_unit_test(test_hand_group),
		cmocka_unit_test(test_error_bound),
		cmocka_unit_test(test_unencodable),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

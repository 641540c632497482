/* test_claq.c - the claq scheme: parameters, payload size against the
 * formula, a hand-checked column, round trips with a canary, bit
 * allocation (outliers and importance), reservation, corrupt payloads. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "qshard.h"
#include "scheme.h"

static uint64_t rng_state = 0x243f6a8885a308d3ull;
static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}
static float grand(void)
{
	double u = ((double)(rnd() >> 11) + 1) * 0x1p-53, v = (double)(rnd() >> 11) * 0x1p-53;
	return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

static struct qs_scheme make(const char *spec)
{
	struct qs_scheme s;
	struct qs_diag d;
	memset(&d, 0, sizeof(d));
	if (qs_scheme_parse(spec, &s, &d))
		fail_msg("%s: %s", spec, d.msg);
	return s;
}

static uint8_t *roundtrip(const struct qs_scheme *s, const float *w, size_t rows, size_t cols,
			  const float *imp, float *back)
{
	uint64_t p = s->ops->payload_size(s, rows, cols);
	void *scr = malloc(s->ops->scratch_size(s, rows, cols));
	uint8_t *out = malloc(p + 16);
	memset(out, 0xA5, p + 16);
	if (imp) {
		struct qs_tensor_stats st = {.name = "t", .cols = cols, .importance = imp};
		void *prep = malloc(s->ops->prep_size(s, cols));
		assert_int_equal(s->ops->prepare(s, &st, prep, NULL), 0);
		assert_int_equal(s->ops->quantize_prep(s, prep, w, rows, cols, out, scr), 0);
		free(prep);
	} else {
		assert_int_equal(s->ops->quantize(s, w, rows, cols, out, scr), 0);
	}
	for (size_t i = 0; i < 16; i++)
		assert_int_equal(out[p + i], 0xA5);
	assert_int_equal(s->ops->dequantize(s, out, rows, cols, back, scr), 0);
	free(scr);
	return out;
}

static void test_parse(void **state)
{
	(void)state;
	assert_string_equal(make("claq").text, "claq:bits=3.1,reserve=0.005,iters=16");
	assert_string_equal(make("claq:bits=2,reserve=0,iters=3").text,
			    "claq:bits=2.0,reserve=0,iters=3");
	assert_string_equal(make("claq:bits=4.0,reserve=0.05").text,
			    "claq:bits=4.0,reserve=0.05,iters=16");
	assert_string_equal(make("claq:reserve=0.0125").text,
			    "claq:bits=3.1,reserve=0.0125,iters=16");
	static const char *const bad[][2] = {
		{"claq:bits=4.1", "bits must be 2.0..4.0"},
		{"claq:bits=1.9", "bits must be"},
		{"claq:bits=3.15", "one decimal"},
		{"claq:bits=3.", "bits must be"},
		{"claq:bits=-3", "bits must be"},
		{"claq:reserve=0.06", "reserve must be 0..0.05"},
		{"claq:reserve=0.00001", "at most 4 decimals"},
		{"claq:iters=0", "iters must be 1..64"},
		{"claq:group=64", "unknown parameter 'group'"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		struct qs_scheme s;
		struct qs_diag d;
		memset(&d, 0, sizeof(d));
		assert_int_equal(qs_scheme_parse(bad[i][0], &s, &d), -QS_EUSAGE);
		if (!strstr(d.msg, bad[i][1]))
			fail_msg("%s: '%s'", bad[i][0], d.msg);
	}
}

static void test_payload_size(void **state)
{
	(void)state;
	/* R=100, C=20: H = 2, k = 1, L = 7: 3 + 2(18*8 + 2*16) + ceil(140/8) +
	 * 40 + ceil(100*62/8) */
	struct qs_scheme s = make("claq:bits=3.1,reserve=0.01");
	assert_int_equal(s.ops->payload_size(&s, 100, 20), 3 + 352 + 18 + 40 + 775);
	s = make("claq:bits=2.0,reserve=0");
	assert_int_equal(s.ops->payload_size(&s, 7, 9), 2 + 2 * 9 * 4 + 0 + 0 + (7 * 18 + 7) / 8);
}

/* One column of 20 rows, 4 distinct values plus one outlier: 2-bit k-means
 * finds the values exactly and the outlier is reserved. */
static void test_hand_column(void **state)
{
	(void)state;
	static const float col[20] = {1, 2, 5, 9, 1, 2, 5, 9, 1, 2, 5, 9, 1, 2, 5, 9,
				      1, 2, 40, 5};
	float back[20];
	struct qs_scheme s = make("claq:bits=2.0,reserve=0.05");
	uint8_t *out = roundtrip(&s, col, 20, 1, NULL, back);
	assert_memory_equal(col, back, sizeof(col));
	/* bitmap 0, code book 1 2 5 9, index 18 (5 bits), value 40 */
	assert_int_equal(out[0], 0);
	assert_int_equal(out[1] | out[2] << 8, 0x3c00);  /* 1.0 */
	assert_int_equal(out[7] | out[8] << 8, 0x4880);  /* 9.0 */
	assert_int_equal(out[9], 18);
	assert_int_equal(out[10] | out[11] << 8, 0x5100); /* 40.0 */
	free(out);
}

static double col_err(const float *a, const float *b, size_t rows, size_t cols, size_t j)
{
	double e = 0;
	for (size_t i = 0; i < rows; i++) {
		double d = (double)a[i * cols + j] - b[i * cols + j];
		e += d * d;
	}
	return e;
}

static void test_roundtrip(void **state)
{
	(void)state;
	size_t rows = 300, cols = 70;
	float *w = malloc(rows * cols * 4), *b = malloc(rows * cols * 4);
	for (size_t i = 0; i < rows * cols; i++)
		w[i] = grand() * (i % cols == 5 ? 4.0f : 1.0f);
	w[17 * cols + 9] = 30.0f;
	static const char *const specs[] = {"claq:bits=2.0", "claq:bits=3.0", "claq:bits=3.1",
					    "claq:bits=4.0"};
	double prev = INFINITY;
	for (size_t q = 0; q < 4; q++) {
		struct qs_scheme s = make(specs[q]);
		free(roundtrip(&s, w, rows, cols, NULL, b));
		double e = col_err(w, b, rows, cols, 0);
		double tot = 0;
		for (size_t j = 0; j < cols; j++)
			tot += col_err(w, b, rows, cols, j);
		assert_true(tot < prev);
		prev = tot;
		(void)e;
		/* the reserved outlier is exact */
		assert_true(b[17 * cols + 9] == 30.0f);
	}
	/* bits=3.1: the outlier-heavy column 5 is among the 4-bit ones */
	struct qs_scheme s = make("claq:bits=3.1,reserve=0");
	uint8_t *out = roundtrip(&s, w, rows, cols, NULL, b);
	assert_true(out[0] & (1u << 5));
	unsigned nh = 0;
	for (size_t j = 0; j < cols; j++)
		nh += (out[j / 8] >> (j % 8)) & 1;
	assert_int_equal(nh, 7);
	free(out);
	free(w);
	free(b);
}

static void test_importance(void **state)
{
	(void)state;
	size_t rows = 200, cols = 50;
	float *w = malloc(rows * cols * 4), *b0 = malloc(rows * cols * 4),
	      *b1 = malloc(rows * cols * 4), imp[50];
	for (size_t i = 0; i < rows * cols; i++)
		w[i] = grand() * (i % cols < 5 ? 3.0f : 1.0f);
	for (size_t j = 0; j < cols; j++)
		imp[j] = j >= 40 ? 100.0f : 1.0f;
	struct qs_scheme s = make("claq:bits=3.2,reserve=0");
	uint8_t *o0 = roundtrip(&s, w, rows, cols, NULL, b0);
	uint8_t *o1 = roundtrip(&s, w, rows, cols, imp, b1);
	/* without: the wide columns 0..4 get 4 bits; with: the important 40..49 */
	for (size_t j = 0; j < 5; j++)
		assert_true(o0[j / 8] & (1u << (j % 8)));
	for (size_t j = 40; j < 50; j++)
		assert_true(o1[j / 8] & (1u << (j % 8)));
	double e0 = 0, e1 = 0;
	for (size_t j = 0; j < cols; j++) {
		e0 += imp[j] * col_err(w, b0, rows, cols, j);
		e1 += imp[j] * col_err(w, b1, rows, cols, j);
	}
	assert_true(e1 < e0);
	free(o0);
	free(o1);
	free(w);
	free(b0);
	free(b1);
}

static void test_edges(void **state)
{
	(void)state;
	struct qs_scheme s = make("claq:bits=2.0,reserve=0.05");
	float w[40], back[40];
	for (int i = 0; i < 40; i++)
		w[i] = (float)(i % 3);
	w[4] = NAN;
	free(roundtrip(&s, w, 20, 2, NULL, back));
	uint64_t p = s.ops->payload_size(&s, 20, 2);
	uint8_t *out = malloc(p);
	void *scr = malloc(s.ops->scratch_size(&s, 20, 2));
	w[3] = INFINITY;
	assert_int_equal(s.ops->quantize(&s, w, 20, 2, out, scr), -QS_ETOOBIG);
	w[3] = -70000.0f;
	assert_int_equal(s.ops->quantize(&s, w, 20, 2, out, scr), -QS_ETOOBIG);
	w[3] = 1;
	assert_int_equal(s.ops->quantize(&s, w, 20, 2, out, scr), 0);
	/* a corrupt bit map or row index is refused */
	out[0] |= 1;
	assert_int_equal(s.ops->dequantize(&s, out, 20, 2, back, scr), -QS_EFORMAT);
	out[0] &= (uint8_t)~1u;
	uint64_t idx = 1 + 2 * 2 * 4;  /* after the bit map and code books */
	out[idx] |= 0x1f;              /* row 31 of 20 */
	assert_int_equal(s.ops->dequantize(&s, out, 20, 2, back, scr), -QS_EFORMAT);
	free(out);
	free(scr);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_payload_size),
		cmocka_unit_test(test_hand_column),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_importance),
		cmocka_unit_test(test_edges),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

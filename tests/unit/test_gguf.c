/* test_gguf.c - the gguf scheme: parameters, payload sizes, round-trip
 * quality per type, edge values (zeros, NaN, Inf, overflow), importance
 * weighting, GPTQ with a Hessian beating the plain search on the output
 * error, the library entry points, and the SIMD kernels bit for bit
 * against ref (ggml_check compares against ggml itself). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf_types.h"
#include "kernels.h"
#include "qshard.h"
#include "scheme.h"

static uint64_t rng_state = 0x452821e638d01377ull;
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
	int rc = qs_scheme_parse(spec, &s, &d);
	if (rc)
		fail_msg("%s: %s", spec, d.msg);
	return s;
}

static double sqnr(const float *w, const float *q, size_t n)
{
	double s = 0, e = 0;
	for (size_t i = 0; i < n; i++) {
		s += (double)w[i] * w[i];
		e += ((double)w[i] - q[i]) * ((double)w[i] - q[i]);
	}
	return 10 * log10(s / (e > 0 ? e : 1e-300));
}

static void test_parse(void **state)
{
	(void)state;
	struct qs_scheme s = make("gguf:type=q4_K");
	assert_string_equal(s.text, "gguf:type=q4_K");
	assert_int_equal(qs_gguf_type_of(&s), QS_GGUF_Q4_K);
	for (unsigned t = 0; t < QS_GGUF_NTYPES; t++) {
		char spec[64], want[64];
		snprintf(spec, sizeof(spec), "gguf:type=%s", qs_gguf_types[t].name);
		s = make(spec);
		snprintf(want, sizeof(want), "gguf:type=%s", qs_gguf_types[t].name);
		assert_string_equal(s.text, want);
		assert_int_equal(qs_gguf_type_of(&s), (int)t);
	}
	/* the type defaults to q8_0 (a parameter table needs a default) */
	assert_string_equal(make("gguf").text, "gguf:type=q8_0");
	static const char *const bad[] = {"gguf:type=q4_k", "gguf:type=Q4_K",
					  "gguf:type=q8_K", "gguf:bits=4", "gguf:type=",
					  "gguf:type=q4_0,type=q4_0"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct qs_diag d;
		memset(&d, 0, sizeof(d));
		assert_int_equal(qs_scheme_parse(bad[i], &s, &d), -QS_EUSAGE);
		assert_true(strstr(d.msg, "gguf") != NULL);
	}
	struct qs_scheme rtn = make("rtn");
	assert_int_equal(qs_gguf_type_of(&rtn), -1);
	/* ggml's ids, as ggml.h numbers them */
	assert_int_equal(qs_gguf_types[QS_GGUF_Q4_0].ggml_type, 2);
	assert_int_equal(qs_gguf_types[QS_GGUF_Q8_0].ggml_type, 8);
	assert_int_equal(qs_gguf_types[QS_GGUF_Q6_K].ggml_type, 14);
	assert_int_equal(qs_gguf_type_find("q5_1"), QS_GGUF_Q5_1);
	assert_int_equal(qs_gguf_type_find("f16"), -1);
}

static void test_sizes(void **state)
{
	(void)state;
	struct qs_scheme s = make("gguf:type=q4_K");
	assert_int_equal(s.ops->payload_size(&s, 3, 512), 3 * 2 * 144);
	assert_true(s.ops->payload_size(&s, 3, 300) == UINT64_MAX);
	s = make("gguf:type=q8_0");
	assert_int_equal(s.ops->payload_size(&s, 5, 96), 5 * 3 * 34);
	assert_true(s.ops->payload_size(&s, 5, 100) == UINT64_MAX);
	assert_int_equal(s.ops->scratch_size(&s, 5, 96), 0);
	for (unsigned t = 0; t < QS_GGUF_NTYPES; t++) {
		assert_int_equal(qs_gguf_types[t].block_bytes, qs_gguf_block_bytes(t));
		assert_int_equal(qs_gguf_types[t].block_weights, qs_gguf_block_weights(t));
		assert_int_equal(qs_gguf_row_bytes(t, 1024),
				 1024 / qs_gguf_block_weights(t) * qs_gguf_block_bytes(t));
	}
	assert_true(qs_gguf_row_bytes(QS_GGUF_NTYPES, 256) == UINT64_MAX);
}

/* weight SQNR floor per type on N(0, 1) weights (qshard reaches these
 * with margin; ggml's own quantizer is below or within 0.1 dB of each) */
static const double floor_db[QS_GGUF_NTYPES] = {
	45.5, 21.5, 22.8, 27.6, 29.2, 11.1, 16.7, 22.85, 28.7, 35.0,
};

static void test_roundtrip(void **state)
{
	(void)state;
	size_t rows = 9, cols = 1024, n = rows * cols;
	float *w = malloc(n * 4), *back = malloc(n * 4);
	for (size_t i = 0; i < n; i++)
		w[i] = grand();
	for (unsigned t = 0; t < QS_GGUF_NTYPES; t++) {
		char spec[64];
		snprintf(spec, sizeof(spec), "gguf:type=%s", qs_gguf_types[t].name);
		struct qs_scheme s = make(spec);
		uint64_t p = s.ops->payload_size(&s, rows, cols);
		uint8_t *out = malloc(p + 16);
		memset(out, 0xA5, p + 16);
		assert_int_equal(s.ops->quantize(&s, w, rows, cols, out, NULL), 0);
		for (int k = 0; k < 16; k++)
			assert_int_equal(out[p + k], 0xA5);  /* nothing past the payload */
		assert_int_equal(s.ops->dequantize(&s, out, rows, cols, back, NULL), 0);
		double db = sqnr(w, back, n);
		print_message("%s %.2f dB\n", spec, db);
		if (db < floor_db[t])
			fail_msg("%s: %.2f dB below %.2f", spec, db, floor_db[t]);
		/* the library entry points agree with the scheme */
		uint8_t *out2 = malloc(p);
		assert_int_equal(qs_gguf_quantize_rows(t, w, rows, cols, NULL, out2), 0);
		assert_memory_equal(out, out2, p);
		free(out2);
		free(out);
	}
	free(w);
	free(back);
}

static void test_edges(void **state)
{
	(void)state;
	size_t cols = 256;
	float w[256], back[256];
	uint8_t out[512];  /* q8_0: 8 blocks of 34 bytes */
	for (unsigned t = 0; t < QS_GGUF_NTYPES; t++) {
		/* zeros (signed) come back as zeros */
		for (size_t i = 0; i < cols; i++)
			w[i] = (i & 1) ? -0.0f : 0.0f;
		assert_int_equal(qs_gguf_quantize_rows(t, w, 1, cols, NULL, out), 0);
		qs_gguf_dequantize_rows(t, out, 1, cols, back);
		for (size_t i = 0; i < cols; i++)
			assert_true(back[i] == 0.0f);
		/* a NaN is taken as 0 and disturbs nothing else */
		for (size_t i = 0; i < cols; i++)
			w[i] = 0.01f * grand();
		w[17] = NAN;
		assert_int_equal(qs_gguf_quantize_rows(t, w, 1, cols, NULL, out), 0);
		qs_gguf_dequantize_rows(t, out, 1, cols, back);
		for (size_t i = 0; i < cols; i++)
			assert_true(isfinite(back[i]) && fabsf(back[i]) < 0.1f);
		/* Inf, and magnitudes whose fp16 scale overflows, are refused */
		w[17] = INFINITY;
		assert_int_equal(qs_gguf_quantize_rows(t, w, 1, cols, NULL, out), -QS_ETOOBIG);
		w[17] = 3e9f;
		assert_int_equal(qs_gguf_quantize_rows(t, w, 1, cols, NULL, out), -QS_ETOOBIG);
		/* rows that are not whole blocks */
		assert_int_equal(qs_gguf_quantize_rows(t, w, 1, 200, NULL, out), -QS_EUSAGE);
		assert_int_equal(qs_gguf_dequantize_rows(t, out, 1, 200, back), -QS_EUSAGE);
	}
	/* importance must be finite and non-negative */
	float imp[256];
	for (size_t i = 0; i < cols; i++) {
		w[i] = grand();
		imp[i] = 1.0f;
	}
	imp[3] = -1.0f;
	assert_int_equal(qs_gguf_quantize_rows(QS_GGUF_Q4_K, w, 1, cols, imp, out), -QS_EFORMAT);
	imp[3] = NAN;
	assert_int_equal(qs_gguf_quantize_rows(QS_GGUF_Q4_K, w, 1, cols, imp, out), -QS_EFORMAT);
}

/* Weighted error sum imp[j] (w - q)^2 over the matrix. */
static double werr(const float *w, const float *q, const float *imp, size_t rows, size_t cols)
{
	double e = 0;
	for (size_t r = 0; r < rows; r++)
		for (size_t j = 0; j < cols; j++) {
			double d = (double)w[r * cols + j] - q[r * cols + j];
			e += imp[j] * d * d;
		}
	return e;
}

static void test_importance(void **state)
{
	(void)state;
	size_t rows = 16, cols = 512, n = rows * cols;
	float *w = malloc(n * 4), *q0 = malloc(n * 4), *q1 = malloc(n * 4), imp[512];
	uint8_t *p = malloc(n);
	for (size_t i = 0; i < n; i++)
		w[i] = grand();
	for (size_t j = 0; j < cols; j++)
		imp[j] = (j % 5 == 0) ? 50.0f : 0.2f + 0.1f * (float)(j % 3);
	static const unsigned types[] = {QS_GGUF_Q4_0, QS_GGUF_Q4_1, QS_GGUF_Q3_K,
					 QS_GGUF_Q4_K, QS_GGUF_Q6_K};
	for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++) {
		unsigned t = types[k];
		assert_int_equal(qs_gguf_quantize_rows(t, w, rows, cols, NULL, p), 0);
		qs_gguf_dequantize_rows(t, p, rows, cols, q0);
		assert_int_equal(qs_gguf_quantize_rows(t, w, rows, cols, imp, p), 0);
		qs_gguf_dequantize_rows(t, p, rows, cols, q1);
		double e0 = werr(w, q0, imp, rows, cols), e1 = werr(w, q1, imp, rows, cols);
		print_message("%s weighted error %.4g plain, %.4g with importance\n",
			      qs_gguf_types[t].name, e0, e1);
		assert_true(e1 < 0.9 * e0);
	}
	/* the scheme's prepare path gives the library's result */
	struct qs_scheme s = make("gguf:type=q4_K");
	s.stats = QS_WANT_IMPORTANCE;
	void *prep = malloc(s.ops->prep_size(&s, cols));
	struct qs_tensor_stats st = {.name = "t", .cols = cols, .importance = imp};
	struct qs_diag d;
	memset(&d, 0, sizeof(d));
	assert_int_equal(s.ops->prepare(&s, &st, prep, &d), 0);
	uint8_t *p2 = malloc(n);
	assert_int_equal(s.ops->quantize_prep(&s, prep, w, rows, cols, p2, NULL), 0);
	assert_int_equal(qs_gguf_quantize_rows(QS_GGUF_Q4_K, w, rows, cols, imp, p), 0);
	assert_memory_equal(p, p2, s.ops->payload_size(&s, rows, cols));
	free(prep);
	free(p2);
	free(w);
	free(q0);
	free(q1);
	free(p);
}

/* Output error |(W - Q) X^T|^2 = sum_r (w - q)_r H (w - q)_r^T. */
static double out_err(const float *w, const float *q, const float *h, size_t rows, size_t cols)
{
	double e = 0;
	double *d = malloc(cols * sizeof(double));
	for (size_t r = 0; r < rows; r++) {
		for (size_t j = 0; j < cols; j++)
			d[j] = (double)w[r * cols + j] - q[r * cols + j];
		for (size_t i = 0; i < cols; i++) {
			double acc = 0;
			for (size_t j = 0; j < cols; j++)
				acc += h[i * cols + j] * d[j];
			e += d[i] * acc;
		}
	}
	free(d);
	return e;
}

static void test_gptq(void **state)
{
	(void)state;
	size_t rows = 32, cols = 512, ns = 2048, n = rows * cols;
	/* correlated inputs: x = mixing of a few latent factors plus noise,
	 * a handful of hot channels */
	float *x = malloc(ns * cols * 4), *h = calloc(cols * cols, 4), *w = malloc(n * 4);
	float *q0 = malloc(n * 4), *q1 = malloc(n * 4), diag[512];
	for (size_t s = 0; s < ns; s++) {
		float f[4] = {grand(), grand(), grand(), grand()};
		for (size_t j = 0; j < cols; j++)
			x[s * cols + j] = f[j % 4] * (j % 37 == 0 ? 6.0f : 1.0f) + 0.5f * grand();
	}
	for (size_t s = 0; s < ns; s++)
		for (size_t i = 0; i < cols; i++) {
			float xi = x[s * cols + i];
			for (size_t j = 0; j < cols; j++)
				h[i * cols + j] += xi * x[s * cols + j];
		}
	for (size_t i = 0; i < n; i++)
		w[i] = 0.02f * grand();
	for (size_t j = 0; j < cols; j++)
		diag[j] = h[j * cols + j];
	uint8_t *p = malloc(n);
	static const unsigned types[] = {QS_GGUF_Q4_K, QS_GGUF_Q3_K, QS_GGUF_Q4_0};
	for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++) {
		char spec[64];
		snprintf(spec, sizeof(spec), "gguf:type=%s", qs_gguf_types[types[k]].name);
		struct qs_scheme s = make(spec);
		/* importance = diag(H): the best without the off-diagonal */
		assert_int_equal(qs_gguf_quantize_rows(types[k], w, rows, cols, diag, p), 0);
		qs_gguf_dequantize_rows(types[k], p, rows, cols, q0);
		s.stats = QS_WANT_HESSIAN | QS_WANT_IMPORTANCE;
		void *prep = malloc(s.ops->prep_size(&s, cols));
		void *scr = malloc(s.ops->scratch_size(&s, rows, cols));
		struct qs_tensor_stats st = {.name = "t", .cols = cols, .hessian = h};
		struct qs_diag d;
		memset(&d, 0, sizeof(d));
		assert_int_equal(s.ops->prepare(&s, &st, prep, &d), 0);
		assert_int_equal(s.ops->quantize_prep(&s, prep, w, rows, cols, p, scr), 0);
		assert_int_equal(s.ops->dequantize(&s, p, rows, cols, q1, NULL), 0);
		double e0 = out_err(w, q0, h, rows, cols), e1 = out_err(w, q1, h, rows, cols);
		print_message("%s output error %.4g with diag(H) importance, %.4g with GPTQ (%.2f dB)\n",
			      spec, e0, e1, 10 * log10(e0 / e1));
		assert_true(e1 < e0 * 0.8);
		free(prep);
		free(scr);
	}
	free(x);
	free(h);
	free(w);
	free(q0);
	free(q1);
	free(p);
}

static void test_simd_match(void **state)
{
	(void)state;
	const struct qs_kernels *r = qs_kernels_by_name("ref");
	static const char *const levels[] = {"avx2", "neon"};
	float *w = malloc(4096 * 4), imp[4096], y0[4096], y1[4096];
	uint8_t b0[4096], b1[4096];
	for (size_t l = 0; l < 2; l++) {
		const struct qs_kernels *k = qs_kernels_by_name(levels[l]);
		if (!k)
			continue;
		for (unsigned t = 0; t < QS_GGUF_NTYPES; t++) {
			unsigned bw = qs_gguf_block_weights(t);
			for (size_t nb = 1; nb <= (bw == 32 ? 19u : 5u); nb++) {
				for (int kind = 0; kind < 3; kind++) {
					for (size_t i = 0; i < nb * bw; i++) {
						w[i] = kind == 0 ? grand() : kind == 1 ? 1e-39f * grand()
							: (i % 11 ? 0.001f : 30.0f) * grand();
						imp[i] = (float)(rnd() % 1000) * 0.01f;
					}
					for (int wi = 0; wi < 2; wi++) {
						const float *ip = wi ? imp : NULL;
						size_t bad0 = r->gguf_quantize_row(t, w, ip, nb, b0);
						size_t bad1 = k->gguf_quantize_row(t, w, ip, nb, b1);
						assert_int_equal(bad0, bad1);
						if (memcmp(b0, b1, nb * qs_gguf_block_bytes(t)) != 0)
							fail_msg("%s: %s differs from ref (%zu blocks, kind %d)",
								 qs_gguf_types[t].name, levels[l], nb, kind);
						r->gguf_dequantize_row(t, b0, nb, y0);
						k->gguf_dequantize_row(t, b0, nb, y1);
						assert_memory_equal(y0, y1, nb * bw * sizeof(float));
					}
				}
			}
		}
	}
	free(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_edges),
		cmocka_unit_test(test_importance),
		cmocka_unit_test(test_gptq),
		cmocka_unit_test(test_simd_match),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

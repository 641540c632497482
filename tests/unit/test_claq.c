/* test_claq.c - the claq scheme as the paper defines it: parameters and
 * the two-decimal settings (the shared parser), the payload size against
 * the formula (with a canary), a hand-checked column (k-means code book,
 * per-tail reservation), the Outlier Order (|w| >= 13 mean|W|, not 3)
 * picking the 4-bit and heavy columns, the reservation fractions (1.4% per
 * tail in the heavy 10%, 0.4% elsewhere), a code book per column over all
 * rows, GPTQ's compensation through the shared engine's factor (every code
 * is the nearest centroid to the *compensated* value, and the output error
 * drops), corrupt payloads. */
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
#include "second_order.h"

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

/* Quantizes (through prepare when h is given) and dequantizes. */
static uint8_t *roundtrip(const struct qs_scheme *s, const float *w, size_t rows, size_t cols,
			  const float *h, float *back)
{
	uint64_t p = s->ops->payload_size(s, rows, cols);
	void *scr = malloc(s->ops->scratch_size(s, rows, cols));
	uint8_t *out = malloc(p + 16);
	memset(out, 0xA5, p + 16);
	if (h) {
		struct qs_tensor_stats st = {.name = "t", .cols = cols, .hessian = h};
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

#define DEF_TAIL ",reshi=0.014,reslo=0.004,iters=16,actorder=1,damp=0.01"

static void test_parse(void **state)
{
	(void)state;
	struct qs_scheme s = make("claq");
	assert_string_equal(s.text, "claq:bits=3.12" DEF_TAIL);
	assert_true(s.ops->whole_tensor);
	assert_true(s.ops->wants & QS_WANT_HESSIAN);
	s = make("claq:bits=2.12");
	assert_string_equal(s.text, "claq:bits=2.12" DEF_TAIL);
	s = make("claq:bits=2.5,reshi=0,reslo=0.05,iters=3,actorder=0");
	assert_string_equal(s.text,
			    "claq:bits=2.50,reshi=0,reslo=0.05,iters=3,actorder=0,damp=0.01");
	s = make("claq:bits=4");
	assert_string_equal(s.text, "claq:bits=4.00" DEF_TAIL);
	static const char *bad[] = {"claq:bits=1.99", "claq:bits=4.01", "claq:bits=3.123",
				    "claq:bits=3.", "claq:reshi=0.06", "claq:reslo=-1",
				    "claq:iters=0", "claq:iters=65", "claq:reserve=0.01",
				    "claq:group=128", "claq:actorder=2"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		struct qs_diag d;
		memset(&d, 0, sizeof(d));
		assert_int_equal(qs_scheme_parse(bad[i], &s, &d), -QS_EUSAGE);
		assert_non_null(strstr(d.msg, "claq"));
	}
}

/* payload_size as documented in claq.c: H columns at 4 bits, H = round(C
 * (bits - 3)) for b = 3 and round(C (bits - 2) / 2) for b = 2 */
static uint64_t formula(unsigned b, unsigned f100, unsigned hi, unsigned lo, uint64_t R,
			uint64_t C)
{
	uint64_t H = b == 4 ? 0 : b == 3 ? (C * f100 + 50) / 100 : (C * f100 + 100) / 200;
	uint64_t NH = (C + 5) / 10;
	uint64_t kh = (hi * R + 5000) / 10000, kl = (lo * R + 5000) / 10000;
	kh = kh > R / 2 ? R / 2 : kh;
	kl = kl > R / 2 ? R / 2 : kl;
	uint64_t NR = 2 * (NH * kh + (C - NH) * kl);
	unsigned L = 1;
	while ((1ull << L) < R)
		L++;
	uint64_t bm = (C + 7) / 8;
	return 2 * bm + 2 * ((C - H) * (1ull << b) + H * 16) + (NR * L + 7) / 8 + 2 * NR +
	       (R * ((C - H) * b + H * 4) + 7) / 8;
}

static void test_payload_size(void **state)
{
	(void)state;
	static const uint64_t shapes[][2] = {{1, 1}, {7, 3}, {300, 17}, {1000, 64}, {4096, 10}};
	struct qs_scheme s = make("claq");
	struct qs_scheme s2 = make("claq:bits=2.50,reshi=0.05,reslo=0");
	struct qs_scheme s212 = make("claq:bits=2.12");
	struct qs_scheme s4 = make("claq:bits=4");
	for (size_t i = 0; i < 5; i++) {
		uint64_t R = shapes[i][0], C = shapes[i][1];
		assert_int_equal(s.ops->payload_size(&s, R, C), formula(3, 12, 140, 40, R, C));
		assert_int_equal(s2.ops->payload_size(&s2, R, C), formula(2, 50, 500, 0, R, C));
		assert_int_equal(s212.ops->payload_size(&s212, R, C),
				 formula(2, 12, 140, 40, R, C));
		assert_int_equal(s4.ops->payload_size(&s4, R, C), formula(4, 0, 140, 40, R, C));
	}
	/* the average width is the setting: 2.12 = 6% of columns at 4 bits */
	uint64_t C = 1000, R = 1 << 20;
	double per = (double)s212.ops->payload_size(&s212, R, C) * 8 / ((double)R * C);
	/* codes 2.12, code books ~0, reservation (0.2 0.014 + 1.8 0.004)(16 + 20) */
	assert_true(per > 2.12 && per < 2.12 + 0.001 + 0.361);
}

/* One column, no Hessian: per-tail reservation, then a k-means code book. */
static void test_hand_column(void **state)
{
	(void)state;
	/* 100 rows, 1 column: two clusters at -1 and +1 (+- small), and the
	 * extremes -9, -6 (rows 3, 20) and 5, 7 (rows 71, 50); reshi = reslo =
	 * 0.02: k = 2 per tail, so exactly those four are kept in fp16 */
	enum { R = 100 };
	float w[R], back[R];
	for (int i = 0; i < R; i++)
		w[i] = (i % 2 ? 1.0f : -1.0f) + 0.001f * (float)(i % 5);
	w[3] = -9.0f;
	w[20] = -6.0f;
	w[50] = 7.0f;
	w[71] = 5.0f;
	struct qs_scheme s = make("claq:bits=2,reshi=0.02,reslo=0.02");
	uint8_t *p = roundtrip(&s, w, R, 1, NULL, back);
	assert_true(back[3] == -9.0f && back[20] == -6.0f && back[50] == 7.0f &&
		    back[71] == 5.0f);
	for (int i = 0; i < R; i++)
		if (i != 3 && i != 20 && i != 50 && i != 71)
			assert_true(fabsf(back[i] - w[i]) < 0.003f);
	free(p);
	/* without reservation 4 centroids cannot hold 2 clusters and 4
	 * extremes: some are lost */
	s = make("claq:bits=2,reshi=0,reslo=0");
	p = roundtrip(&s, w, R, 1, NULL, back);
	double e = 0;
	for (int i = 0; i < R; i++)
		e = fmax(e, fabs((double)back[i] - w[i]));
	assert_true(e > 0.5);
	free(p);
}

/* Outlier Order: the columns with most |w| >= 13 mean|W| get 4 bits
 * (bitmap 1) and are heavy (bitmap 2).  Column 7 holds 20 moderately large
 * weights (about 5 mean|W|): the old 3 mean|W| rule ranked it first, the
 * paper's 13 does not count them. */
static void test_outlier_order(void **state)
{
	(void)state;
	enum { R = 256, C = 20 };
	float *w = malloc(R * C * sizeof(float)), *back = malloc(R * C * sizeof(float));
	for (size_t i = 0; i < R * C; i++)
		w[i] = 0.02f * grand();
	/* column 13: 6 outliers, column 4: 3; 13 mean|W| is about 0.26 */
	for (int i = 0; i < 6; i++)
		w[(size_t)(10 * i + 1) * C + 13] = 2.0f;
	for (int i = 0; i < 3; i++)
		w[(size_t)(7 * i + 2) * C + 4] = -2.0f;
	for (int i = 0; i < 20; i++)
		w[(size_t)(11 * i + 5) * C + 7] = i % 2 ? 0.1f : -0.1f;
	/* bits 3.10: H = round(2.0) = 2 high columns; NH = round(2.0) = 2 */
	struct qs_scheme s = make("claq:bits=3.10");
	uint8_t *p = roundtrip(&s, w, R, C, NULL, back);
	uint32_t high = p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16;
	uint32_t heavy = p[3] | (uint32_t)p[4] << 8 | (uint32_t)p[5] << 16;
	assert_int_equal(high, (1u << 13) | (1u << 4));
	assert_int_equal(heavy, (1u << 13) | (1u << 4));
	/* 4 bits: 16 distinct values come back in column 13 (8 elsewhere) */
	free(p);
	/* the threshold is >= 13 mean|W|: raising column 4's outliers to
	 * just under it leaves column 13 alone */
	double sum = 0;
	for (size_t i = 0; i < R * C; i++)
		sum += fabsf(w[i]);
	float thr = (float)(13.0 * sum / (R * C));
	for (int i = 0; i < 3; i++)
		w[(size_t)(7 * i + 2) * C + 4] = -0.0f;
	sum = 0;
	for (size_t i = 0; i < R * C; i++)
		sum += fabsf(w[i]);
	thr = (float)(13.0 * sum / (R * C));
	for (int i = 0; i < 3; i++)
		w[(size_t)(7 * i + 2) * C + 4] = -0.97f * thr;
	struct qs_scheme s1 = make("claq:bits=3.05");  /* H = 1 */
	p = roundtrip(&s1, w, R, C, NULL, back);
	high = p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16;
	assert_int_equal(high, 1u << 13);
	free(p);
	free(w);
	free(back);
}

/* The reservation fractions: per tail round(0.014 R) in the heavy 10% of
 * columns, round(0.004 R) elsewhere; the reserved values come back exact
 * (fp16) and the others on the code book. */
static void test_reservation_fractions(void **state)
{
	(void)state;
	enum { R = 1000, C = 20 };
	float *w = malloc(R * C * sizeof(float)), *back = malloc(R * C * sizeof(float));
	for (size_t i = 0; i < R * C; i++)
		w[i] = 0.02f * grand();
	/* heavy: columns 2 and 17 (most |w| >= 13 mean) */
	for (int i = 0; i < 9; i++) {
		w[(size_t)(100 * i + 3) * C + 2] = 1.5f;
		w[(size_t)(100 * i + 7) * C + 17] = -1.5f;
	}
	struct qs_scheme s = make("claq:bits=3");
	uint8_t *p = roundtrip(&s, w, R, C, NULL, back);
	for (size_t j = 0; j < C; j++) {
		size_t exact = 0, lo = 0, hi = 0;
		for (size_t i = 0; i < R; i++) {
			float f = qs_f16_to_f32(qs_f32_to_f16(w[i * C + j]));
			if (back[i * C + j] == f)
				exact++;
		}
		/* the reserved ones are the extremes: count the tails of the
		 * sorted column that came back exact */
		float *col = malloc(R * sizeof(float));
		for (size_t i = 0; i < R; i++)
			col[i] = w[i * C + j];
		for (size_t i = 0; i < R; i++) {
			size_t below = 0;
			for (size_t i2 = 0; i2 < R; i2++)
				below += col[i2] < col[i];
			bool ex = back[i * C + j] == qs_f16_to_f32(qs_f32_to_f16(col[i]));
			lo += ex && below < 14;
			hi += ex && below >= R - 14;
		}
		free(col);
		size_t k = j == 2 || j == 17 ? 14 : 4;  /* 0.014 and 0.004 of 1000 */
		assert_true(exact >= 2 * k && exact <= 2 * k + 2);  /* +2: a centroid hit */
		assert_true(lo >= k && hi >= k);
	}
	free(p);
	free(w);
	free(back);
}

/* A code book per column over all rows: a column whose lower half of
 * rows holds values near -1 and the upper half near +1 is fitted once, so
 * the lower rows' values (from the same code book) appear in no other
 * column, and the number of distinct values per column is at most 2^b. */
static void test_codebook_per_column(void **state)
{
	(void)state;
	enum { R = 300, C = 6 };
	float *w = malloc(R * C * sizeof(float)), *back = malloc(R * C * sizeof(float));
	for (size_t i = 0; i < R; i++)
		for (size_t j = 0; j < C; j++)
			w[i * C + j] = (float)(j + 1) * (i < R / 2 ? -1.0f : 1.0f) +
				       0.05f * grand();
	struct qs_scheme s = make("claq:bits=3,reshi=0,reslo=0");
	uint8_t *p = roundtrip(&s, w, R, C, NULL, back);
	for (size_t j = 0; j < C; j++) {
		float seen[64];
		size_t n = 0;
		for (size_t i = 0; i < R; i++) {
			size_t q = 0;
			while (q < n && seen[q] != back[i * C + j])
				q++;
			if (q == n) {
				assert_true(n < 8);
				seen[n++] = back[i * C + j];
			}
		}
		/* both halves of the rows share the column's 8 centroids */
		assert_true(n >= 4);
	}
	/* the same rows quantized as two halves give other code books: a
	 * chunked quantization is not what claq defines (hence whole_tensor) */
	float *back2 = malloc(R * C * sizeof(float));
	uint8_t *p1 = roundtrip(&s, w, R / 2, C, NULL, back2);
	size_t differ = 0;
	for (size_t i = 0; i < (size_t)R / 2 * C; i++)
		differ += back2[i] != back[i];
	assert_true(differ > 0);
	free(p1);
	free(back2);
	free(p);
	free(w);
	free(back);
}

static void view(const struct qs_scheme *s, const float *h, size_t cols, void **prep,
		 struct qs_so_prep *v)
{
	struct qs_tensor_stats st = {.name = "t", .cols = cols, .hessian = h};
	bool ident = true;
	*prep = malloc(s->ops->prep_size(s, cols));
	assert_int_equal(s->ops->prepare(s, &st, *prep, NULL), 0);
	assert_int_equal(qs_so_prep_view(*prep, cols, v, &ident), 0);
	assert_false(ident);
}

static float *make_h(size_t cols, size_t tok)
{
	float *x = malloc(tok * cols * sizeof(float));
	float *h = calloc(cols * cols, sizeof(float));
	for (size_t t = 0; t < tok; t++) {
		float common = grand();
		for (size_t j = 0; j < cols; j++)
			x[t * cols + j] = (j % 11 == 3 ? 6.0f : 1.0f) * (grand() + 0.7f * common);
	}
	for (size_t i = 0; i < cols; i++)
		for (size_t j = 0; j < cols; j++) {
			double a = 0;
			for (size_t t = 0; t < tok; t++)
				a += (double)x[t * cols + i] * x[t * cols + j];
			h[i * cols + j] = (float)(a / (double)tok);
		}
	free(x);
	return h;
}

static double out_err(const float *w, const float *q, const float *h, size_t R, size_t C)
{
	double tot = 0;
	for (size_t r = 0; r < R; r++)
		for (size_t i = 0; i < C; i++) {
			double ei = (double)w[r * C + i] - q[r * C + i], a = 0;
			for (size_t j = 0; j < C; j++)
				a += h[i * C + j] * ((double)w[r * C + j] - q[r * C + j]);
			tot += ei * a;
		}
	return tot;
}

/* claq = the shared engine's factor with code books: replaying GPTQ's
 * recursion on the output in visiting order (x_p = w_p - sum_{l<p} (x_l -
 * q_l)/U[l][l] * U[l][p], in double), every column's value is the one of
 * its code book (the values the column took) nearest to the compensated x,
 * not to w; and the output error e H e^T drops well below claq without the
 * Hessian, with and without actorder. */
static void replay(const char *spec, bool nearest)
{
	enum { R = 200, C = 160 };  /* two blocks of columns: the sgemm runs */
	float *w = malloc(R * C * sizeof(float));
	float *q = malloc(R * C * sizeof(float)), *q0 = malloc(R * C * sizeof(float));
	for (size_t i = 0; i < R * C; i++)
		w[i] = 0.02f * grand();
	float *h = make_h(C, 400);
	struct qs_scheme s = make(spec);
	free(roundtrip(&s, w, R, C, h, q));
	free(roundtrip(&s, w, R, C, NULL, q0));
	void *prep;
	struct qs_so_prep v;
	view(&s, h, C, &prep, &v);
	const float *u = v.u;

	double *x = malloc(R * C * sizeof(double));
	for (size_t i = 0; i < R; i++)
		for (size_t p = 0; p < C; p++)
			x[i * C + p] = w[i * C + v.perm[p]];
	size_t bad = 0, moved = 0;
	for (size_t p = 0; p < C; p++) {
		size_t j = v.perm[p];
		for (size_t i = 0; i < R; i++) {
			double xv = x[i * C + p], qv = q[i * C + j], best = fabs(xv - qv);
			/* (reserved values are no code book entries) */
			for (size_t i2 = 0; i2 < R && nearest; i2++)
				if (fabs(xv - q[i2 * C + j]) < best - 1e-5)
					bad++;
			moved += fabs(xv - w[i * C + j]) > 1e-3;
			double e = (xv - qv) / u[p * C + p];
			for (size_t k = p + 1; k < C; k++)
				x[i * C + k] -= e * u[p * C + k];
		}
	}
	assert_true(bad * 1000 < (size_t)R * C);  /* only float-rounding ties */
	assert_true(moved * 2 > (size_t)R * C);   /* compensation moved most weights */
	double eh = out_err(w, q, h, R, C), e0 = out_err(w, q0, h, R, C);
	print_message("%s: e H e^T %.4g with the Hessian, %.4g without\n", spec, eh, e0);
	assert_true(eh < 0.7 * e0);
	free(x);
	free(prep);
	free(h);
	free(q0);
	free(q);
	free(w);
}

static void test_gptq_engine(void **state)
{
	(void)state;
	replay("claq:bits=3,reshi=0,reslo=0,actorder=0", true);
	replay("claq:bits=3,reshi=0,reslo=0,actorder=1", true);
	replay("claq:bits=3.12", false);
}

/* Without a Hessian (no prep, or a tensor without an entry) nothing is
 * propagated: each column on its own k-means code book. */
static void test_identity(void **state)
{
	(void)state;
	enum { R = 64, C = 9 };
	float w[R * C], a[R * C], b[R * C];
	for (size_t i = 0; i < R * C; i++)
		w[i] = grand();
	struct qs_scheme s = make("claq");
	uint8_t *pa = roundtrip(&s, w, R, C, NULL, a);
	void *prep = malloc(s.ops->prep_size(&s, C));
	struct qs_tensor_stats st = {.name = "t", .cols = C};
	assert_int_equal(s.ops->prepare(&s, &st, prep, NULL), 0);
	uint64_t ps = s.ops->payload_size(&s, R, C);
	uint8_t *pb = malloc(ps);
	void *scr = malloc(s.ops->scratch_size(&s, R, C));
	assert_int_equal(s.ops->quantize_prep(&s, prep, w, R, C, pb, scr), 0);
	assert_memory_equal(pa, pb, ps);
	assert_int_equal(s.ops->dequantize(&s, pb, R, C, b, scr), 0);
	assert_memory_equal(a, b, sizeof(a));
	free(scr);
	free(pb);
	free(prep);
	free(pa);
}

static void test_corrupt_and_limits(void **state)
{
	(void)state;
	enum { R = 50, C = 12 };
	float w[R * C], back[R * C];
	for (size_t i = 0; i < R * C; i++)
		w[i] = grand();
	/* H = round(12 * 0.25 / 2) = round(1.5) = 2 columns at 4 bits */
	struct qs_scheme s = make("claq:bits=2.25,reshi=0.02,reslo=0.02");
	uint8_t *p = roundtrip(&s, w, R, C, NULL, back);
	void *scr = malloc(s.ops->scratch_size(&s, R, C));
	uint8_t keep0 = p[0], keep1 = p[1];
	for (unsigned j = 0; j < C; j++)
		if (!((p[j / 8] >> (j % 8)) & 1)) {
			p[j / 8] |= (uint8_t)(1u << (j % 8));
			break;
		}
	assert_int_equal(s.ops->dequantize(&s, p, R, C, back, scr), -QS_EFORMAT);
	p[0] = keep0;
	p[1] = keep1;
	assert_int_equal(s.ops->dequantize(&s, p, R, C, back, scr), 0);
	/* a reserved row index past the 50 rows: the first 6-bit index, after
	 * 2 + 2 bitmap bytes and (10 * 4 + 2 * 16) fp16 code book entries */
	uint64_t off_idx = 4 + 2 * (10 * 4 + 2 * 16);
	p[off_idx] = (uint8_t)((p[off_idx] & ~0x3fu) | 63u);
	assert_int_equal(s.ops->dequantize(&s, p, R, C, back, scr), -QS_EFORMAT);
	uint64_t ps = s.ops->payload_size(&s, R, C);
	w[5] = INFINITY;
	uint8_t *out = malloc(ps);
	assert_int_equal(s.ops->quantize(&s, w, R, C, out, scr), -QS_ETOOBIG);
	w[5] = 1e5f;
	assert_int_equal(s.ops->quantize(&s, w, R, C, out, scr), -QS_ETOOBIG);
	free(out);
	free(scr);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_payload_size),
		cmocka_unit_test(test_hand_column),
		cmocka_unit_test(test_outlier_order),
		cmocka_unit_test(test_reservation_fractions),
		cmocka_unit_test(test_codebook_per_column),
		cmocka_unit_test(test_gptq_engine),
		cmocka_unit_test(test_identity),
		cmocka_unit_test(test_corrupt_and_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

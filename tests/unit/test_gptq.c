/* test_gptq.c - the second-order schemes gptq and athena: output error
 * below rtn's with calibration Hessians, rtn bit for bit without one (or
 * with H = I or a diagonal H), degenerate Hessians, act-order, outliers,
 * chunk independence and parameters. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "qshard.h"
#include "scheme.h"
#include "second_order.h"

#define ROWS 64
#define COLS 256
#define TOK 512

static uint64_t rng_state;
static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static double urand(void)
{
	return (double)(rnd() >> 11) * 0x1p-53;
}

static float gauss(void)
{
	double u = urand() + 1e-12, v = urand();
	return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

static struct qs_scheme make(const char *spec)
{
	struct qs_scheme s;
	struct qs_diag d = { 0 };
	int rc = qs_scheme_parse(spec, &s, &d);
	if (rc)
		fprintf(stderr, "%s: %s\n", spec, d.msg);
	assert_int_equal(rc, 0);
	return s;
}

/* X[TOK, cols] with a few hot channels and some correlation; H = X^T X. */
static float *make_h(size_t cols, size_t tok, const size_t *dead, size_t ndead)
{
	float *x = malloc(tok * cols * sizeof(float));
	float *h = calloc(cols * cols, sizeof(float));
	assert_non_null(x);
	assert_non_null(h);
	for (size_t t = 0; t < tok; t++) {
		float common = gauss();
		for (size_t j = 0; j < cols; j++) {
			float s = j % 37 == 5 ? 12.0f : 1.0f;
			x[t * cols + j] = s * (gauss() + 0.5f * common);
		}
		for (size_t i = 0; i < ndead; i++)
			x[t * cols + dead[i]] = 0.0f;
	}
	for (size_t i = 0; i < cols; i++)
		for (size_t j = 0; j < cols; j++) {
			double acc = 0;
			for (size_t t = 0; t < tok; t++)
				acc += (double)x[t * cols + i] * x[t * cols + j];
			h[i * cols + j] = (float)acc;
		}
	free(x);
	return h;
}

static float *make_w(size_t rows, size_t cols)
{
	float *w = malloc(rows * cols * sizeof(float));
	assert_non_null(w);
	for (size_t i = 0; i < rows * cols; i++)
		w[i] = 0.02f * gauss();
	return w;
}

/* sum over rows of e H e^T, e = w - wq */
static double out_err(const float *w, const float *wq, const float *h, size_t rows,
		      size_t cols)
{
	double tot = 0;
	double *e = malloc(cols * sizeof(double));
	for (size_t r = 0; r < rows; r++) {
		for (size_t j = 0; j < cols; j++)
			e[j] = (double)w[r * cols + j] - wq[r * cols + j];
		for (size_t i = 0; i < cols; i++) {
			double a = 0;
			for (size_t j = 0; j < cols; j++)
				a += (h ? h[i * cols + j] : (double)(i == j)) * e[j];
			tot += e[i] * a;
		}
	}
	free(e);
	return tot;
}

struct run {
	uint8_t *payload;
	size_t psize;
	float *deq;
};

static void run_free(struct run *r)
{
	free(r->payload);
	free(r->deq);
}

/* Quantizes (with prepare when h or force_prep) and dequantizes. */
static struct run quant(const struct qs_scheme *s, const float *w, size_t rows, size_t cols,
			const float *h, bool prep_it, int *rc_out)
{
	struct run r = { 0 };
	r.psize = (size_t)s->ops->payload_size(s, rows, cols);
	r.payload = calloc(1, r.psize + 1);
	r.deq = malloc(rows * cols * sizeof(float));
	void *scratch = malloc((size_t)s->ops->scratch_size(s, rows, cols));
	int rc;
	if (prep_it) {
		void *prep = malloc((size_t)s->ops->prep_size(s, cols));
		struct qs_tensor_stats st = { .name = "t.weight", .cols = cols, .hessian = h };
		struct qs_diag d = { 0 };
		rc = s->ops->prepare(s, &st, prep, &d);
		if (rc == 0)
			rc = s->ops->quantize_prep(s, prep, w, rows, cols, r.payload, scratch);
		free(prep);
	} else {
		rc = s->ops->quantize(s, w, rows, cols, r.payload, scratch);
	}
	if (rc == 0)
		rc = s->ops->dequantize(s, r.payload, rows, cols, r.deq, scratch);
	free(scratch);
	*rc_out = rc;
	return r;
}

static void all_finite(const float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		assert_true(isfinite(x[i]));
}

static void test_beats_rtn(void **state)
{
	(void)state;
	rng_state = 1;
	float *h = make_h(COLS, TOK, NULL, 0), *w = make_w(ROWS, COLS);
	const char *specs[] = { "rtn:bits=3,group=64", "gptq:bits=3,group=64",
				"gptq:bits=3,group=64,actorder=1", "athena:bits=3,group=64",
				"rtn:bits=4,group=128", "gptq:bits=4,group=128" };
	double e[6];
	for (int i = 0; i < 6; i++) {
		struct qs_scheme s = make(specs[i]);
		int rc;
		struct run r = quant(&s, w, ROWS, COLS, h, s.ops->prepare != NULL, &rc);
		assert_int_equal(rc, 0);
		all_finite(r.deq, ROWS * COLS);
		e[i] = out_err(w, r.deq, h, ROWS, COLS);
		printf("# %-34s output error %.6g\n", specs[i], e[i]);
		run_free(&r);
	}
	assert_true(e[1] < 0.8 * e[0]);
	assert_true(e[2] < 0.8 * e[0]);
	assert_true(e[3] < 0.8 * e[0]);
	assert_true(e[3] <= 1.02 * e[1]);
	assert_true(e[5] < 0.8 * e[4]);
	free(h);
	free(w);
}

/* No Hessian, H = I, or a diagonal H: rtn's payload bit for bit. */
static void test_identity_is_rtn(void **state)
{
	(void)state;
	rng_state = 2;
	const unsigned bits[] = { 2, 3, 4, 8 }, groups[] = { 32, 64, 128, 256 };
	size_t cols = 200;  /* a short last group */
	float *w = make_w(9, cols);
	float *eye = calloc(cols * cols, sizeof(float)), *dg = calloc(cols * cols, sizeof(float));
	for (size_t i = 0; i < cols; i++) {
		eye[i * cols + i] = 1.0f;
		dg[i * cols + i] = 0.5f + (float)(i % 7);
	}
	for (int b = 0; b < 4; b++)
		for (int g = 0; g < 4; g++) {
			char spec[80];
			snprintf(spec, sizeof(spec), "rtn:bits=%u,group=%u", bits[b], groups[g]);
			struct qs_scheme rs = make(spec);
			int rc;
			struct run ref = quant(&rs, w, 9, cols, NULL, false, &rc);
			assert_int_equal(rc, 0);
			snprintf(spec, sizeof(spec), "gptq:bits=%u,group=%u", bits[b], groups[g]);
			struct qs_scheme gs = make(spec);
			assert_int_equal(gs.ops->payload_size(&gs, 9, cols), ref.psize);
			const float *hs[] = { NULL, eye, dg };
			for (int k = 0; k < 3; k++) {
				struct run r = quant(&gs, w, 9, cols, hs[k], true, &rc);
				assert_int_equal(rc, 0);
				assert_memory_equal(r.payload, ref.payload, ref.psize);
				run_free(&r);
			}
			struct run r = quant(&gs, w, 9, cols, NULL, false, &rc);
			assert_int_equal(rc, 0);
			assert_memory_equal(r.payload, ref.payload, ref.psize);
			run_free(&r);
			/* static groups from the original weights: still rtn */
			snprintf(spec, sizeof(spec), "gptq:bits=%u,group=%u,actorder=1", bits[b],
				 groups[g]);
			struct qs_scheme as = make(spec);
			r = quant(&as, w, 9, cols, dg, true, &rc);
			assert_int_equal(rc, 0);
			assert_memory_equal(r.payload, ref.payload, ref.psize);
			run_free(&r);
			run_free(&ref);
		}
	free(w);
	free(eye);
	free(dg);
}

/* Rank-deficient H (fewer tokens than columns) with dead columns. */
static void test_singular(void **state)
{
	(void)state;
	rng_state = 3;
	size_t dead[] = { 0, 7, 100, 255 };
	float *h = make_h(COLS, 40, dead, 4), *w = make_w(ROWS, COLS);
	const char *specs[] = { "rtn:bits=3,group=64", "gptq:bits=3,group=64",
				"gptq:bits=3,group=64,actorder=1,alpha=0.01",
				"athena:bits=3,group=64" };
	double e[4];
	for (int i = 0; i < 4; i++) {
		struct qs_scheme s = make(specs[i]);
		int rc;
		struct run r = quant(&s, w, ROWS, COLS, h, s.ops->prepare != NULL, &rc);
		assert_int_equal(rc, 0);
		all_finite(r.deq, ROWS * COLS);
		e[i] = out_err(w, r.deq, h, ROWS, COLS);
		printf("# singular %-30s output error %.6g\n", specs[i], e[i]);
		if (i == 1)  /* dead columns' weights were zeroed before quantizing */
			for (size_t rr = 0; rr < ROWS; rr++)
				assert_true(fabsf(r.deq[rr * COLS + 7]) < 0.05f);
		run_free(&r);
	}
	assert_true(e[1] < e[0]);
	assert_true(e[3] < e[0]);
	free(h);
	free(w);
}

/* Indefinite H: recovered by raising the dampening; hopeless or NaN H:
 * an error naming the tensor. */
static void test_bad_hessian(void **state)
{
	(void)state;
	size_t c = 64;
	float *h = calloc(c * c, sizeof(float));
	for (size_t i = 0; i < c; i++) {
		h[i * c + i] = 1.0f;
		if (i + 1 < c)
			h[i * c + i + 1] = h[(i + 1) * c + i] = 0.9f;
	}
	struct qs_scheme s = make("gptq:bits=4,group=32");
	void *prep = malloc((size_t)s.ops->prep_size(&s, c));
	struct qs_tensor_stats st = { .name = "m.w", .cols = c, .hessian = h };
	struct qs_diag d = { 0 };
	assert_int_equal(s.ops->prepare(&s, &st, prep, &d), 0);

	h[1] = h[c] = -1e7f;
	assert_int_equal(s.ops->prepare(&s, &st, prep, &d), -QS_EFORMAT);
	assert_non_null(strstr(d.msg, "tensor 'm.w'"));
	assert_non_null(strstr(d.msg, "not positive definite"));

	h[5] = NAN;
	assert_int_equal(s.ops->prepare(&s, &st, prep, &d), -QS_ENONFINITE);
	assert_non_null(strstr(d.msg, "'m.w'"));
	free(prep);
	free(h);
}

/* act-order: a different payload from plain gptq, rtn's layout (rtn's
 * dequantize reads it), finite, better than rtn. */
static void test_actorder_roundtrip(void **state)
{
	(void)state;
	rng_state = 4;
	float *h = make_h(COLS, TOK, NULL, 0), *w = make_w(16, COLS);
	struct qs_scheme a = make("gptq:bits=4,group=32,actorder=1");
	struct qs_scheme p = make("gptq:bits=4,group=32,actorder=0");
	struct qs_scheme r = make("rtn:bits=4,group=32");
	int rc;
	struct run ra = quant(&a, w, 16, COLS, h, true, &rc);
	assert_int_equal(rc, 0);
	struct run rp = quant(&p, w, 16, COLS, h, true, &rc);
	assert_int_equal(rc, 0);
	struct run rr = quant(&r, w, 16, COLS, NULL, false, &rc);
	assert_int_equal(rc, 0);
	assert_int_equal(ra.psize, rr.psize);
	assert_memory_not_equal(ra.payload, rp.payload, ra.psize);
	float *deq = malloc(16 * COLS * sizeof(float));
	void *scratch = malloc((size_t)r.ops->scratch_size(&r, 16, COLS));
	assert_int_equal(r.ops->dequantize(&r, ra.payload, 16, COLS, deq, scratch), 0);
	assert_memory_equal(deq, ra.deq, 16 * COLS * sizeof(float));
	all_finite(deq, 16 * COLS);
	assert_true(out_err(w, ra.deq, h, 16, COLS) < out_err(w, rr.deq, h, 16, COLS));
	free(deq);
	free(scratch);
	run_free(&ra);
	run_free(&rp);
	run_free(&rr);
	free(h);
	free(w);
}

/* alpha: the k most salient weights of each row come back as their fp16
 * (without a Hessian: the largest |w|), and the payload grows by k*(2+2)
 * bytes a row. */
static void test_outliers(void **state)
{
	(void)state;
	rng_state = 5;
	size_t rows = 8, cols = COLS;
	float *w = make_w(rows, cols);
	for (size_t r = 0; r < rows; r++)
		w[r * cols + (r * 31) % cols] = 0.9f * (r % 2 ? -1.0f : 1.0f);
	struct qs_scheme s = make("gptq:bits=3,group=64,alpha=0.02");
	assert_string_equal(s.text, "gptq:bits=3,group=64,damp=0.01,actorder=1,alpha=0.02");
	struct qs_scheme r0 = make("rtn:bits=3,group=64");
	size_t k = 5;  /* round(0.02 * 256) */
	assert_int_equal(s.ops->payload_size(&s, rows, cols),
			 r0.ops->payload_size(&r0, rows, cols) + rows * k * 4);
	int rc;
	struct run q = quant(&s, w, rows, cols, NULL, false, &rc);
	assert_int_equal(rc, 0);
	struct run q0 = quant(&r0, w, rows, cols, NULL, false, &rc);
	assert_int_equal(rc, 0);
	for (size_t r = 0; r < rows; r++) {
		size_t j = (r * 31) % cols;
		assert_true(q.deq[r * cols + j] == qs_f16_to_f32(qs_f32_to_f16(w[r * cols + j])));
		size_t exact = 0;
		for (size_t c = 0; c < cols; c++)
			exact += q.deq[r * cols + c] == qs_f16_to_f32(qs_f32_to_f16(w[r * cols + c]));
		assert_true(exact >= k);
	}
	/* the big outlier no longer stretches its group's grid */
	assert_true(out_err(w, q.deq, NULL, rows, cols) < 0.5 * out_err(w, q0.deq, NULL, rows, cols));

	/* with a Hessian too, and a corrupt index is refused */
	float *h = make_h(cols, 300, NULL, 0);
	struct run qh = quant(&s, w, rows, cols, h, true, &rc);
	assert_int_equal(rc, 0);
	all_finite(qh.deq, rows * cols);
	size_t at = (size_t)r0.ops->payload_size(&r0, rows, cols);
	qh.payload[at] = 0xff;
	qh.payload[at + 1] = 0xff;
	void *scratch = malloc((size_t)s.ops->scratch_size(&s, rows, cols));
	assert_int_equal(s.ops->dequantize(&s, qh.payload, rows, cols, qh.deq, scratch),
			 -QS_EFORMAT);
	free(scratch);
	run_free(&qh);
	run_free(&q);
	run_free(&q0);
	free(h);
	free(w);
}

/* Chunks share prep and are independent: two threads quantizing halves
 * decode to what one chunk gives. */
struct half {
	const struct qs_scheme *s;
	const void *prep;
	const float *w;
	size_t rows, cols;
	float *deq;
	int rc;
};

static void *half_run(void *arg)
{
	struct half *hf = arg;
	const struct qs_scheme *s = hf->s;
	size_t ps = (size_t)s->ops->payload_size(s, hf->rows, hf->cols);
	uint8_t *out = malloc(ps);
	void *scratch = malloc((size_t)s->ops->scratch_size(s, hf->rows, hf->cols));
	hf->rc = s->ops->quantize_prep(s, hf->prep, hf->w, hf->rows, hf->cols, out, scratch);
	if (!hf->rc)
		hf->rc = s->ops->dequantize(s, out, hf->rows, hf->cols, hf->deq, scratch);
	free(out);
	free(scratch);
	return NULL;
}

static void test_chunks_threads(void **state)
{
	(void)state;
	rng_state = 6;
	float *h = make_h(COLS, TOK, NULL, 0), *w = make_w(32, COLS);
	const char *specs[] = { "gptq:bits=3,group=64,actorder=1,alpha=0.01",
				"athena:bits=3,group=64,search=4" };
	for (int i = 0; i < 2; i++) {
		struct qs_scheme s = make(specs[i]);
		void *prep = malloc((size_t)s.ops->prep_size(&s, COLS));
		struct qs_tensor_stats st = { .name = "t", .cols = COLS, .hessian = h };
		assert_int_equal(s.ops->prepare(&s, &st, prep, NULL), 0);
		float *deq = malloc(32 * COLS * sizeof(float));
		struct half a = { &s, prep, w, 32, COLS, deq, -1 };
		half_run(&a);
		assert_int_equal(a.rc, 0);
		float *d2 = malloc(32 * COLS * sizeof(float));
		struct half b1 = { &s, prep, w, 12, COLS, d2, -1 };
		struct half b2 = { &s, prep, w + 12 * COLS, 20, COLS, d2 + 12 * COLS, -1 };
		pthread_t t1, t2;
		pthread_create(&t1, NULL, half_run, &b1);
		pthread_create(&t2, NULL, half_run, &b2);
		pthread_join(t1, NULL);
		pthread_join(t2, NULL);
		assert_int_equal(b1.rc, 0);
		assert_int_equal(b2.rc, 0);
		assert_memory_equal(deq, d2, 32 * COLS * sizeof(float));
		free(deq);
		free(d2);
		free(prep);
	}
	free(h);
	free(w);
}

/* athena without a Hessian: a clipping search on weight error, never
 * worse than rtn. */
static void test_athena_no_hessian(void **state)
{
	(void)state;
	rng_state = 7;
	float *w = make_w(16, COLS);
	struct qs_scheme a = make("athena:bits=3,group=64");
	struct qs_scheme r = make("rtn:bits=3,group=64");
	int rc;
	struct run ra = quant(&a, w, 16, COLS, NULL, true, &rc);
	assert_int_equal(rc, 0);
	struct run rr = quant(&r, w, 16, COLS, NULL, false, &rc);
	assert_int_equal(rc, 0);
	assert_int_equal(ra.psize, rr.psize);
	double ea = out_err(w, ra.deq, NULL, 16, COLS), er = out_err(w, rr.deq, NULL, 16, COLS);
	printf("# no Hessian: athena %.6g rtn %.6g\n", ea, er);
	assert_true(ea < er);
	/* search=0: the full range only, which is rtn */
	struct qs_scheme a0 = make("athena:bits=3,group=64,search=0");
	struct run r0 = quant(&a0, w, 16, COLS, NULL, false, &rc);
	assert_int_equal(rc, 0);
	assert_memory_equal(r0.payload, rr.payload, rr.psize);
	run_free(&r0);
	run_free(&ra);
	run_free(&rr);
	free(w);
}

static void expect_parse_err(const char *spec, const char *needle)
{
	struct qs_scheme s;
	struct qs_diag d = { 0 };
	assert_int_equal(qs_scheme_parse(spec, &s, &d), -QS_EUSAGE);
	if (!strstr(d.msg, needle))
		fail_msg("'%s': got '%s', wanted '%s'", spec, d.msg, needle);
}

static void test_parse(void **state)
{
	(void)state;
	struct qs_scheme s = make("gptq");
	assert_string_equal(s.text, "gptq:bits=4,group=128,damp=0.01,actorder=1,alpha=0");
	assert_int_equal(s.ops->wants, QS_WANT_HESSIAN);
	s = make("gptq:bits=2,group=256,damp=0.1,actorder=1,alpha=0.005");
	assert_string_equal(s.text, "gptq:bits=2,group=256,damp=0.1,actorder=1,alpha=0.005");
	s = make("athena");
	assert_string_equal(s.text, "athena:bits=3,group=128,damp=0.01,search=8");
	expect_parse_err("gptq:bits=5", "gptq: bits must be one of 2, 3, 4, 8");
	expect_parse_err("gptq:damp=0", "gptq: damp must be");
	expect_parse_err("gptq:damp=1.5", "gptq: damp must be");
	expect_parse_err("gptq:alpha=0.3", "gptq: alpha must be");
	expect_parse_err("gptq:actorder=2", "actorder must be 0 or 1");
	expect_parse_err("gptq:search=1", "gptq: unknown parameter 'search'");
	expect_parse_err("athena:search=17", "athena: search must be 0..16");
	expect_parse_err("athena:alpha=0.01", "athena: unknown parameter 'alpha'");
	/* prep does not depend on rows; 70B up_proj: H is 256 MiB */
	s = make("gptq:bits=3");
	uint64_t p = s.ops->prep_size(&s, 8192);
	assert_true(p >= 8192ull * 8192 * 4 && p < 8192ull * 8192 * 4 + 8192 * 16);
	assert_int_equal(s.ops->prep_size(&s, 1ull << 40), UINT64_MAX);
}

/* gptq-clip is the scheme's name for what it is; athena is its deprecated
 * alias: the same bytes, each with its own canonical text. */
static void test_gptq_clip_alias(void **state)
{
	(void)state;
	rng_state = 7;
	float *h = make_h(COLS, TOK, NULL, 0), *w = make_w(ROWS, COLS);
	struct qs_scheme g = make("gptq-clip"), a = make("athena");
	assert_string_equal(g.text, "gptq-clip:bits=3,group=128,damp=0.01,search=8");
	assert_string_equal(a.text, "athena:bits=3,group=128,damp=0.01,search=8");
	g = make("gptq-clip:bits=3,group=64,search=4");
	a = make("athena:bits=3,group=64,search=4");
	int rc;
	struct run rg = quant(&g, w, ROWS, COLS, h, true, &rc);
	assert_int_equal(rc, 0);
	struct run ra = quant(&a, w, ROWS, COLS, h, true, &rc);
	assert_int_equal(rc, 0);
	assert_int_equal(rg.psize, ra.psize);
	assert_memory_equal(rg.payload, ra.payload, rg.psize);
	/* and it is the second-order search, not rtn */
	struct qs_scheme r = make("rtn:bits=3,group=64");
	struct run rr = quant(&r, w, ROWS, COLS, NULL, false, &rc);
	assert_int_equal(rc, 0);
	assert_true(out_err(w, rg.deq, h, ROWS, COLS) < 0.8 * out_err(w, rr.deq, h, ROWS, COLS));
	run_free(&rg);
	run_free(&ra);
	run_free(&rr);
	free(h);
	free(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_beats_rtn),
		cmocka_unit_test(test_identity_is_rtn),
		cmocka_unit_test(test_singular),
		cmocka_unit_test(test_bad_hessian),
		cmocka_unit_test(test_actorder_roundtrip),
		cmocka_unit_test(test_outliers),
		cmocka_unit_test(test_chunks_threads),
		cmocka_unit_test(test_athena_no_hessian),
		cmocka_unit_test(test_gptq_clip_alias),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

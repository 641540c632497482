/* test_adpq.c - the adpq scheme: parsing, hand-checked outlier selection,
 * error bounds for every bits x group, the payload size against the
 * documented formula (with a canary), edge groups, round trips through the
 * ops and the SQNR gain over rtn on heavy-tailed rows. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode_scalar.h"
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

static double unif(void)
{
	return ((double)(rnd() >> 11) + 0.5) * 0x1p-53;
}

/* Student-t-like (Gaussian / sqrt(chi2_3/3)) plus 0.3% large outliers. */
static float heavy(void)
{
	double g[4];
	for (int i = 0; i < 4; i++)
		g[i] = sqrt(-2.0 * log(unif())) * cos(6.283185307179586 * unif());
	double v = g[0] / sqrt((g[1] * g[1] + g[2] * g[2] + g[3] * g[3]) / 3.0);
	if (unif() < 0.003)
		v = (unif() < 0.5 ? -1 : 1) * (10.0 + 20.0 * unif());
	return (float)(0.02 * v);
}

static struct qs_scheme make(const char *spec)
{
	struct qs_scheme s;
	struct qs_diag d;
	int rc = qs_scheme_parse(spec, &s, &d);
	if (rc)
		fprintf(stderr, "%s: %s\n", spec, d.msg);
	assert_int_equal(rc, 0);
	return s;
}

/* A row through the ref kernel, with its buffers. */
struct krow {
	struct qs_adpq_row r;
	struct qs_adpq_params p;
	size_t ng;
	float *out;
};

static void krow_run(struct krow *k, const float *w, size_t n, unsigned bits,
		     unsigned group, unsigned alpha_e4, unsigned search, unsigned flags)
{
	memset(k, 0, sizeof(*k));
	k->p.bits = bits;
	k->p.group = group;
	k->p.alpha_e4 = alpha_e4;
	k->p.search = search;
	k->p.flags = flags;
	k->ng = n / group + (n % group != 0);
	k->r.meta = calloc(4 * k->ng, sizeof(uint16_t));
	k->r.tmp = calloc(4 * k->ng, sizeof(float));
	k->r.codes = calloc(n, 1);
	k->r.mask = calloc(n, 1);
	k->r.idx = calloc(n + 1, 1);
	k->r.counts = calloc(k->ng, sizeof(uint16_t));
	k->out = calloc(n, sizeof(float));
	assert_int_equal(qs_ref_adpq_quantize_row(w, n, &k->p, &k->r), 0);
	assert_int_equal(qs_ref_adpq_dequantize_row(&k->r, n, &k->p, k->out), 0);
}

static void krow_free(struct krow *k)
{
	free(k->r.meta);
	free(k->r.tmp);
	free(k->r.codes);
	free(k->r.mask);
	free(k->r.idx);
	free(k->r.counts);
	free(k->out);
}

struct steps {
	float step, ostep;
};

static struct steps group_steps(const struct krow *k, size_t g)
{
	struct steps s;
	const uint16_t *m = k->r.meta;
	if (k->p.flags & QS_ADPQ_SCALES_F16) {
		s.step = qs_f16_to_f32(m[g]);
		s.ostep = qs_f16_to_f32(m[2 * k->ng + g]);
	} else {
		s.step = qs_f16_to_f32(k->r.super[0]) * (float)m[g];
		s.ostep = qs_f16_to_f32(k->r.super[2]) * (float)m[2 * k->ng + g];
	}
	return s;
}

/* Without range search every weight dequantizes within half a step of its
 * own grid (inliers: step, outliers: ostep), up to f32 rounding; the row's
 * outliers are its K = round(alpha*n) largest |w|, wherever they sit. */
static void check_bounds(const struct krow *k, const float *w, size_t n)
{
	const uint8_t *idx = k->r.idx;
	uint8_t *out = calloc(n, 1);
	size_t total = 0;
	for (size_t g = 0, i = 0; i < n; g++, i += k->p.group) {
		size_t len = n - i < k->p.group ? n - i : k->p.group;
		unsigned kk = k->r.counts[g];
		struct steps st = group_steps(k, g);
		assert_true(kk <= len);
		for (unsigned o = 0; o < kk; o++) {
			assert_true(idx[o] < len);
			if (o)
				assert_true(idx[o] > idx[o - 1]);
			out[i + idx[o]] = 1;
		}
		for (size_t j = 0; j < len; j++) {
			float s = out[i + j] ? st.ostep : st.step;
			float tol = 0.5f * s * 1.0001f + 1e-6f * fabsf(w[i + j]) + 1e-30f;
			if (!(fabsf(k->out[i + j] - w[i + j]) <= tol))
				fail_msg("g %zu j %zu out %d: %g vs %g (step %g)", g, j, out[i + j],
					 (double)k->out[i + j], (double)w[i + j], (double)s);
		}
		idx += kk;
		total += kk;
	}
	size_t K = qs_adpq_k(k->p.alpha_e4, n);
	assert_int_equal(total, K < n ? K : n);
	/* outliers are the K largest |w| of the row */
	float omin = INFINITY, imax = 0.0f;
	for (size_t j = 0; j < n; j++) {
		float a = fabsf(w[j]);
		if (out[j])
			omin = a < omin ? a : omin;
		else
			imax = a > imax ? a : imax;
	}
	if (total && total < n)
		assert_true(omin >= imax);
	free(out);
}

/* ------------------------------------------------------------------ tests */

static void test_parse(void **state)
{
	(void)state;
	struct qs_scheme s = make("adpq");
	assert_string_equal(s.text,
			    "adpq:bits=3,group=128,alpha=0.0175,search=8,scales=u8,layout=planes");
	s = make("adpq:bits=4,group=64,alpha=0.25,search=0,scales=f16,layout=tight");
	assert_string_equal(s.text,
			    "adpq:bits=4,group=64,alpha=0.25,search=0,scales=f16,layout=tight");
	unsigned alpha = 0;
	assert_int_equal(qs_scheme_param(&s, "alpha", &alpha), 0);
	assert_int_equal(alpha, 2500);  /* stored in units of 1e-4 */
	assert_int_equal(qs_scheme_param(&s, "beta", &alpha), -1);
	s = make("adpq:alpha=0,search=0");
	assert_string_equal(s.text,
			    "adpq:bits=3,group=128,alpha=0,search=0,scales=u8,layout=planes");
	s = make("adpq:alpha=0.0125,bits=2,group=256,search=16");
	assert_string_equal(s.text,
			    "adpq:bits=2,group=256,alpha=0.0125,search=16,scales=u8,layout=planes");

	static const char *bad[] = {
		"adpq:bits=5", "adpq:bits=8", "adpq:bits=", "adpq:group=32", "adpq:group=512",
		"adpq:alpha=0.3", "adpq:alpha=0.25001", "adpq:alpha=0.00001", "adpq:alpha=-0.1",
		"adpq:alpha=.1", "adpq:alpha=1.", "adpq:alpha=x", "adpq:search=17",
		"adpq:search=-1", "adpq:scales=u4", "adpq:layout=dense", "adpq:foo=1",
		"adpq:bits=3,bits=3", "adpq:bits", "adpq:bits=3,",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		struct qs_diag d;
		d.msg[0] = '\0';
		assert_int_equal(qs_scheme_parse(bad[i], &s, &d), -QS_EUSAGE);
		assert_non_null(strstr(d.msg, "adpq"));
	}
	struct qs_diag d;
	qs_scheme_parse("nosuch", &s, &d);
	assert_non_null(strstr(d.msg, "adpq"));
}

static void test_k_rounding(void **state)
{
	(void)state;
	assert_int_equal(qs_adpq_k(200, 128), 3);   /* 2.56 */
	assert_int_equal(qs_adpq_k(200, 64), 1);    /* 1.28 */
	assert_int_equal(qs_adpq_k(200, 25), 1);    /* 0.5 rounds up */
	assert_int_equal(qs_adpq_k(200, 24), 0);    /* 0.48 */
	assert_int_equal(qs_adpq_k(2500, 256), 64);
	assert_int_equal(qs_adpq_k(0, 256), 0);
}

static void test_hand_checked(void **state)
{
	(void)state;
	float w[64];
	for (int i = 0; i < 64; i++)
		w[i] = 0.01f * (float)((i * 7) % 13 - 6);  /* -0.06 .. 0.06 */
	w[5] = 10.0f;
	w[20] = -8.0f;
	w[40] = 6.0f;
	struct krow k;
	/* alpha 0.05: k = round(3.2) = 3 */
	krow_run(&k, w, 64, 3, 64, 500, 0, 0);
	assert_int_equal(k.r.idx[0], 5);
	assert_int_equal(k.r.idx[1], 20);
	assert_int_equal(k.r.idx[2], 40);
	check_bounds(&k, w, 64);
	/* the inlier step follows the inliers only: ~0.12/7, not 18/7 */
	struct steps st = group_steps(&k, 0);
	assert_true(st.step < 0.12f / 7 * 1.05f);
	assert_true(st.step >= 0.12f / 7);
	/* outliers: sign-magnitude, 2 magnitude bits over [6, 10] */
	assert_true(st.ostep >= 4.0f / 3 && st.ostep < 4.0f / 3 * 1.05f);
	assert_true(k.out[20] < -7.0f && k.out[5] > 9.0f && k.out[40] > 5.0f);
	krow_free(&k);
}

static void test_bounds_every_bits_group(void **state)
{
	(void)state;
	static const unsigned bits[] = {2, 3, 4}, groups[] = {64, 128, 256};
	static const unsigned flags[] = {0, QS_ADPQ_FOLD, QS_ADPQ_SCALES_F16,
					 QS_ADPQ_SCALES_F16 | QS_ADPQ_FOLD};
	const size_t n = 1000;  /* a partial last group for every size */
	float *w = malloc(n * sizeof(*w));
	for (size_t i = 0; i < n; i++)
		w[i] = heavy();
	for (size_t b = 0; b < 3; b++)
		for (size_t g = 0; g < 3; g++)
			for (size_t f = 0; f < 4; f++)
				for (unsigned a = 0; a <= 2500; a += 625) {
					struct krow k;
					krow_run(&k, w, n, bits[b], groups[g], a, 0, flags[f]);
					check_bounds(&k, w, n);
					krow_free(&k);
				}
	free(w);
}

static void test_edge_groups(void **state)
{
	(void)state;
	float w[200];
	struct krow k;

	/* zeros: exact */
	memset(w, 0, sizeof(w));
	krow_run(&k, w, 200, 3, 64, 200, 4, QS_ADPQ_FOLD);
	for (int i = 0; i < 200; i++)
		assert_true(k.out[i] == 0.0f);
	krow_free(&k);

	/* all equal, positive and negative groups; the row's K = 10 tied
	 * outliers are the first 10 of the larger magnitude, all in group 2 */
	for (int i = 0; i < 200; i++)
		w[i] = i < 128 ? 0.375f : -1.5f;
	krow_run(&k, w, 200, 3, 64, 500, 0, QS_ADPQ_FOLD);
	check_bounds(&k, w, 200);
	assert_int_equal(k.r.counts[0], 0);
	assert_int_equal(k.r.counts[1], 0);
	assert_int_equal(k.r.counts[2], 10);
	assert_int_equal(k.r.counts[3], 0);
	for (int i = 0; i < 10; i++)
		assert_int_equal(k.r.idx[i], i);
	for (int i = 0; i < 200; i++)
		assert_true(fabsf(k.out[i] - w[i]) <= 0.01f * fabsf(w[i]));
	krow_free(&k);
	krow_run(&k, w, 200, 3, 64, 500, 0, QS_ADPQ_SCALES_F16);
	for (int i = 0; i < 200; i++)
		assert_true(k.out[i] == w[i]);  /* fp16 min holds the value exactly */
	krow_free(&k);

	/* exactly k+2 tied at the top: the first k of them win */
	for (int i = 0; i < 64; i++)
		w[i] = 0.001f * (float)(i % 5);
	w[3] = 1.0f;
	w[9] = -1.0f;
	w[30] = 1.0f;
	w[31] = -1.0f;
	w[60] = 1.0f;
	krow_run(&k, w, 64, 4, 64, 500, 0, 0);  /* k = 3 */
	assert_int_equal(k.r.idx[0], 3);
	assert_int_equal(k.r.idx[1], 9);
	assert_int_equal(k.r.idx[2], 30);
	check_bounds(&k, w, 64);  /* 31 and 60 are inliers, on the inlier grid */
	krow_free(&k);

	/* exactly k tied at the top */
	w[31] = 0.0f;
	w[60] = 0.0f;
	krow_run(&k, w, 64, 2, 64, 500, 0, QS_ADPQ_FOLD);
	assert_int_equal(k.r.idx[0], 3);
	assert_int_equal(k.r.idx[1], 9);
	assert_int_equal(k.r.idx[2], 30);
	check_bounds(&k, w, 64);
	assert_true(k.out[3] > 0.99f && k.out[9] < -0.99f && k.out[30] > 0.99f);
	krow_free(&k);
	krow_run(&k, w, 64, 2, 64, 500, 0, QS_ADPQ_SCALES_F16);
	assert_true(k.out[3] == 1.0f && k.out[9] == -1.0f && k.out[30] == 1.0f);
	krow_free(&k);
}

static uint64_t expect_size(unsigned bits, unsigned group, unsigned a, bool f16, bool tight,
			    uint64_t R, uint64_t C);

/* The paper's threshold is one lambda' for the row, so groups carry the
 * outliers they hold: a quiet group none, a group with 9 salient weights
 * all 9 (the old per-group rule gave each group round(alpha*128)). */
static void test_variable_outliers(void **state)
{
	(void)state;
	float w[256];
	for (int i = 0; i < 256; i++)
		w[i] = 0.01f * (float)((i * 5) % 7 - 3);
	for (int j = 0; j < 9; j++)
		w[130 + 5 * j] = (j % 2 ? -1.0f : 1.0f) * (1.0f + 0.125f * (float)j);
	struct krow k;
	/* K = round(0.0352 * 256) = round(9.01) = 9 */
	krow_run(&k, w, 256, 3, 128, 352, 0, QS_ADPQ_FOLD);
	assert_int_equal(k.r.counts[0], 0);
	assert_int_equal(k.r.counts[1], 9);
	for (int j = 0; j < 9; j++)
		assert_int_equal(k.r.idx[j], 2 + 5 * j);
	check_bounds(&k, w, 256);
	/* both groups keep a fine inlier grid (0.06 over 7 steps) */
	assert_true(group_steps(&k, 0).step < 0.06f / 7 * 1.05f);
	assert_true(group_steps(&k, 1).step < 0.06f / 7 * 1.05f);
	krow_free(&k);

	/* and through the scheme's payload (unary counts, indices, codes) */
	struct qs_scheme s = make("adpq:bits=3,group=128,alpha=0.0352");
	uint64_t ps = s.ops->payload_size(&s, 1, 256);
	assert_int_equal(ps, expect_size(3, 128, 352, false, false, 1, 256));
	uint8_t *p = malloc(ps);
	void *scr = malloc(s.ops->scratch_size(&s, 1, 256));
	float d[256];
	assert_int_equal(s.ops->quantize(&s, w, 1, 256, p, scr), 0);
	assert_int_equal(s.ops->dequantize(&s, p, 1, 256, d, scr), 0);
	/* inliers within half of 0.06/7, outliers within half of 1.0/3 */
	for (int i = 0; i < 256; i++)
		assert_true(fabsf(d[i] - w[i]) < (fabsf(w[i]) > 0.5f ? 0.17f : 0.0045f));
	/* unary counts after the 8 + 4*2 meta bytes: 9 ones after one zero */
	uint8_t u[11];
	qs_kernels_ref.unpack_bits(p + 16, 0, 11, 1, u);
	assert_int_equal(u[0], 0);
	for (int i = 1; i < 10; i++)
		assert_int_equal(u[i], 1);
	assert_int_equal(u[10], 0);
	free(scr);
	free(p);
}

/* The threshold is the quantile definition: sqrt(lambda') = the K-th
 * largest |w| of the row, K = round(alpha * C); the outliers are exactly
 * the first K of the row sorted by |w| descending, then by index (checked
 * against qsort on heavy-tailed rows with ties and a short last group). */
struct mag_pos {
	float a;
	size_t i;
};

static int by_mag_desc(const void *x, const void *y)
{
	const struct mag_pos *a = x, *b = y;
	if (a->a != b->a)
		return a->a > b->a ? -1 : 1;
	return a->i < b->i ? -1 : a->i > b->i;
}

static void test_threshold_is_quantile(void **state)
{
	(void)state;
	enum { N = 1000 };
	static const unsigned alphas[] = {1, 37, 200, 512, 2500};
	static const unsigned groups[] = {64, 128, 256};
	float w[N];
	struct mag_pos m[N];
	for (size_t a = 0; a < 5; a++)
		for (size_t g = 0; g < 3; g++) {
			for (size_t i = 0; i < N; i++) {
				w[i] = heavy();
				/* ties: quantize some magnitudes coarsely */
				if (i % 7 == 0)
					w[i] = roundf(w[i] * 8.0f) / 8.0f;
				m[i].a = fabsf(w[i]);
				m[i].i = i;
			}
			qsort(m, N, sizeof(m[0]), by_mag_desc);
			struct krow k;
			krow_run(&k, w, N, 3, groups[g], alphas[a], 0, QS_ADPQ_FOLD);
			size_t K = qs_adpq_k(alphas[a], N);
			uint8_t want[N] = {0}, got[N] = {0};
			for (size_t j = 0; j < K; j++)
				want[m[j].i] = 1;
			const uint8_t *idx = k.r.idx;
			size_t total = 0;
			for (size_t gi = 0, i = 0; i < N; gi++, i += groups[g]) {
				for (unsigned o = 0; o < k.r.counts[gi]; o++)
					got[i + idx[o]] = 1;
				idx += k.r.counts[gi];
				total += k.r.counts[gi];
			}
			assert_int_equal(total, K);
			assert_memory_equal(got, want, N);
			krow_free(&k);
		}
}

/* Output error |(W - Q) X^T|^2 = sum over rows of e H e^T (e = w - q). */
static double output_err(const float *w, const float *q, const float *h, size_t R, size_t C)
{
	double tot = 0.0;
	double *e = malloc(C * sizeof(double));
	for (size_t r = 0; r < R; r++) {
		for (size_t j = 0; j < C; j++)
			e[j] = (double)w[r * C + j] - (double)q[r * C + j];
		for (size_t i = 0; i < C; i++) {
			double a = 0.0;
			for (size_t j = 0; j < C; j++)
				a += (double)h[i * C + j] * e[j];
			tot += e[i] * a;
		}
	}
	free(e);
	return tot;
}

/* adpq with --hessian: quantize_prep with a Hessian (s.stats as the plan
 * sets it) or without.  Returns the dequantized weights. */
static float *adpq_run(const char *spec, const float *w, size_t R, size_t C, const float *h,
		       uint8_t **payload, uint64_t *psize)
{
	struct qs_scheme s = make(spec);
	s.stats = h ? QS_WANT_HESSIAN : 0;
	uint64_t ps = s.ops->payload_size(&s, R, C);
	uint8_t *p = malloc(ps);
	void *scr = malloc(s.ops->scratch_size(&s, R, C));
	void *prep = malloc(s.ops->prep_size(&s, C));
	float *d = malloc(R * C * sizeof(float));
	struct qs_tensor_stats st = {.name = "m.w", .cols = C, .hessian = h};
	struct qs_diag dg;
	assert_int_equal(s.ops->prepare(&s, &st, prep, &dg), 0);
	assert_int_equal(s.ops->quantize_prep(&s, prep, w, R, C, p, scr), 0);
	/* the payload is plain adpq: the scheme's dequantize reads it */
	assert_int_equal(s.ops->dequantize(&s, p, R, C, d, scr), 0);
	free(scr);
	free(prep);
	*payload = p;
	*psize = ps;
	return d;
}

/* AdpQ's separation, then GPTQ's compensation: on correlated calibration
 * activations the output error is well below the calibration-free
 * scheme's, with the same outliers, grids and size; without a Hessian
 * quantize_prep is the plain scheme byte for byte. */
static void test_hessian_compensation(void **state)
{
	(void)state;
	enum { R = 48, C = 320, N = 640 };
	float *w = malloc(R * C * sizeof(float)), *x = malloc((size_t)N * C * sizeof(float));
	float *h = calloc((size_t)C * C, sizeof(float));
	for (size_t i = 0; i < (size_t)R * C; i++)
		w[i] = heavy();
	/* activations with a shared component and hot channels */
	for (size_t n = 0; n < N; n++) {
		double common = 2.0 * unif() - 1.0;
		for (size_t j = 0; j < C; j++) {
			double v = 0.6 * common + (2.0 * unif() - 1.0) * (j % 37 == 0 ? 4.0 : 1.0);
			x[n * C + j] = (float)v;
		}
	}
	for (size_t n = 0; n < N; n++)
		for (size_t i = 0; i < C; i++)
			for (size_t j = 0; j < C; j++)
				h[i * C + j] += x[n * C + i] * x[n * C + j];
	static const char *const specs[] = {"adpq:bits=3", "adpq:bits=4,group=64,alpha=0.01",
					    "adpq:bits=2,layout=tight,scales=f16"};
	for (size_t k = 0; k < 3; k++) {
		uint8_t *p0, *p1, *p2;
		uint64_t s0, s1, s2;
		float *d0 = adpq_run(specs[k], w, R, C, NULL, &p0, &s0);
		float *d1 = adpq_run(specs[k], w, R, C, h, &p1, &s1);
		assert_int_equal(s0, s1);
		double e0 = output_err(w, d0, h, R, C), e1 = output_err(w, d1, h, R, C);
		printf("%s: output error %.4g plain, %.4g with H (%.2f dB)\n", specs[k], e0, e1,
		       10.0 * log10(e0 / e1));
		assert_true(e1 < 0.8 * e0);
		/* plain quantize gives the same bytes as quantize_prep without H */
		struct qs_scheme s = make(specs[k]);
		p2 = malloc(s0);
		void *scr = malloc(s.ops->scratch_size(&s, R, C));
		assert_int_equal(s.ops->quantize(&s, w, R, C, p2, scr), 0);
		s2 = s0;
		assert_memory_equal(p0, p2, s2);
		free(scr);
		free(p0), free(p1), free(p2), free(d0), free(d1);
	}
	free(w), free(x), free(h);
}

/* payload_size as documented in adpq.c */
static uint64_t expect_size(unsigned bits, unsigned group, unsigned a, bool f16, bool tight,
			    uint64_t R, uint64_t C)
{
	uint64_t G = (C + group - 1) / group;
	uint64_t K = qs_adpq_k(a, C);
	unsigned L = group == 64 ? 6 : group == 128 ? 7 : 8;
	uint64_t meta = f16 ? 8 * R * G : 8 * R + 4 * R * G;
	uint64_t codes = tight ? (R * C * bits + 7) / 8 : bits * R * ((C + 7) / 8);
	return meta + (R * (G + K) + 7) / 8 + (R * K * L + 7) / 8 + codes;
}

static void test_payload_canary_roundtrip(void **state)
{
	(void)state;
	static const unsigned bits[] = {2, 3, 4}, groups[] = {64, 128, 256};
	static const uint64_t shapes[][2] = {{3, 256}, {2, 300}, {5, 7}, {1, 1000}, {4, 1}};
	for (size_t b = 0; b < 3; b++)
		for (size_t g = 0; g < 3; g++)
			for (int v = 0; v < 4; v++)
				for (size_t sh = 0; sh < 5; sh++) {
					char spec[128];
					bool f16 = v & 1, tight = v & 2;
					snprintf(spec, sizeof(spec),
						 "adpq:bits=%u,group=%u,alpha=0.03,search=8,scales=%s,layout=%s",
						 bits[b], groups[g], f16 ? "f16" : "u8",
						 tight ? "tight" : "planes");
					struct qs_scheme s = make(spec);
					uint64_t R = shapes[sh][0], C = shapes[sh][1];
					uint64_t ps = s.ops->payload_size(&s, R, C);
					assert_int_equal(ps, expect_size(bits[b], groups[g], 300, f16,
									 tight, R, C));
					uint64_t ss = s.ops->scratch_size(&s, R, C);
					float *w = malloc(R * C * sizeof(float));
					float *d = malloc(R * C * sizeof(float));
					uint8_t *p = malloc(ps + 16);
					uint8_t *scr = malloc(ss + 1);
					for (uint64_t i = 0; i < R * C; i++)
						w[i] = heavy();
					memset(p, 0xa5, ps + 16);
					assert_int_equal(s.ops->quantize(&s, w, R, C, p, scr + 1), 0);
					for (int i = 0; i < 16; i++)
						assert_int_equal(p[ps + i], 0xa5);
					/* deterministic: the same bytes again */
					uint8_t *p2 = malloc(ps + 1);
					assert_int_equal(s.ops->quantize(&s, w, R, C, p2, scr), 0);
					assert_memory_equal(p, p2, ps);
					assert_int_equal(s.ops->dequantize(&s, p, R, C, d, scr + 1), 0);
					/* the ops agree with the row kernel */
					for (uint64_t r = 0; r < R; r++) {
						struct krow k;
						krow_run(&k, w + r * C, C, bits[b], groups[g], 300, 8,
							 (f16 ? QS_ADPQ_SCALES_F16 : 0) |
								 (tight ? 0 : QS_ADPQ_FOLD));
						assert_memory_equal(k.out, d + r * C, C * sizeof(float));
						krow_free(&k);
					}
					free(p2);
					free(scr);
					free(p);
					free(d);
					free(w);
				}
}

static void test_planes(void **state)
{
	(void)state;
	uint8_t codes[21], back[21], dst[3 * 8];
	for (int i = 0; i < 21; i++)
		codes[i] = (uint8_t)((i * 5) & 7);
	memset(dst, 0xff, sizeof(dst));
	qs_ref_pack_planes(codes, 21, 3, dst, 8);
	for (unsigned b = 0; b < 3; b++)
		for (int i = 0; i < 24; i++) {
			unsigned bit = (dst[b * 8 + i / 8] >> (i % 8)) & 1u;
			assert_int_equal(bit, i < 21 ? (codes[i] >> b) & 1u : 0);
		}
	assert_int_equal(dst[3], 0xff);  /* beyond ceil(n/8): untouched */
	qs_ref_unpack_planes(dst, 8, 21, 3, back);
	assert_memory_equal(codes, back, 21);
}

/* The source bytes of w[n] as `kind` (bf16 by truncation: any bf16 is
 * a test value), and their exact f32 values back in w. */
static void *encode_src(unsigned kind, float *w, size_t n)
{
	size_t esz = kind == QS_SRC_KIND_F32 ? 4 : 2;
	uint8_t *src = malloc(n * esz);
	for (size_t i = 0; i < n; i++) {
		uint32_t u;
		memcpy(&u, &w[i], 4);
		uint16_t h = kind == QS_SRC_KIND_BF16 ? (uint16_t)(u >> 16) : qs_f32_to_f16(w[i]);
		if (kind == QS_SRC_KIND_F32)
			memcpy(src + 4 * i, &w[i], 4);
		else
			memcpy(src + 2 * i, &h, 2);
	}
	assert_int_equal(qs_kernels_ref.decode_checked(kind, src, w, n) <= n, 1);
	return src;
}

struct row_log {
	uint64_t next;
	int in_order;
};

static void log_row(void *user, uint64_t row)
{
	struct row_log *l = user;
	l->in_order &= row == l->next;
	l->next = row + 1;
}

/* quantize_src (issue 16's one pass: a row decoded into the caller's
 * buffer and quantized there) gives quantize()'s payload on the decoded
 * chunk, byte for byte, for every source kind and a spread of the
 * parameters; with NaN/Inf it counts them all, and with sanitize its
 * payload is that of the sanitized chunk; an overflow is -QS_ETOOBIG while
 * the NaNs of the rows after it are still counted. */
static void test_quantize_src(void **state)
{
	(void)state;
	static const char *const specs[] = {
		"adpq:bits=3", "adpq:bits=2,group=64,scales=f16", "adpq:bits=4,layout=tight,search=0",
		"adpq:bits=3,group=256,alpha=0.05,search=16",
	};
	const size_t R = 5, C = 300, n = R * C;
	float *w = malloc(n * sizeof(float)), *dec = malloc(n * sizeof(float));
	float *row = aligned_alloc(64, (C * sizeof(float) + 63) / 64 * 64);
	for (size_t si = 0; si < sizeof(specs) / sizeof(specs[0]); si++) {
		struct qs_scheme s = make(specs[si]);
		assert_non_null(s.ops->quantize_src);
		uint64_t ps = s.ops->payload_size(&s, R, C);
		uint8_t *want = malloc(ps), *got = malloc(ps);
		void *scr = malloc(s.ops->scratch_size(&s, R, C));
		for (unsigned kind = QS_SRC_KIND_BF16; kind <= QS_SRC_KIND_F32; kind++) {
			for (int planted = 0; planted < 2; planted++) {
				for (size_t i = 0; i < n; i++)
					w[i] = heavy();
				size_t nan_want = 0;
				if (planted) {
					w[C + 3] = NAN;
					w[2 * C + 299] = INFINITY;
					w[4 * C] = -INFINITY;
					nan_want = 3;
				}
				void *src = encode_src(kind, w, n);
				for (int sanitize = 0; sanitize < 2; sanitize++) {
					memcpy(dec, w, n * sizeof(float));
					if (sanitize)
						qs_sanitize_scalar(dec, n);
					memset(want, 0xa5, ps);
					memset(got, 0x5a, ps);
					struct row_log l = {0, 1};
					struct qs_row_hook hook = {log_row, &l};
					size_t bad = 0;
					int rc = s.ops->quantize_src(&s, kind, src, R, C, sanitize, got, scr,
								     row, &bad, &hook);
					assert_int_equal(bad, nan_want);
					assert_true(l.in_order && l.next == R);
					if (planted && !sanitize)
						continue;  /* the payload is not used: the pipeline fails */
					assert_int_equal(rc, 0);
					assert_int_equal(s.ops->quantize(&s, dec, R, C, want, scr), 0);
					assert_memory_equal(got, want, ps);
				}
				free(src);
			}
		}
		/* a group that overflows the scales in row 1, a NaN in row 3 */
		for (size_t i = 0; i < n; i++)
			w[i] = heavy();
		w[C + 7] = 1e9f;
		w[3 * C + 1] = NAN;
		void *src = encode_src(QS_SRC_KIND_F32, w, n);
		size_t bad = 0;
		assert_int_equal(s.ops->quantize_src(&s, QS_SRC_KIND_F32, src, R, C, 0, got, scr, row,
						     &bad, NULL),
				 -QS_ETOOBIG);
		assert_int_equal(bad, 1);
		bad = 0;
		assert_int_equal(s.ops->quantize_src(&s, QS_SRC_KIND_F32, src, R, C, 1, got, scr, row,
						     &bad, NULL),
				 -QS_ETOOBIG);
		free(src);
		free(want);
		free(got);
		free(scr);
	}
	free(w);
	free(dec);
	free(row);
}

static void test_overflow_and_corrupt(void **state)
{
	(void)state;
	struct qs_scheme s = make("adpq:bits=3,group=64,alpha=0.05");
	float w[74];
	uint8_t scr[4096], p[256];
	float d[74];
	for (int i = 0; i < 74; i++)
		w[i] = heavy();
	assert_true(s.ops->scratch_size(&s, 1, 74) <= sizeof(scr));
	assert_true(s.ops->payload_size(&s, 1, 74) <= sizeof(p));
	w[7] = INFINITY;
	assert_int_equal(s.ops->quantize(&s, w, 1, 74, p, scr), -QS_ETOOBIG);
	/* u8 scales reach 255 x 65504 */
	w[7] = 1e7f;
	assert_int_equal(s.ops->quantize(&s, w, 1, 74, p, scr), 0);
	w[7] = 1e8f;
	assert_int_equal(s.ops->quantize(&s, w, 1, 74, p, scr), -QS_ETOOBIG);
	struct qs_scheme s0 = make("adpq:bits=3,group=64,alpha=0");
	w[7] = 1e9f;
	assert_int_equal(s0.ops->quantize(&s0, w, 1, 74, p, scr), -QS_ETOOBIG);
	w[7] = -1e8f;
	assert_int_equal(s0.ops->quantize(&s0, w, 1, 74, p, scr), -QS_ETOOBIG);
	struct qs_scheme s16 = make("adpq:bits=3,group=64,alpha=0.05,scales=f16");
	w[7] = 1e6f;  /* the outlier step (1e6 - omin)/3 overflows fp16 */
	assert_int_equal(s16.ops->quantize(&s16, w, 1, 74, p, scr), -QS_ETOOBIG);
	w[7] = 6e4f;
	assert_int_equal(s16.ops->quantize(&s16, w, 1, 74, p, scr), 0);
	w[7] = 0.5f;
	assert_int_equal(s.ops->quantize(&s, w, 1, 74, p, scr), 0);
	/* K = round(3.7) = 4 in 2 groups: unary counts (6 bits, 1 byte) then
	 * 4 six-bit indices.  Counts {3, 1} with the last index past the end
	 * of the 10-weight group: refused */
	uint64_t meta = 8 + 4 * 2;
	assert_int_equal(s.ops->dequantize(&s, p, 1, 74, d, scr), 0);
	qs_kernels_ref.pack_bits((const uint8_t[]){1, 1, 1, 0, 1, 0}, 6, 1, p + meta, 0);
	qs_kernels_ref.pack_bits((const uint8_t[]){0, 1, 2, 9}, 4, 6, p + meta + 1, 0);
	assert_int_equal(s.ops->dequantize(&s, p, 1, 74, d, scr), 0);
	qs_kernels_ref.pack_bits((const uint8_t[]){63}, 1, 6, p + meta + 1, 18);
	assert_int_equal(s.ops->dequantize(&s, p, 1, 74, d, scr), -QS_EFORMAT);
	/* counts that do not describe 2 groups: a third zero, or a one after
	 * the last group */
	qs_kernels_ref.pack_bits((const uint8_t[]){0, 1, 2, 9}, 4, 6, p + meta + 1, 0);
	qs_kernels_ref.pack_bits((const uint8_t[]){1, 1, 0, 1, 0, 0}, 6, 1, p + meta, 0);
	assert_int_equal(s.ops->dequantize(&s, p, 1, 74, d, scr), -QS_EFORMAT);
	qs_kernels_ref.pack_bits((const uint8_t[]){1, 1, 1, 0, 0, 1}, 6, 1, p + meta, 0);
	assert_int_equal(s.ops->dequantize(&s, p, 1, 74, d, scr), -QS_EFORMAT);
	/* all 4 outliers in the short group: a valid payload (the unary code
	 * of 6 bits cannot describe more than K = 4 outliers in all) */
	qs_kernels_ref.pack_bits((const uint8_t[]){0, 1, 1, 1, 1, 0}, 6, 1, p + meta, 0);
	assert_int_equal(s.ops->dequantize(&s, p, 1, 74, d, scr), 0);
}

static double sqnr(const char *spec, const float *w, size_t R, size_t C)
{
	struct qs_scheme s = make(spec);
	uint8_t *p = malloc(s.ops->payload_size(&s, R, C));
	void *scr = malloc(s.ops->scratch_size(&s, R, C));
	float *d = malloc(R * C * sizeof(float));
	assert_int_equal(s.ops->quantize(&s, w, R, C, p, scr), 0);
	assert_int_equal(s.ops->dequantize(&s, p, R, C, d, scr), 0);
	double a = 0, e = 0;
	for (size_t i = 0; i < R * C; i++) {
		a += (double)w[i] * w[i];
		e += ((double)w[i] - d[i]) * ((double)w[i] - d[i]);
	}
	free(d);
	free(scr);
	free(p);
	return 10 * log10(a / e);
}

static void test_sqnr_beats_rtn(void **state)
{
	(void)state;
	const size_t R = 16, C = 1024;
	float *w = malloc(R * C * sizeof(*w));
	for (size_t i = 0; i < R * C; i++)
		w[i] = heavy();
	for (unsigned b = 2; b <= 4; b++) {
		char a[64], r[64];
		snprintf(a, sizeof(a), "adpq:bits=%u", b);
		snprintf(r, sizeof(r), "rtn:bits=%u,group=128", b);
		double qa = sqnr(a, w, R, C), qr = sqnr(r, w, R, C);
		assert_true(qa > qr + 3.0);
		/* range search never loses to the full range */
		snprintf(r, sizeof(r), "adpq:bits=%u,search=0", b);
		assert_true(qa >= sqnr(r, w, R, C) - 0.01);
	}
	free(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_k_rounding),
		cmocka_unit_test(test_hand_checked),
		cmocka_unit_test(test_bounds_every_bits_group),
		cmocka_unit_test(test_edge_groups),
		cmocka_unit_test(test_variable_outliers),
		cmocka_unit_test(test_threshold_is_quantile),
		cmocka_unit_test(test_hessian_compensation),
		cmocka_unit_test(test_payload_canary_roundtrip),
		cmocka_unit_test(test_planes),
		cmocka_unit_test(test_overflow_and_corrupt),
		cmocka_unit_test(test_quantize_src),
		cmocka_unit_test(test_sqnr_beats_rtn),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_daq_qform.c - daq's incremental e^T H e (daq_qform.c) against the
 * direct O(n^2) sum over random walks of candidates on many random groups,
 * hostile ones included (NaN weights, a constant group, a huge dynamic
 * range with a large offset, indefinite and singular H blocks, short
 * groups): every candidate's codes equal nearest_code's and its E the
 * direct form's within a tolerance relative to sum |e_i| |H_ij| |e_j|;
 * and the daq scheme's output for an asymmetric H equals its output for
 * the symmetrized H; and the scheme's LDRA picks, group by group, what the
 * same walk with every E evaluated directly picks. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "daq_qform.h"
#include "kernels.h"
#include "qshard.h"
#include "scheme.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}
static double urand(void)  /* [-1, 1) */
{
	return (double)(rnd() >> 11) * 0x1p-52 - 1.0;
}

static const float nf4[16] = {
	-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
	-0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
	0.07958029955625534f, 0.16093020141124725f, 0.24611230850220947f,
	0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
	0.7229568362236023f, 1.0f,
};

enum { H_PSD, H_INDEFINITE, H_SINGULAR, H_DIAGONAL, H_KINDS };

/* h = A A^T (positive semi-definite, rank r), or symmetric random
 * entries (indefinite), or a diagonal. */
static void make_h(float *h, size_t n, int kind)
{
	static double a[256 * 256];
	size_t r = kind == H_SINGULAR ? 1 + rnd() % 8 : n;
	for (size_t i = 0; i < n * r; i++)
		a[i] = urand();
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j <= i; j++) {
			double v = 0;
			if (kind == H_INDEFINITE)
				v = urand() * 10;
			else if (kind == H_DIAGONAL)
				v = i == j ? 1 + 100 * fabs(urand()) : 0;
			else
				for (size_t k = 0; k < r; k++)
					v += a[i * r + k] * a[j * r + k];
			h[i * n + j] = h[j * n + i] = (float)v;
		}
}

enum { W_PLAIN, W_NAN, W_CONST, W_RANGE, W_ALLNAN_BUT_ONE, W_KINDS };

static void make_w(float *w, size_t n, int kind)
{
	double off = kind == W_RANGE ? 3000.0 : urand() * 0.01;
	for (size_t i = 0; i < n; i++) {
		double v = urand() * 0.05 + off;
		if (kind == W_RANGE && i % 17 == 3)
			v = off + urand() * 30000.0;  /* a far tail */
		if (kind == W_CONST)
			v = off;
		w[i] = (float)v;
	}
	if (kind == W_NAN)
		for (size_t i = 0; i < n; i += 1 + rnd() % 9)
			w[i] = NAN;
	if (kind == W_ALLNAN_BUT_ONE)
		for (size_t i = 0; i < n; i++)
			if (i != n / 2)
				w[i] = NAN;
}

/* sum |e_i| |H_ij| |e_j|, e of (z, s, codes): the size E's rounding scales with */
static double abs_form(const float *h, const float *w, size_t n, double z, double s,
		       const uint8_t *c)
{
	double e[128], t = 0;
	for (size_t i = 0; i < n; i++)
		e[i] = w[i] == w[i] ? fabs((double)w[i] - (z + s * nf4[c[i]])) : 0;
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n; j++)
			t += e[i] * fabs((double)h[i * n + j]) * e[j];
	return t;
}

static float f16r(double v)
{
	return qs_f16_to_f32(qs_f32_to_f16((float)v));
}

static void test_eval_matches_direct(void **state)
{
	(void)state;
	static float h[128 * 128];
	float w[128], mid[15];
	uint8_t codes[128], ref[128], base[128];
	const struct qs_kernels *k = qs_kernels_get();
	for (unsigned b = 0; b < 15; b++)
		mid[b] = 0.5f * (nf4[b] + nf4[b + 1]);
	unsigned checked = 0, changed = 0;
	for (unsigned g = 0; g < 400; g++) {
		size_t n = g % 5 == 4 ? 1 + rnd() % 127 : 128;
		int hk = (int)(g % H_KINDS), wk = (int)((g / H_KINDS) % W_KINDS);
		make_h(h, n, hk);
		make_w(w, n, wk);
		double lo = INFINITY, hi = -INFINITY;
		for (size_t i = 0; i < n; i++)
			if (w[i] == w[i]) {
				lo = fmin(lo, w[i]);
				hi = fmax(hi, w[i]);
			}
		float z = f16r(0.5 * (lo + hi)), s = f16r(fmax(0.5 * (hi - lo), 1e-3));
		float inv = 1.0f / s;
		k->nearest_code(w, n, z, inv, mid, 15, codes);
		struct qs_daq_qform q;
		qs_daq_qform_init(&q, h, w, nf4, mid, 15, n, z, s, inv, codes);
		memcpy(base, codes, n);
		double scale0 = abs_form(h, w, n, z, s, codes);
		assert_true(fabs(q.eb - qs_daq_qform_direct(h, w, nf4, n, z, s, codes)) <=
			    1e-12 * scale0 + 1e-300);
		float bz = z, bs = s;
		/* the vectors carry one rounding per base move, of the size of
		 * the errors then: the tolerance grows with the moves and the
		 * largest |e|^T |H| |e| seen */
		double seen = scale0;
		unsigned moves = 0;
		for (unsigned t = 0; t < 120; t++) {
			/* steps of the walk's sizes (s/32 down to tiny) and now
			 * and then a far jump */
			double a = (double)bs / 32.0 * (1.0 - t / 120.0);
			if (t % 29 == 7)
				a = (double)bs * 0.5;
			float cz = f16r(bz + urand() * a), cs = f16r(bs + urand() * a);
			if (!(cs > 0))
				cs = bs;
			float ci = 1.0f / cs;
			double e = qs_daq_qform_eval(&q, cz, cs, ci, codes);
			k->nearest_code(w, n, cz, ci, mid, 15, ref);
			for (size_t i = 0; i < n; i++)
				if (codes[i] != ref[i])
					fail_msg("group %u step %u: code %zu is %u, nearest_code %u", g,
						 t, i, codes[i], ref[i]);
			double d = qs_daq_qform_direct(h, w, nf4, n, cz, cs, codes);
			double sc = abs_form(h, w, n, cz, cs, codes) + abs_form(h, w, n, bz, bs, base);
			seen = fmax(seen, sc);
			if (!(fabs(e - d) <= 1e-13 * (1 + moves) * seen + 1e-300))
				fail_msg("group %u (H %d, w %d, n %zu) step %u: E %.17g, direct "
					 "%.17g, scale %g",
					 g, hk, wk, n, t, e, d, sc);
			checked++;
			changed += memcmp(codes, base, n) != 0;
			if (rnd() % 3 == 0) {
				qs_daq_qform_commit(&q);
				memcpy(base, codes, n);
				bz = cz;
				bs = cs;
				moves++;
			}
		}
	}
	/* the walks did move codes around (not only the trivial k = 0) */
	print_message("%u candidates, %u with codes off the base's\n", checked, changed);
	assert_true(changed > checked / 4);
}

/* An asymmetric H block acts as (H + H^T) / 2, which has the same e^T H e:
 * the output equals the symmetrized H's (daq.c copy_blocks). */
static void test_asymmetric_h(void **state)
{
	(void)state;
	const size_t rows = 4, cols = 256;
	static float w[4 * 256], ha[256 * 256], hs[256 * 256];
	for (size_t i = 0; i < rows * cols; i++)
		w[i] = (float)(urand() * 0.1);
	make_h(hs, cols, H_PSD);
	for (size_t i = 0; i < cols; i++)
		for (size_t j = 0; j < i; j++) {
			float d = (float)(urand() * 0.25);
			ha[i * cols + j] = hs[i * cols + j] + d;
			ha[j * cols + i] = hs[j * cols + i] - d;
		}
	for (size_t i = 0; i < cols; i++)
		ha[i * cols + i] = hs[i * cols + i];
	/* hs made exactly the symmetrization daq computes */
	for (size_t i = 0; i < cols; i++)
		for (size_t j = 0; j < i; j++) {
			float u = ha[i * cols + j], v = ha[j * cols + i];
			hs[i * cols + j] = hs[j * cols + i] = (float)(0.5 * ((double)u + (double)v));
		}
	struct qs_scheme s;
	struct qs_diag d;
	memset(&d, 0, sizeof(d));
	assert_int_equal(qs_scheme_parse("daq", &s, &d), 0);
	s.stats = QS_WANT_HESSIAN;
	uint64_t p = s.ops->payload_size(&s, rows, cols);
	uint8_t *out[2];
	for (int v = 0; v < 2; v++) {
		struct qs_tensor_stats st = {.name = "t", .cols = cols, .hessian = v ? hs : ha};
		void *prep = malloc(s.ops->prep_size(&s, cols));
		void *scr = malloc(s.ops->scratch_size(&s, rows, cols));
		out[v] = malloc(p);
		assert_non_null(prep);
		assert_non_null(scr);
		assert_non_null(out[v]);
		assert_int_equal(s.ops->prepare(&s, &st, prep, &d), 0);
		assert_int_equal(s.ops->quantize_prep(&s, prep, w, rows, cols, out[v], scr), 0);
		free(prep);
		free(scr);
	}
	assert_memory_equal(out[0], out[1], p);
	free(out[0]);
	free(out[1]);
}

static float f16_up(float v)
{
	uint16_t h = qs_f32_to_f16(v);
	float f = qs_f16_to_f32(h);
	return f < v ? qs_f16_to_f32((uint16_t)(h + 1)) : f;
}

/* E of (z, s) by the definition: nearest_code's codes, the direct sum */
static double direct_e(const float *h, const float *w, size_t n, float z, float s,
		       const float *mid)
{
	uint8_t c[128];
	qs_kernels_get()->nearest_code(w, n, z, 1.0f / s, mid, 15, c);
	return qs_daq_qform_direct(h, w, nf4, n, z, s, c);
}

/* LDRA as daq.c's header defines it, every E evaluated directly, from the
 * aligned start (z0, s0): the (z, s) of least E. */
static void ref_walk(const float *h, const float *w, size_t n, float z, float s,
		     const float *mid, unsigned iters, float *oz, float *os)
{
	float mn = INFINITY, mx = -INFINITY;
	for (size_t i = 0; i < n; i++) {
		mn = fminf(mn, w[i]);
		mx = fmaxf(mx, w[i]);
	}
	double be = direct_e(h, w, n, z, s, mid);
	float bz = z, bs = s;
#define TRY(zz, ss, out)                                                    \
	do {                                                                \
		float zz_ = f16r(zz), ss_ = f16r(ss);                       \
		(out) = INFINITY;                                           \
		if (!(ss_ > 0))                                             \
			break;                                              \
		(out) = direct_e(h, w, n, zz_, ss_, mid);                   \
		if ((out) < be) {                                           \
			be = (out);                                         \
			bz = zz_;                                           \
			bs = ss_;                                           \
		}                                                           \
	} while (0)
	double ce, sp, sm, zp, zm, cur;
	float cover = f16_up(fmaxf(mx - z, z - mn));
	TRY(z, cover, ce);
	if (bs == cover)
		s = cover;
	float a0 = s * (1.0f / 32.0f);
	for (unsigned t = 0; t < iters; t++) {
		float a = a0 * (1.0f - (float)t / (float)iters), d = 0.25f * a;
		TRY(z, s + d, sp);
		TRY(z, s - d, sm);
		TRY(z + d, s, zp);
		TRY(z - d, s, zm);
		double gs = sp - sm, gz = zp - zm;
		float ns = f16r(gs > 0 ? s - a : gs < 0 ? s + a : s);
		float nz = f16r(gz > 0 ? z - a : gz < 0 ? z + a : z);
		if (ns > 0)
			s = ns;
		z = nz;
		TRY(z, s, cur);
	}
#undef TRY
	(void)ce;
	(void)cur;
	*oz = bz;
	*os = bs;
}

/* The daq scheme with --hessian makes the same choice as LDRA evaluated
 * directly on (nearly) every group: the evaluator changes only the
 * rounding of E, so only near-ties may go the other way, and those lose
 * nothing measurable (the direct E of both choices agree to 1e-9). */
static void test_search_matches_direct_walk(void **state)
{
	(void)state;
	enum { R = 16, C = 256, G = 128, NG = C / G };
	static float w[R * C], h[C * C], mid[15];
	for (unsigned b = 0; b < 15; b++)
		mid[b] = 0.5f * (nf4[b] + nf4[b + 1]);
	for (size_t i = 0; i < R * C; i++)
		w[i] = (float)(urand() * 0.03 + (i % 41 == 0 ? 0.2 : 0.0));
	make_h(h, C, H_PSD);
	uint8_t *out[2];
	for (int v = 0; v < 2; v++) {
		struct qs_scheme s;
		struct qs_diag d;
		memset(&d, 0, sizeof(d));
		assert_int_equal(qs_scheme_parse(v ? "daq:iters=25" : "daq:iters=0", &s, &d), 0);
		s.stats = QS_WANT_HESSIAN;
		struct qs_tensor_stats st = {.name = "t", .cols = C, .hessian = h};
		void *prep = malloc(s.ops->prep_size(&s, C));
		void *scr = malloc(s.ops->scratch_size(&s, R, C));
		out[v] = malloc(s.ops->payload_size(&s, R, C));
		assert_int_equal(s.ops->prepare(&s, &st, prep, &d), 0);
		assert_int_equal(s.ops->quantize_prep(&s, prep, w, R, C, out[v], scr), 0);
		free(prep);
		free(scr);
	}
	unsigned same = 0;
	for (size_t r = 0; r < R; r++)
		for (size_t j = 0; j < NG; j++) {
			uint16_t s16, z16;
			size_t at = r * NG + j;
			memcpy(&s16, out[0] + 2 * at, 2);
			memcpy(&z16, out[0] + 2 * (R * NG + at), 2);
			/* the block of H over group j's columns */
			static float hb[G * G];
			for (size_t a = 0; a < G; a++)
				for (size_t b = 0; b < G; b++)
					hb[a * G + b] = h[(j * G + a) * C + j * G + b];
			const float *wg = w + r * C + j * G;
			float rz, rs;
			ref_walk(hb, wg, G, qs_f16_to_f32(z16), qs_f16_to_f32(s16), mid, 25, &rz, &rs);
			memcpy(&s16, out[1] + 2 * at, 2);
			memcpy(&z16, out[1] + 2 * (R * NG + at), 2);
			float gz = qs_f16_to_f32(z16), gs = qs_f16_to_f32(s16);
			if (gz == rz && gs == rs) {
				same++;
				continue;
			}
			double eg = direct_e(hb, wg, G, gz, gs, mid), er = direct_e(hb, wg, G, rz, rs, mid);
			if (!(fabs(eg - er) <= 1e-9 * fabs(er)))
				fail_msg("row %zu group %zu: (%g, %g) E %.17g, direct walk (%g, %g) E %.17g",
					 r, j, gz, gs, eg, rz, rs, er);
		}
	print_message("%u of %u groups chose what the direct walk chose\n", same, R * NG);
	assert_true(same >= R * NG * 9 / 10);
	free(out[0]);
	free(out[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_eval_matches_direct),
		cmocka_unit_test(test_asymmetric_h),
		cmocka_unit_test(test_search_matches_direct_walk),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

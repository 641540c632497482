/* test_rtn.c - the rtn scheme: hand-checked groups, the payload layout
 * against a spec-literal oracle for every bits x group, error bounds,
 * edge groups and overflow. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <float.h>
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

/* uniform in [-1, 1) */
static float urand(void)
{
	return (float)((double)(rnd() >> 11) * 0x1p-52 - 1.0);
}

static struct qs_scheme make(unsigned bits, unsigned group)
{
	struct qs_scheme s;
	char spec[64];
	snprintf(spec, sizeof(spec), "rtn:bits=%u,group=%u", bits, group);
	assert_int_equal(qs_scheme_parse(spec, &s, NULL), 0);
	return s;
}

/* ------------------------------------------------------------ the oracle */

/* Every finite fp16 value, ascending, -0 left out (the spec's min of a zero
 * group is +0). */
static struct {
	float v;
	uint16_t h;
} f16s[63490];
static size_t nf16;

static int cmp_f16(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

static void build_f16_table(void)
{
	if (nf16)
		return;
	for (uint32_t i = 0; i < 65536; i++) {
		unsigned e = (i >> 10) & 0x1f, m = i & 0x3ff;
		if (e == 0x1f || i == 0x8000)
			continue;
		double v = e ? ldexp(1024 + m, (int)e - 25) : ldexp(m, -24);
		f16s[nf16].v = (float)((i & 0x8000) ? -v : v);
		f16s[nf16].h = (uint16_t)i;
		nf16++;
	}
	qsort(f16s, nf16, sizeof(f16s[0]), cmp_f16);
}

/* index of the largest value <= x (x >= the smallest) */
static size_t f16_floor_idx(float x)
{
	size_t lo = 0, hi = nf16;
	while (hi - lo > 1) {
		size_t mid = (lo + hi) / 2;
		if (f16s[mid].v <= x)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

/* The definition in rtn.c, written out the slow way.  Returns false when
 * the group overflows. */
static bool oracle_group(const float *w, size_t n, unsigned bits, uint16_t *scale,
			 uint16_t *min, uint8_t *codes)
{
	float mn = w[0], mx = w[0];
	for (size_t i = 0; i < n; i++) {
		mn = fminf(mn, w[i]);
		mx = fmaxf(mx, w[i]);
	}
	if (fabsf(mn) > 65504.0f)
		return false;
	size_t mi = f16_floor_idx(mn);
	float minf = f16s[mi].v;
	*min = f16s[mi].h;
	volatile float qmax = (float)((1u << bits) - 1);  /* volatile: no contraction */
	volatile float s = (mx - minf) / qmax;
	size_t si = f16_floor_idx(s);
	if (f16s[si].v < s)
		si++;
	for (;;) {
		if (si >= nf16)
			return false;
		volatile float prod = qmax * f16s[si].v;
		volatile float top = minf + prod;
		if (top >= mx)
			break;
		si++;
	}
	float scalef = f16s[si].v;
	*scale = f16s[si].h;
	for (size_t i = 0; i < n; i++) {
		if (scalef == 0.0f) {
			codes[i] = 0;
			continue;
		}
		volatile float d = w[i] - minf;
		float q = nearbyintf(d / scalef);
		codes[i] = (uint8_t)(q < 0 ? 0 : q > qmax ? qmax : q);
	}
	return true;
}

/* Whole payload per the layout in rtn.c; false on overflow. */
static bool oracle_payload(const float *w, size_t rows, size_t cols, unsigned bits,
			   unsigned group, uint8_t *out, size_t size)
{
	size_t ng = (cols + group - 1) / group;
	uint8_t *codes = malloc(cols);
	assert_non_null(codes);
	memset(out, 0, size);
	uint8_t *cs = out + 4 * rows * ng;
	for (size_t r = 0; r < rows; r++) {
		for (size_t g = 0; g < ng; g++) {
			size_t i = g * group, len = cols - i < group ? cols - i : group;
			uint16_t sc, mn;
			if (!oracle_group(w + r * cols + i, len, bits, &sc, &mn, codes + i)) {
				free(codes);
				return false;
			}
			size_t k = r * ng + g;
			out[2 * k] = (uint8_t)sc;
			out[2 * k + 1] = (uint8_t)(sc >> 8);
			out[2 * (rows * ng + k)] = (uint8_t)mn;
			out[2 * (rows * ng + k) + 1] = (uint8_t)(mn >> 8);
		}
		for (size_t i = 0; i < cols; i++)
			for (unsigned b = 0; b < bits; b++) {
				uint64_t bit = ((uint64_t)r * cols + i) * bits + b;
				if ((codes[i] >> b) & 1)
					cs[bit / 8] |= (uint8_t)(1u << (bit % 8));
			}
	}
	free(codes);
	return true;
}

/* ------------------------------------------------------------- helpers */

#define CANARY 0xa5
#define SLACK 64

struct run {
	uint8_t *out;     /* payload + SLACK canary bytes */
	float *deq;
	size_t size;
	int rc;
};

/* Quantizes (into a canary-filled buffer at an odd address, with
 * misaligned scratch) and, on success, dequantizes. */
static struct run run_rtn(const struct qs_scheme *s, const float *w, size_t rows, size_t cols)
{
	struct run r = {0};
	r.size = (size_t)s->ops->payload_size(s, rows, cols);
	size_t scr = (size_t)s->ops->scratch_size(s, rows, cols);
	uint8_t *buf = malloc(r.size + SLACK + 1);
	uint8_t *scratch = malloc(scr + 1);
	assert_non_null(buf);
	assert_non_null(scratch);
	r.out = buf + 1;
	memset(r.out, CANARY, r.size + SLACK);
	r.rc = s->ops->quantize(s, w, rows, cols, r.out, scratch + 1);
	for (size_t i = 0; i < SLACK; i++)
		assert_int_equal(r.out[r.size + i], CANARY);
	if (r.rc == 0) {
		r.deq = malloc((rows * cols + 1) * sizeof(float));
		assert_non_null(r.deq);
		r.deq[rows * cols] = 1234.5f;
		assert_int_equal(s->ops->dequantize(s, r.out, rows, cols, r.deq, scratch + 1), 0);
		assert_true(r.deq[rows * cols] == 1234.5f);
	}
	free(scratch);
	return r;
}

static void run_free(struct run *r)
{
	free(r->out - 1);
	free(r->deq);
}

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

/* ----------------------------------------------------------- hand cases */

static void test_hand_0123(void **state)
{
	(void)state;
	struct qs_scheme s = make(2, 32);
	const float w[4] = {0, 1, 2, 3};
	struct run r = run_rtn(&s, w, 1, 4);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.size, 5);
	assert_int_equal(le16(r.out), 0x3c00);      /* scale 1 */
	assert_int_equal(le16(r.out + 2), 0x0000);  /* min 0 */
	assert_int_equal(r.out[4], 0xe4);           /* codes 0,1,2,3 LSB first */
	for (int i = 0; i < 4; i++)
		assert_true(r.deq[i] == w[i]);
	run_free(&r);
}

/* mn -1.5 is exact in fp16; s = 3.5/3 = 1.1666666 rounds up to
 * 1195 * 2^-10 = 1.1669921875 (0x3cab); -1.5 + 3*1.16699 = 2.00098 >= 2.
 * codes: 0, round(1.8/1.16699=1.54)=2, round(2.9992)=3, round(1.885)=2 */
static void test_hand_negative(void **state)
{
	(void)state;
	struct qs_scheme s = make(2, 64);
	const float w[4] = {-1.5f, 0.3f, 2.0f, 0.7f};
	struct run r = run_rtn(&s, w, 1, 4);
	assert_int_equal(r.rc, 0);
	assert_int_equal(le16(r.out), 0x3cab);
	assert_int_equal(le16(r.out + 2), 0xbe00);
	assert_int_equal(r.out[4], 0 | 2 << 2 | 3 << 4 | 2 << 6);
	run_free(&r);
}

/* -0.1 is not an fp16: the nearest is -0.0999755859375 (0xae66), above it,
 * so min16 is the next one down, -0.10009765625 (0xae67).
 * s = (0.9 + 0.10009765625)/3 = 0.333366 -> up to 1366 * 2^-12 (0x3556). */
static void test_hand_unrepresentable(void **state)
{
	(void)state;
	struct qs_scheme s = make(2, 128);
	const float w[4] = {-0.1f, 0.2f, 0.5f, 0.9f};
	struct run r = run_rtn(&s, w, 1, 4);
	assert_int_equal(r.rc, 0);
	assert_int_equal(le16(r.out), 0x3556);
	assert_int_equal(le16(r.out + 2), 0xae67);
	assert_int_equal(r.out[4], 0xe4);
	run_free(&r);
}

/* mn = -1, mx = 0.875 + 2^-24: mx - mn rounds (tie, to even) to 1.875, so
 * s = 0.125 exactly, an fp16; but -1 + 15*0.125 = 0.875 < mx, so the scale
 * must be bumped one fp16 step to 0.125 + 2^-13 (0x3001). */
static void test_hand_bump(void **state)
{
	(void)state;
	struct qs_scheme s = make(4, 32);
	const float w[2] = {-1.0f, 0.875f + 0x1p-24f};
	struct run r = run_rtn(&s, w, 1, 2);
	assert_int_equal(r.rc, 0);
	assert_int_equal(le16(r.out), 0x3001);
	assert_int_equal(le16(r.out + 2), 0xbc00);
	assert_int_equal(r.out[4], 0 | 15 << 4);
	run_free(&r);
}

/* codes round half to even: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2 */
static void test_hand_ties(void **state)
{
	(void)state;
	struct qs_scheme s = make(2, 32);
	const float w[5] = {0.0f, 0.5f, 1.5f, 2.5f, 3.0f};
	struct run r = run_rtn(&s, w, 1, 5);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.size, 4 + 2);
	assert_int_equal(le16(r.out), 0x3c00);
	assert_int_equal(le16(r.out + 2), 0x0000);
	assert_int_equal(r.out[4], 0 | 0 << 2 | 2 << 4 | 2 << 6);
	assert_int_equal(r.out[5], 3);
	run_free(&r);
}

/* a minimum just below zero rounds down past -0 to the smallest negative
 * subnormal, -2^-24 (0x8001) */
static void test_hand_tiny_negative_min(void **state)
{
	(void)state;
	struct qs_scheme s = make(8, 32);
	const float w[3] = {1.0f, -1e-10f, 0.5f};
	struct run r = run_rtn(&s, w, 1, 3);
	assert_int_equal(r.rc, 0);
	assert_int_equal(le16(r.out + 2), 0x8001);
	run_free(&r);
}

static void test_all_equal_and_zero(void **state)
{
	(void)state;
	struct qs_scheme s = make(4, 32);
	float w[64];
	for (int i = 0; i < 32; i++)
		w[i] = 5.0f;
	for (int i = 32; i < 64; i++)
		w[i] = (i & 1) ? 0.0f : -0.0f;
	struct run r = run_rtn(&s, w, 1, 64);
	assert_int_equal(r.rc, 0);
	assert_int_equal(le16(r.out), 0);           /* scale 0 */
	assert_int_equal(le16(r.out + 2), 0);
	assert_int_equal(le16(r.out + 4), 0x4500);  /* min 5 */
	assert_int_equal(le16(r.out + 6), 0x0000);  /* +0, never -0 */
	for (int i = 0; i < 32; i++)
		assert_int_equal(r.out[8 + i], 0);
	for (int i = 0; i < 64; i++)
		assert_true(r.deq[i] == (i < 32 ? 5.0f : 0.0f));
	run_free(&r);

	/* all -0.0: still +0 min and zero scale */
	for (int i = 0; i < 32; i++)
		w[i] = -0.0f;
	r = run_rtn(&s, w, 1, 32);
	assert_int_equal(r.rc, 0);
	assert_int_equal(le16(r.out), 0);
	assert_int_equal(le16(r.out + 2), 0);
	run_free(&r);

	/* all equal but not an fp16: a tiny non-zero scale covers it */
	for (int i = 0; i < 32; i++)
		w[i] = 0.1f;
	r = run_rtn(&s, w, 1, 32);
	assert_int_equal(r.rc, 0);
	assert_int_equal(le16(r.out + 2), 0x2e66);
	float scale = qs_f16_to_f32(le16(r.out));
	assert_true(scale > 0.0f && scale < 1e-5f);
	for (int i = 0; i < 32; i++)
		assert_true(fabsf(r.deq[i] - 0.1f) <= scale / 2 + 1e-8f);
	run_free(&r);
}

/* cols = 100, group 32: the fourth group holds 4 weights and its scale
 * comes from those alone. */
static void test_short_last_group(void **state)
{
	(void)state;
	struct qs_scheme s = make(8, 32);
	float w[2 * 100];
	for (int r = 0; r < 2; r++)
		for (int i = 0; i < 100; i++)
			w[r * 100 + i] = i < 96 ? 1000.0f * urand() : 1.0f + 0.01f * (float)(i - 96);
	struct run run = run_rtn(&s, w, 2, 100);
	assert_int_equal(run.rc, 0);
	assert_int_equal(run.size, 2 * 4 * 4 + 200);
	for (int r = 0; r < 2; r++) {
		uint16_t sc = le16(run.out + 2 * (r * 4 + 3));
		uint16_t mn = le16(run.out + 2 * (8 + r * 4 + 3));
		assert_int_equal(mn, 0x3c00);                   /* min 1 */
		float scale = qs_f16_to_f32(sc);
		assert_true(scale >= 0.03f / 255 && scale < 0.0002f);
		for (int i = 96; i < 100; i++)
			assert_true(fabsf(run.deq[r * 100 + i] - w[r * 100 + i]) <= scale / 2 + 1e-6f);
	}
	run_free(&run);
}

/* --------------------------------------------------- every combination */

static void check_against_oracle(const struct qs_scheme *s, const float *w, size_t rows,
				 size_t cols)
{
	struct run r = run_rtn(s, w, rows, cols);
	assert_int_equal(r.rc, 0);
	uint8_t *want = malloc(r.size + 1);
	assert_non_null(want);
	assert_true(oracle_payload(w, rows, cols, s->bits, s->group, want, r.size));
	if (memcmp(r.out, want, r.size) != 0) {
		size_t i = 0;
		while (r.out[i] == want[i])
			i++;
		fail_msg("%s %zux%zu: payload differs from the oracle at byte %zu of %zu",
			 s->text, rows, cols, i, r.size);
	}

	/* error bound and range, per group */
	size_t ng = (cols + s->group - 1) / s->group;
	float qmax = (float)((1u << s->bits) - 1);
	for (size_t row = 0; row < rows; row++)
		for (size_t i = 0; i < cols; i++) {
			size_t g = row * ng + i / s->group;
			float scale = qs_f16_to_f32(le16(r.out + 2 * g));
			float minf = qs_f16_to_f32(le16(r.out + 2 * (rows * ng + g)));
			volatile float prod = qmax * scale;
			volatile float top = minf + prod;
			float x = w[row * cols + i], y = r.deq[row * cols + i];
			float tol = 4 * FLT_EPSILON * (fabsf(minf) + prod);
			if (!(fabsf(y - x) <= scale / 2 + tol) || y < minf || y > top)
				fail_msg("%s: w %a -> %a (min %a scale %a)", s->text, (double)x,
					 (double)y, (double)minf, (double)scale);
		}
	free(want);
	run_free(&r);
}

static void test_every_combination(void **state)
{
	(void)state;
	build_f16_table();
	const unsigned bitss[] = {2, 3, 4, 8}, groups[] = {32, 64, 128, 256};
	const size_t colss[] = {1, 7, 13, 300, 517};
	const float mags[] = {1e-3f, 0.05f, 1.0f, 300.0f};
	for (size_t b = 0; b < 4; b++)
		for (size_t g = 0; g < 4; g++)
			for (size_t c = 0; c < 5; c++) {
				struct qs_scheme s = make(bitss[b], groups[g]);
				size_t rows = 3, cols = colss[c];
				float *w = malloc(rows * cols * sizeof(float));
				assert_non_null(w);
				for (size_t i = 0; i < rows * cols; i++) {
					float m = mags[(i / 40) % 4];
					/* an offset group now and then, a constant run */
					w[i] = m * urand() + ((i / 100) % 3 == 1 ? 2 * m : 0);
					if (i % 97 < 3)
						w[i] = 0.25f;
				}
				check_against_oracle(&s, w, rows, cols);
				free(w);
			}
}

/* bits 3 rows end mid-byte: row r's codes start at bit r*C*3 */
static void test_row_bit_offsets(void **state)
{
	(void)state;
	build_f16_table();
	struct qs_scheme s = make(3, 32);
	float w[7 * 11];
	for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++)
		w[i] = urand();
	check_against_oracle(&s, w, 7, 11);
}

static void test_sizes(void **state)
{
	(void)state;
	struct qs_scheme s = make(3, 128);
	/* 2 rows x 300: 3 groups per row; 1800 bits = 225 bytes */
	assert_int_equal(s.ops->payload_size(&s, 2, 300), 2 * 3 * 4 + 225);
	assert_int_equal(s.ops->payload_size(&s, 1, 1), 4 + 1);
	assert_int_equal(s.ops->payload_size(&s, 0, 300), 0);
	assert_true(s.ops->payload_size(&s, UINT64_MAX / 2, 1000) == UINT64_MAX);
	assert_true(s.ops->scratch_size(&s, 2, 300) >= 300 + 3 * 4);
	s = make(4, 128);
	assert_int_equal(s.ops->payload_size(&s, 4096, 4096), 4096ull * 32 * 4 + 4096ull * 2048);
}

/* ------------------------------------------------------------- overflow */

static void test_too_big(void **state)
{
	(void)state;
	struct qs_scheme s = make(4, 32);
	float w[64];
	for (int i = 0; i < 64; i++)
		w[i] = 1e6f;
	struct run r = run_rtn(&s, w, 2, 32);
	assert_int_equal(r.rc, -QS_ETOOBIG);
	run_free(&r);

	for (int i = 0; i < 64; i++)
		w[i] = -1e6f;
	r = run_rtn(&s, w, 1, 64);
	assert_int_equal(r.rc, -QS_ETOOBIG);
	run_free(&r);

	/* min fits but the scale does not: 1e6 / 3 > 65504 */
	for (int i = 0; i < 32; i++)
		w[i] = (i & 1) ? 1e6f : 0.0f;
	s = make(2, 32);
	r = run_rtn(&s, w, 1, 32);
	assert_int_equal(r.rc, -QS_ETOOBIG);
	run_free(&r);

	/* with 8 bits the same range fits */
	s = make(8, 32);
	r = run_rtn(&s, w, 1, 32);
	assert_int_equal(r.rc, 0);
	run_free(&r);

	/* the widest range whose min fits: [-65504, 65504] */
	for (int i = 0; i < 32; i++)
		w[i] = (i & 1) ? 65504.0f : -65504.0f;
	s = make(2, 32);
	r = run_rtn(&s, w, 1, 32);
	assert_int_equal(r.rc, 0);
	for (int i = 0; i < 32; i++)
		assert_true(r.deq[i] == w[i] || fabsf(r.deq[i] - w[i]) <= 43680.0f / 2);
	run_free(&r);
	w[0] = -65505.0f;
	r = run_rtn(&s, w, 1, 32);
	assert_int_equal(r.rc, -QS_ETOOBIG);
	run_free(&r);

	/* the kernel reports the count of overflowing groups */
	uint16_t sc[2], mn[2];
	uint8_t codes[64];
	for (int i = 0; i < 64; i++)
		w[i] = i < 32 ? 1.0f : 70000.0f;
	assert_int_equal(qs_kernels_ref.rtn_quantize_row(w, 64, 32, 4, sc, mn, codes), 1);
	w[0] = -70000.0f;
	assert_int_equal(qs_kernels_ref.rtn_quantize_row(w, 64, 32, 4, sc, mn, codes), 2);
}

/* Non-finite input is refused upstream, but the scheme's answer is still
 * exact: a NaN is left out of its group's range (the other weights come
 * back as without it) and an infinity makes the range overflow fp16. */
static void test_nonfinite(void **state)
{
	(void)state;
	struct qs_scheme s = make(3, 32);
	float w[40], clean[40];
	const float bad[] = {NAN, INFINITY, -INFINITY};
	for (int b = 0; b < 3; b++)
		for (int pos = 0; pos < 40; pos += 13) {
			for (int i = 0; i < 40; i++)
				w[i] = urand();
			memcpy(clean, w, sizeof(w));
			/* a duplicate of a neighbour keeps the range as it is */
			clean[pos] = w[pos ? pos - 1 : 1];
			w[pos] = bad[b];
			struct run r = run_rtn(&s, w, 1, 40);
			if (b == 0) {
				assert_int_equal(r.rc, 0);
				struct run c = run_rtn(&s, clean, 1, 40);
				assert_int_equal(c.rc, 0);
				for (int i = 0; i < 40; i++)
					if (i != pos)
						assert_true(r.deq[i] == c.deq[i]);
				run_free(&c);
			} else {
				assert_int_equal(r.rc, -QS_ETOOBIG);
			}
			run_free(&r);
		}
}

/* With --allow-nonfinite NaNs reach rtn: they must not move the range
 * (whatever their position, so SIMD reductions agree) and get code 0. */
static void test_nan_ignored(void **state)
{
	(void)state;
	const struct qs_kernels *k = &qs_kernels_ref;
	float w[45], ref_w[45];
	uint16_t sc[2], mn[2], rsc[2], rmn[2];
	uint8_t codes[45], rcodes[45];
	for (int i = 0; i < 45; i++)
		w[i] = urand();
	for (int pos = 0; pos < 45; pos += 4) {
		memcpy(ref_w, w, sizeof(w));
		ref_w[pos] = w[pos ? pos - 1 : 1];  /* a duplicate keeps the range */
		memcpy(w, ref_w, sizeof(w));
		float save = w[pos];
		w[pos] = NAN;
		assert_int_equal(k->rtn_quantize_row(w, 45, 32, 4, sc, mn, codes), 0);
		assert_int_equal(k->rtn_quantize_row(ref_w, 45, 32, 4, rsc, rmn, rcodes), 0);
		assert_memory_equal(sc, rsc, sizeof(sc));
		assert_memory_equal(mn, rmn, sizeof(mn));
		assert_int_equal(codes[pos], 0);
		w[pos] = save;
	}
	/* a group of only NaNs: min 0, scale 0 */
	for (int i = 32; i < 45; i++)
		w[i] = NAN;
	assert_int_equal(k->rtn_quantize_row(w, 45, 32, 4, sc, mn, codes), 0);
	assert_int_equal(sc[1], 0);
	assert_int_equal(mn[1], 0);
}

int main(void)
{
	setenv("QSHARD_SIMD", "ref", 1);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hand_0123),
		cmocka_unit_test(test_hand_negative),
		cmocka_unit_test(test_hand_unrepresentable),
		cmocka_unit_test(test_hand_bump),
		cmocka_unit_test(test_hand_ties),
		cmocka_unit_test(test_hand_tiny_negative_min),
		cmocka_unit_test(test_all_equal_and_zero),
		cmocka_unit_test(test_short_last_group),
		cmocka_unit_test(test_every_combination),
		cmocka_unit_test(test_row_bit_offsets),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_too_big),
		cmocka_unit_test(test_nonfinite),
		cmocka_unit_test(test_nan_ignored),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

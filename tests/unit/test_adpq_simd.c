/* test_adpq_simd.c - every SIMD adpq kernel built for and supported by this
 * machine gives bit-identical rows (return value, super-scales, group meta,
 * outlier indices, codes) and bit planes to the ref kernels (kernels.h), on
 * random, heavy-tailed and adversarial groups (zeros, all equal, ties,
 * denormals, huge values, NaN, Inf), every bits x group x scales x layout,
 * odd lengths and unaligned buffers.  Levels this machine lacks are skipped.
 * The avx512 level's adpq entries are its own kernels (dispatch.c would
 * otherwise fill them from AVX2's table, and the comparisons would test
 * AVX2 twice). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

static const char *const levels[] = {"avx2", "avx512", "neon"};
#define NLEVELS (sizeof(levels) / sizeof(levels[0]))

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
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

static float bitsf(uint32_t u)
{
	float f;
	memcpy(&f, &u, sizeof(f));
	return f;
}

static float gauss(void)
{
	return (float)(sqrt(-2.0 * log(unif())) * cos(6.283185307179586 * unif()));
}

enum { D_GAUSS, D_HEAVY, D_ZEROS, D_EQUAL, D_TIES, D_DENORM, D_HUGE, D_NAN, D_INF,
       D_BITS, D_POS, D_DYADIC, D_DYADIC_WIDE, D_COUNT };

/* One value of data kind d (position i, for runs of equal groups). */
static float value(int d, size_t i)
{
	switch (d) {
	case D_GAUSS:
		return 0.02f * gauss();
	case D_HEAVY: {
		float v = 0.02f * gauss();
		return rnd() % 100 == 0 ? v * 40.0f : v;
	}
	case D_ZEROS:
		return rnd() % 2 ? 0.0f : -0.0f;
	case D_EQUAL:
		return (i / 64) % 2 ? 0.5f : -0.125f;
	case D_TIES:
		/* few distinct magnitudes: ties at the outlier threshold */
		return (float)((int)(rnd() % 7) - 3) * 0.25f;
	case D_DENORM:
		return bitsf((uint32_t)(rnd() % 0x7fffffu) | (rnd() % 2 ? 0x80000000u : 0));
	case D_HUGE:
		return rnd() % 50 == 0 ? (rnd() % 2 ? 6.0e4f : -7.0e4f) : gauss() * 1000.0f;
	case D_NAN:
		return rnd() % 10 == 0 ? bitsf(0x7fc00000u | (uint32_t)(rnd() % 0x3fffffu) |
					       (rnd() % 2 ? 0x80000000u : 0))
				       : 0.1f * gauss();
	case D_INF:
		return rnd() % 40 == 0 ? (rnd() % 2 ? INFINITY : -INFINITY) : gauss();
	case D_BITS:
		/* any bit pattern: NaNs, Infs, denormals, huge */
		return bitsf((uint32_t)rnd());
	case D_DYADIC:
		/* small multiples of a power of two: the grids' products and
		 * sums are exact, so their boundary compares (the correction
		 * steps of the u8 codes) meet equality */
		return (float)((int)(rnd() % 61) - 30) * 0.03125f;
	case D_DYADIC_WIDE:
		/* the same with a few wide ones (outliers on an exact grid) */
		return (float)((int)(rnd() % 61) - 30) * (rnd() % 16 ? 0.0078125f : 0.5f);
	default:
		return (float)unif() * 3.0f + 1.0f;
	}
}

struct row {
	struct qs_adpq_row r;
	uint16_t *meta;
	float *tmp;
	uint8_t *codes, *mask, *idx;
	uint16_t *counts;
};

static void row_alloc(struct row *x, size_t n, size_t ng)
{
	memset(x, 0, sizeof(*x));
	x->meta = calloc(4 * ng, sizeof(uint16_t));
	x->tmp = calloc(4 * ng, sizeof(float));
	x->codes = calloc(n, 1);
	x->mask = calloc(n, 1);
	x->idx = calloc(n, 1);
	x->counts = calloc(ng, sizeof(uint16_t));
	x->r.counts = x->counts;
	x->r.meta = x->meta;
	x->r.tmp = x->tmp;
	x->r.codes = x->codes;
	x->r.mask = x->mask;
	x->r.idx = x->idx;
}

static void row_free(struct row *x)
{
	free(x->meta);
	free(x->tmp);
	free(x->codes);
	free(x->mask);
	free(x->idx);
	free(x->counts);
}

static size_t total_k(const struct qs_adpq_params *p, size_t n)
{
	size_t k = qs_adpq_k(p->alpha_e4, n);
	return k < n ? k : n;
}

static unsigned compared;

/* ref and k on the same row (w at an odd offset in an exact-size heap
 * buffer, so ASan sees any overrun), everything compared. */
static void compare_row(const struct qs_kernels *k, const float *src, size_t n,
			const struct qs_adpq_params *p)
{
	size_t ng = n / p->group + (n % p->group != 0);
	float *buf = malloc((n + 1) * sizeof(float));
	assert_non_null(buf);
	memcpy(buf + 1, src, n * sizeof(float));
	struct row a, b;
	row_alloc(&a, n, ng);
	row_alloc(&b, n, ng);
	size_t ra = qs_kernels_ref.adpq_quantize_row(buf + 1, n, p, &a.r);
	size_t rb = k->adpq_quantize_row(buf + 1, n, p, &b.r);
	assert_int_equal(ra, rb);
	assert_memory_equal(a.r.super, b.r.super, sizeof(a.r.super));
	assert_memory_equal(a.meta, b.meta, 4 * ng * sizeof(uint16_t));
	assert_memory_equal(a.codes, b.codes, n);
	size_t nk = total_k(p, n);
	if (nk)
		assert_memory_equal(a.idx, b.idx, nk);
	assert_memory_equal(a.counts, b.counts, ng * sizeof(uint16_t));
	compared++;

	/* the dequantized rows agree too */
	float *da = calloc(n, sizeof(float)), *db = calloc(n, sizeof(float));
	assert_true(da && db);
	assert_int_equal(qs_kernels_ref.adpq_dequantize_row(&a.r, n, p, da),
			 k->adpq_dequantize_row(&a.r, n, p, db));
	assert_memory_equal(da, db, n * sizeof(float));
	free(da);
	free(db);
	row_free(&a);
	row_free(&b);
	free(buf);
}

static const size_t lengths[] = {1, 5, 31, 63, 64, 65, 100, 127, 128, 129, 200, 255,
				 256, 257, 300, 511, 777, 1024, 2048 + 13};
#define NLEN (sizeof(lengths) / sizeof(lengths[0]))

static void for_each_level(void (*fn)(const struct qs_kernels *))
{
	int ran = 0;
	for (size_t l = 0; l < NLEVELS; l++) {
		const struct qs_kernels *k = qs_kernels_by_name(levels[l]);
		if (!k || !k->adpq_quantize_row)
			continue;
		fn(k);
		ran = 1;
	}
	if (!ran)
		skip();
}

/* Every bits x group x flags on every data kind, default alpha and search. */
static void rows_all_kinds(const struct qs_kernels *k)
{
	float *w = malloc(4096 * sizeof(float));
	assert_non_null(w);
	for (int d = 0; d < D_COUNT; d++)
		for (size_t li = 0; li < NLEN; li++) {
			size_t n = lengths[li];
			for (size_t i = 0; i < n; i++)
				w[i] = value(d, i);
			for (unsigned bits = 2; bits <= 4; bits++)
				for (unsigned group = 64; group <= 256; group *= 2)
					for (unsigned flags = 0; flags < 4; flags++) {
						struct qs_adpq_params p = {bits, group, 200, 4, flags};
						compare_row(k, w, n, &p);
					}
		}
	free(w);
}

static void test_rows_all_kinds(void **state)
{
	(void)state;
	for_each_level(rows_all_kinds);
}

/* alpha from 0 to 0.25 (k up to 64, past the per-lane top-k path) and
 * search 0..16. */
static void rows_alpha_search(const struct qs_kernels *k)
{
	static const unsigned alphas[] = {0, 1, 78, 200, 390, 700, 1000, 1563, 2500};
	static const unsigned searches[] = {0, 1, 4, 9, 16};
	float *w = malloc(1024 * sizeof(float));
	assert_non_null(w);
	for (int d = 0; d < D_COUNT; d++)
		for (size_t a = 0; a < sizeof(alphas) / sizeof(*alphas); a++)
			for (size_t si = 0; si < sizeof(searches) / sizeof(*searches); si++) {
				size_t n = 64 + rnd() % 900;
				for (size_t i = 0; i < n; i++)
					w[i] = value(d, i);
				unsigned group = 64u << (rnd() % 3);
				unsigned bits = 2 + (unsigned)(rnd() % 3);
				struct qs_adpq_params p = {bits, group, alphas[a], searches[si],
							   (unsigned)(rnd() % 4)};
				compare_row(k, w, n, &p);
			}
	free(w);
}

static void test_rows_alpha_search(void **state)
{
	(void)state;
	for_each_level(rows_alpha_search);
}

/* Random mixtures of the kinds within one row, many seeds. */
static void rows_mixed(const struct qs_kernels *k)
{
	float w[600];
	for (int it = 0; it < 400; it++) {
		size_t n = 1 + rnd() % 600;
		for (size_t i = 0; i < n; i++)
			w[i] = value((int)(rnd() % D_COUNT), i);
		struct qs_adpq_params p = {2 + (unsigned)(rnd() % 3), 64u << (rnd() % 3),
					   (unsigned)(rnd() % 2501), (unsigned)(rnd() % 17),
					   (unsigned)(rnd() % 4)};
		compare_row(k, w, n, &p);
	}
}

static void test_rows_mixed(void **state)
{
	(void)state;
	for_each_level(rows_mixed);
}

/* The selected set against a brute-force oracle: the row's K largest keys
 * (|w| as bits, a NaN as 0), ties to the lower index, for ref's
 * qs_adpq_select_row and for every level's quantize_row, on rows built to
 * reach each path of the selection: bell-shaped and heavy rows (the
 * candidates found from the block maxima), sorted rows (the largest all at
 * one end), the large values all in one lane of the 64-blocks (so few
 * block maxima hold them), many ties at the threshold, zeros, NaNs and
 * denormals, constant rows and K beyond the candidate buffer (the
 * whole-row fallback), alpha up to 0.25 (K above the block count). */
struct keyed {
	uint32_t key;
	uint32_t i;
};

static int by_key_desc(const void *x, const void *y)
{
	const struct keyed *a = x, *b = y;
	if (a->key != b->key)
		return a->key > b->key ? -1 : 1;
	return a->i < b->i ? -1 : a->i > b->i;
}

static uint32_t key_oracle(float w)
{
	uint32_t u;
	memcpy(&u, &w, sizeof(u));
	u &= 0x7fffffffu;
	return u > 0x7f800000u ? 0 : u;
}

static void check_selected(const float *w, size_t n, const struct qs_adpq_params *p,
			   const struct qs_adpq_row *r, const uint8_t *want, uint8_t *got)
{
	memset(got, 0, n);
	const uint8_t *idx = r->idx;
	size_t total = 0;
	for (size_t g = 0, i = 0; i < n; g++, i += p->group) {
		size_t len = n - i < p->group ? n - i : p->group;
		unsigned prev = 0;
		for (unsigned o = 0; o < r->counts[g]; o++) {
			assert_true(idx[o] < len);
			assert_true(o == 0 || idx[o] > prev);  /* ascending */
			prev = idx[o];
			got[i + idx[o]] = 1;
		}
		idx += r->counts[g];
		total += r->counts[g];
	}
	(void)w;
	assert_int_equal(total, total_k(p, n));
	assert_memory_equal(got, want, n);
}

enum { S_BELL, S_HEAVY, S_ASC, S_DESC, S_LANE, S_TIES, S_ZEROS, S_NAN, S_DENORM,
       S_CONST, S_KIND, S_COUNT };

static float select_value(int d, size_t i, size_t n)
{
	switch (d) {
	case S_BELL:
		return 0.02f * gauss();
	case S_HEAVY:
		return value(D_HEAVY, i);
	case S_ASC:
		return (float)i * 1e-3f - 0.3f;
	case S_DESC:
		return (float)(n - i) * 1e-3f;
	case S_LANE:
		return i % 64 == 5 ? 1.0f + 0.01f * gauss() : 0.01f * gauss();
	case S_TIES:
		return (float)((int)(rnd() % 5) - 2) * 0.5f;
	case S_ZEROS:
		return rnd() % 4 ? 0.0f : 0.01f * gauss();
	case S_NAN:
		return rnd() % 3 ? bitsf(0x7fc00001u | (uint32_t)(rnd() % 0x3fffffu)) : gauss();
	case S_DENORM:
		return bitsf((uint32_t)(rnd() % 64u) | (rnd() % 2 ? 0x80000000u : 0));
	case S_CONST:
		return i % 2 ? 0.25f : -0.25f;
	default:
		return value((int)(rnd() % D_COUNT), i);
	}
}

static void test_select_oracle(void **state)
{
	(void)state;
	static const unsigned alphas[] = {1, 100, 175, 500, 1250, 2500};
	enum { NMAX = 24000 };
	float *w = malloc(NMAX * sizeof(float));
	struct keyed *m = malloc(NMAX * sizeof(*m));
	uint8_t *want = malloc(NMAX), *got = malloc(NMAX);
	assert_true(w && m && want && got);
	const struct qs_kernels *ks[1 + NLEVELS];
	size_t nk = 0;
	ks[nk++] = &qs_kernels_ref;
	for (size_t l = 0; l < NLEVELS; l++) {
		const struct qs_kernels *k = qs_kernels_by_name(levels[l]);
		if (k && k->adpq_quantize_row)
			ks[nk++] = k;
	}
	for (int it = 0; it < 330; it++) {
		int d = it % S_COUNT;
		/* mostly rows of real widths, some long enough that K or the
		 * candidates pass the buffer of 4096 */
		size_t n = it % 5 == 4 ? 16000 + rnd() % (NMAX - 16000) : 1 + rnd() % 6000;
		for (size_t i = 0; i < n; i++) {
			w[i] = select_value(d, i, n);
			m[i].key = key_oracle(w[i]);
			m[i].i = (uint32_t)i;
		}
		struct qs_adpq_params p = {3, 64u << (rnd() % 3), alphas[rnd() % 6], 0,
					   (unsigned)(rnd() % 4)};
		size_t K = total_k(&p, n);
		qsort(m, n, sizeof(*m), by_key_desc);
		memset(want, 0, n);
		for (size_t j = 0; j < K; j++)
			want[m[j].i] = 1;
		size_t ng = n / p.group + (n % p.group != 0);
		struct row x;
		row_alloc(&x, n, ng);
		qs_adpq_select_row(w, n, &p, &x.r);
		check_selected(w, n, &p, &x.r, want, got);
		for (size_t l = 0; l < nk; l++) {
			memset(x.counts, 0xff, ng * sizeof(uint16_t));
			ks[l]->adpq_quantize_row(w, n, &p, &x.r);
			check_selected(w, n, &p, &x.r, want, got);
		}
		row_free(&x);
	}
	free(w);
	free(m);
	free(want);
	free(got);
}

/* Bit planes: random codes, every length to 300 and some large, unaligned
 * source and destination, a plane stride larger than a plane; the bytes
 * around each plane must stay untouched. */
static void planes(const struct qs_kernels *k)
{
	for (size_t n = 0; n <= 700; n += (n < 300 ? 1 : 97)) {
		for (unsigned bits = 1; bits <= 8; bits++) {
			size_t pb = n / 8 + (n % 8 != 0), stride = pb + 3;
			uint8_t *codes = malloc(n + 1);
			uint8_t *da = malloc(8 * stride + 1), *db = malloc(8 * stride + 1);
			assert_true(codes && da && db);
			for (size_t i = 0; i < n; i++)
				codes[1 + i] = (uint8_t)(rnd() & ((1u << bits) - 1u));
			memset(da, 0xa5, 8 * stride + 1);
			memset(db, 0xa5, 8 * stride + 1);
			qs_kernels_ref.pack_planes(codes + 1, n, bits, da + 1, stride);
			k->pack_planes(codes + 1, n, bits, db + 1, stride);
			assert_memory_equal(da, db, 8 * stride + 1);
			uint8_t *back = malloc(n + 1);
			assert_non_null(back);
			k->unpack_planes(db + 1, stride, n, bits, back);
			if (n)
				assert_memory_equal(back, codes + 1, n);
			free(back);
			free(codes);
			free(da);
			free(db);
		}
	}
}

static void test_planes(void **state)
{
	(void)state;
	for_each_level(planes);
}

/* The AVX-512 table's adpq entries are x86/avx512_adpq.c's, not the AVX2
 * ones dispatch.c completes a table with. */
static void test_avx512_own(void **state)
{
	(void)state;
#if defined(QS_HAVE_AVX512) && defined(QS_HAVE_AVX2)
	const struct qs_kernels *k = qs_kernels_by_name("avx512");
	if (!k)
		skip();
	assert_ptr_equal(k->adpq_quantize_row, qs_avx512_adpq_quantize_row);
	assert_ptr_equal(k->pack_planes, qs_avx512_pack_planes);
	assert_ptr_not_equal(k->adpq_quantize_row, qs_kernels_avx2.adpq_quantize_row);
#else
	skip();
#endif
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_avx512_own),
		cmocka_unit_test(test_rows_all_kinds),
		cmocka_unit_test(test_rows_alpha_search),
		cmocka_unit_test(test_rows_mixed),
		cmocka_unit_test(test_planes),
		cmocka_unit_test(test_select_oracle),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

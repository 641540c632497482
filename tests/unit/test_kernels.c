/* test_kernels.c - fp16/bf16 conversions, non-finite counting, bit packing
 * and run-time dispatch of the kernel tables. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

static uint32_t fbits(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof(u));
	return u;
}

static float bitsf(uint32_t u)
{
	float f;
	memcpy(&f, &u, sizeof(f));
	return f;
}

/* xorshift64*: deterministic test data */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

/* ------------------------------------------------------- f16 and bf16 */

static void test_f16_hand_values(void **state)
{
	(void)state;
	struct {
		float f;
		uint16_t h;
	} cases[] = {
		{0.0f, 0x0000},
		{-0.0f, 0x8000},
		{1.0f, 0x3c00},
		{-2.0f, 0xc000},
		{0.5f, 0x3800},
		{65504.0f, 0x7bff},
		{-65504.0f, 0xfbff},
		{0x1p-24f, 0x0001},             /* smallest subnormal */
		{0x3ffp-24f, 0x03ff},           /* largest subnormal */
		{0x1p-14f, 0x0400},             /* smallest normal */
		{1.0f + 0x1p-11f, 0x3c00},      /* tie: to even (down) */
		{1.0f + 0x3p-11f, 0x3c02},      /* tie: to even (up) */
		{1.0f + 0x1p-11f + 0x1p-20f, 0x3c01},
		{0x1p-25f, 0x0000},             /* tie with zero: to even */
		{0x1.000002p-25f, 0x0001},      /* just above the tie */
		{-0x1p-25f, 0x8000},
		{0x3p-25f, 0x0002},             /* subnormal tie: to even (up) */
		{0x5p-25f, 0x0002},             /* subnormal tie: to even (down) */
		{0x1p-14f - 0x1p-26f, 0x0400},  /* rounds up into the normals */
		{1e-10f, 0x0000},
		{65519.0f, 0x7bff},
		{65520.0f, 0x7c00},             /* tie with 2^16: to even, Inf */
		{-65520.0f, 0xfc00},
		{1e10f, 0x7c00},
		{INFINITY, 0x7c00},
		{-INFINITY, 0xfc00},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint16_t h = qs_f32_to_f16(cases[i].f);
		if (h != cases[i].h)
			fail_msg("f32 %a -> f16 %#06x, want %#06x", (double)cases[i].f, h,
				 cases[i].h);
	}
	assert_int_equal(fbits(qs_f16_to_f32(0x0001)), fbits(0x1p-24f));
	assert_int_equal(fbits(qs_f16_to_f32(0x03ff)), fbits(0x3ffp-24f));
	assert_int_equal(fbits(qs_f16_to_f32(0x8000)), 0x80000000u);
	assert_int_equal(fbits(qs_f16_to_f32(0x7bff)), fbits(65504.0f));
	assert_true(isinf(qs_f16_to_f32(0x7c00)) && qs_f16_to_f32(0x7c00) > 0);
	assert_true(isinf(qs_f16_to_f32(0xfc00)) && qs_f16_to_f32(0xfc00) < 0);

	/* NaN: stays NaN both ways, sign kept, always quiet */
	uint16_t hn = qs_f32_to_f16(NAN);
	assert_int_equal(hn & 0x7c00, 0x7c00);
	assert_int_equal(hn & 0x0200, 0x0200);
	uint16_t hs = qs_f32_to_f16(bitsf(0xff800001u));  /* signalling, payload in low bits */
	assert_int_equal(hs & 0xfe00, 0xfe00);
	uint32_t w = fbits(qs_f16_to_f32(0x7d00));          /* signalling f16 NaN */
	assert_int_equal(w & 0xffc00000u, 0x7fc00000u);
	assert_int_equal(w & 0x003fffffu, 0x100u << 13);
}

static void test_bf16_hand_values(void **state)
{
	(void)state;
	struct {
		uint32_t f;
		uint16_t h;
	} cases[] = {
		{0x00000000u, 0x0000},
		{0x80000000u, 0x8000},
		{0x3f800000u, 0x3f80},  /* 1 */
		{0x3f808000u, 0x3f80},  /* tie: to even (down) */
		{0x3f818000u, 0x3f82},  /* tie: to even (up) */
		{0x3f808001u, 0x3f81},
		{0x00000001u, 0x0000},  /* smallest f32 subnormal */
		{0x00008000u, 0x0000},  /* subnormal tie */
		{0x00018000u, 0x0002},
		{0x00010000u, 0x0001},  /* smallest bf16 subnormal */
		{0x7f7fffffu, 0x7f80},  /* FLT_MAX rounds to Inf */
		{0x7f7f7fffu, 0x7f7f},  /* bf16 max stays */
		{0x7f800000u, 0x7f80},
		{0xff800000u, 0xff80},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint16_t h = qs_f32_to_bf16(bitsf(cases[i].f));
		if (h != cases[i].h)
			fail_msg("f32 %#010x -> bf16 %#06x, want %#06x", cases[i].f, h,
				 cases[i].h);
	}
	/* a NaN whose payload is all in the dropped bits must not become Inf */
	assert_int_equal(qs_f32_to_bf16(bitsf(0x7f800001u)), 0x7fc0);
	assert_int_equal(qs_f32_to_bf16(bitsf(0xffc00000u)), 0xffc0);
	assert_int_equal(fbits(qs_bf16_to_f32(0x7f81)), 0x7fc10000u);
	assert_int_equal(fbits(qs_bf16_to_f32(0x3f80)), 0x3f800000u);
	assert_int_equal(fbits(qs_bf16_to_f32(0x0001)), 0x00010000u);
}

/* every f16 widens to the value its fields say and narrows back to itself */
static void test_f16_exhaustive(void **state)
{
	(void)state;
	for (uint32_t i = 0; i < 65536; i++) {
		uint16_t h = (uint16_t)i;
		float f = qs_f16_to_f32(h);
		unsigned e = (h >> 10) & 0x1f, m = h & 0x3ff;
		if (e == 0x1f && m) {
			assert_true(isnan(f));
			assert_int_equal(!!signbit(f), !!(h & 0x8000));
			uint16_t back = qs_f32_to_f16(f);
			assert_true((back & 0x7c00) == 0x7c00 && (back & 0x3ff));
			assert_int_equal(back & 0x8000, h & 0x8000);
			continue;
		}
		double want = e == 0x1f ? INFINITY
			    : e ? ldexp(1024 + m, (int)e - 25) : ldexp(m, -24);
		if (h & 0x8000)
			want = -want;
		if ((double)f != want || !!signbit(f) != !!(h & 0x8000))
			fail_msg("f16 %#06x -> %a, want %a", h, (double)f, want);
		if (qs_f32_to_f16(f) != h)
			fail_msg("f16 %#06x does not round-trip", h);
	}
}

static void test_bf16_exhaustive(void **state)
{
	(void)state;
	for (uint32_t i = 0; i < 65536; i++) {
		uint16_t h = (uint16_t)i;
		float f = qs_bf16_to_f32(h);
		if ((h & 0x7fff) > 0x7f80) {
			assert_true(isnan(f));
			uint16_t back = qs_f32_to_bf16(f);
			assert_true((back & 0x7fff) > 0x7f80);
			assert_int_equal(back & 0x8000, h & 0x8000);
			continue;
		}
		assert_int_equal(fbits(f), (uint32_t)h << 16);
		if (qs_f32_to_bf16(f) != h)
			fail_msg("bf16 %#06x does not round-trip", h);
	}
}

/* Round-to-nearest-even to f16 against an independent oracle: the nearest of
 * all finite f16 values (computed in double), Inf beyond 65520. */
static double f16_value[0x7c00];

static uint16_t oracle_f32_to_f16(float f)
{
	double a = fabs((double)f);
	uint16_t sign = signbit(f) ? 0x8000 : 0;
	if (a >= 65520.0)
		return sign | 0x7c00;
	size_t lo = 0, hi = 0x7bff;  /* f16_value[lo] <= a < f16_value[hi] or hi==max */
	while (hi - lo > 1) {
		size_t mid = (lo + hi) / 2;
		if (f16_value[mid] <= a)
			lo = mid;
		else
			hi = mid;
	}
	if (f16_value[hi] <= a)
		lo = hi;
	if (lo == 0x7bff || f16_value[lo] == a)
		return sign | (uint16_t)lo;
	double dlo = a - f16_value[lo], dhi = f16_value[lo + 1] - a;
	if (dlo < dhi || (dlo == dhi && !(lo & 1)))
		return sign | (uint16_t)lo;
	return sign | (uint16_t)(lo + 1);
}

static void test_f32_to_f16_random(void **state)
{
	(void)state;
	for (uint32_t i = 0; i < 0x7c00; i++) {
		unsigned e = i >> 10, m = i & 0x3ff;
		f16_value[i] = e ? ldexp(1024 + m, (int)e - 25) : ldexp(m, -24);
	}
	for (int i = 0; i < 400000; i++) {
		uint32_t u = (uint32_t)rnd();
		/* concentrate on f16's range, ties and near-ties included */
		if (i % 4 == 1)
			u = (u & 0x80000000u) | (0x33000000u + (u % (0x47800000u - 0x33000000u)));
		if (i % 4 == 2)
			u = (u & ~0xfffu) | (i & 8 ? 0x1000u : 0x0fffu);
		float f = bitsf(u);
		if (isnan(f))
			continue;
		uint16_t got = qs_f32_to_f16(f), want = oracle_f32_to_f16(f);
		if (got != want)
			fail_msg("f32 %#010x -> f16 %#06x, want %#06x", u, got, want);
		/* bf16 oracle: nearest by 64-bit integer arithmetic on bits */
		uint32_t mag = u & 0x7fffffffu;
		if (mag < 0x7f800000u) {
			uint32_t lo = mag >> 16, rem = mag & 0xffff;
			uint32_t r = lo + (rem > 0x8000 || (rem == 0x8000 && (lo & 1)));
			assert_int_equal(qs_f32_to_bf16(f), ((u >> 16) & 0x8000) | r);
		}
	}
}

static void test_table_conversions(void **state)
{
	(void)state;
	const struct qs_kernels *k = &qs_kernels_ref;
	enum { N = 1027 };
	uint16_t *h = malloc(N * 2 + 2), *h2 = malloc(N * 2 + 2);
	float *f = malloc(N * 4 + 4);
	assert_non_null(h);
	assert_non_null(h2);
	assert_non_null(f);
	for (size_t i = 0; i < N; i++)
		h[i] = (uint16_t)rnd();
	k->f16_to_f32(h, f, N);
	for (size_t i = 0; i < N; i++)
		assert_int_equal(fbits(f[i]), fbits(qs_f16_to_f32(h[i])));
	k->f32_to_f16(f, h2, N);
	for (size_t i = 0; i < N; i++)
		assert_int_equal(h2[i], qs_f32_to_f16(f[i]));
	k->bf16_to_f32(h, f, N);
	for (size_t i = 0; i < N; i++)
		assert_int_equal(fbits(f[i]), fbits(qs_bf16_to_f32(h[i])));
	for (size_t i = 0; i < N; i++)
		f[i] = bitsf((uint32_t)rnd());
	k->f32_to_bf16(f, h2, N);
	for (size_t i = 0; i < N; i++)
		assert_int_equal(h2[i], qs_f32_to_bf16(f[i]));
	free(h);
	free(h2);
	free(f);
}

static void test_count_nonfinite(void **state)
{
	(void)state;
	float x[11] = {0.0f, -0.0f, 1.0f, 3.4e38f, 0x1p-149f, -1e30f, 0, 0, 0, 0, 0};
	const struct qs_kernels *k = &qs_kernels_ref;
	assert_int_equal(k->count_nonfinite(x, 11), 0);
	x[3] = INFINITY;
	x[7] = -INFINITY;
	x[10] = NAN;
	x[0] = bitsf(0xff800001u);
	assert_int_equal(k->count_nonfinite(x, 11), 4);
	assert_int_equal(k->count_nonfinite(x, 10), 3);
	assert_int_equal(k->count_nonfinite(x, 0), 0);
}

/* ---------------------------------------------------------- pack bits */

static unsigned stream_bit(const uint8_t *p, uint64_t bit)
{
	return (p[bit / 8] >> (bit % 8)) & 1u;
}

static void check_pack(const struct qs_kernels *k, unsigned bits, size_t n, unsigned off)
{
	/* one spare byte on each side to catch stray writes, and an odd
	 * address so nothing relies on alignment */
	size_t nbytes = (off + n * bits + 7) / 8;
	uint8_t *raw = malloc(nbytes + 3);
	uint8_t *before = malloc(nbytes + 3);
	uint8_t *codes = malloc(n + 1), *back = malloc(n + 1);
	assert_non_null(raw);
	assert_non_null(before);
	assert_non_null(codes);
	assert_non_null(back);
	for (size_t i = 0; i < nbytes + 3; i++)
		raw[i] = (uint8_t)rnd();
	memcpy(before, raw, nbytes + 3);
	for (size_t i = 0; i < n; i++)
		codes[i] = (uint8_t)(rnd() & ((1u << bits) - 1));
	uint8_t *dst = raw + 1;

	k->pack_bits(codes, n, bits, dst, off);

	assert_int_equal(raw[0], before[0]);
	if (n == 0) {
		assert_memory_equal(raw, before, nbytes + 3);
	} else {
		/* low bits of the first byte are kept */
		assert_int_equal(dst[0] & ((1u << off) - 1), before[1] & ((1u << off) - 1));
		for (size_t i = 0; i < n; i++)
			for (unsigned b = 0; b < bits; b++)
				if (stream_bit(dst, off + i * bits + b) != ((codes[i] >> b) & 1u))
					fail_msg("bits %u n %zu off %u: code %zu bit %u", bits, n,
						 off, i, b);
		/* padding bits of the last byte are zero */
		for (uint64_t b = off + n * bits; b < nbytes * 8; b++)
			assert_int_equal(stream_bit(dst, b), 0);
		assert_memory_equal(dst + nbytes, before + 1 + nbytes, 2);
	}

	/* unpack from an exact-size heap copy: ASan flags any over-read */
	uint8_t *exact = malloc(nbytes ? nbytes : 1);
	assert_non_null(exact);
	memcpy(exact, dst, nbytes);
	memset(back, 0xee, n + 1);
	k->unpack_bits(exact, off, n, bits, back);
	assert_memory_equal(back, codes, n);
	assert_int_equal(back[n], 0xee);

	free(exact);
	free(raw);
	free(before);
	free(codes);
	free(back);
}

static void test_pack_roundtrip(void **state)
{
	(void)state;
	const size_t lens[] = {0, 1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 23, 24, 31, 33, 63, 64,
			       65, 127, 129, 1001};
	for (unsigned bits = 1; bits <= 8; bits++)
		for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++)
			for (unsigned off = 0; off < 8; off++)
				check_pack(&qs_kernels_ref, bits, lens[l], off);
}

/* Rows packed back to back (as rtn does, each starting where the previous
 * ended, mid-byte for 3 bits) give the same stream as one call. */
static void test_pack_consecutive(void **state)
{
	(void)state;
	const struct qs_kernels *k = &qs_kernels_ref;
	for (unsigned bits = 1; bits <= 8; bits++) {
		enum { ROWS = 5, COLS = 13 };
		uint8_t codes[ROWS * COLS], one[ROWS * COLS], rows[ROWS * COLS];
		for (size_t i = 0; i < sizeof(codes); i++)
			codes[i] = (uint8_t)(rnd() & ((1u << bits) - 1));
		memset(one, 0, sizeof(one));
		memset(rows, 0xff, sizeof(rows));  /* no zeroing needed */
		size_t nbytes = (ROWS * COLS * bits + 7) / 8;
		k->pack_bits(codes, ROWS * COLS, bits, one, 0);
		for (size_t r = 0; r < ROWS; r++)
			k->pack_bits(codes + r * COLS, COLS, bits, rows, (uint64_t)r * COLS * bits);
		assert_memory_equal(one, rows, nbytes);
	}
}

/* ------------------------------------------------------------ dispatch */

static void check_complete(const char *what, const struct qs_kernels *k)
{
	const size_t nw = sizeof(*k) / sizeof(void *);
	for (size_t w = 0; w < nw; w++) {
		void *p;
		memcpy(&p, (const char *)k + w * sizeof(void *), sizeof(p));
		if (!p)
			fail_msg("%s: kernel table entry %zu of %zu is NULL", what, w, nw);
	}
}

/* Every table is complete: no entry is NULL, so no scheme needs a
 * fallback.  The table is all pointers (name, then the kernels), checked
 * word by word so a new entry is covered unnamed: every table the build
 * holds, and every one dispatch hands out for each level QSHARD_SIMD can
 * ask for (a level added to dispatch.c's names is covered once it is
 * listed here). */
static void test_tables_complete(void **state)
{
	(void)state;
	static const char *const names[] = {"ref", "avx2", "avx512", "neon"};
	_Static_assert(sizeof(struct qs_kernels) % sizeof(void *) == 0,
		       "struct qs_kernels holds only pointers");
	check_complete("qs_kernels_ref", &qs_kernels_ref);
#if defined(QS_HAVE_AVX2)
	check_complete("qs_kernels_avx2", &qs_kernels_avx2);
#endif
#if defined(QS_HAVE_NEON)
	check_complete("qs_kernels_neon", &qs_kernels_neon);
#endif
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const struct qs_kernels *k = qs_kernels_by_name(names[i]);
		if (k)
			check_complete(names[i], k);
	}
	check_complete("qs_kernels_choose(NULL)", qs_kernels_choose(NULL));
}

static void test_dispatch(void **state)
{
	(void)state;
	/* main() sets QSHARD_SIMD=ref before anything resolves */
	assert_ptr_equal(qs_kernels_get(), &qs_kernels_ref);
	/* resolved once per process: a later change of QSHARD_SIMD does not
	 * switch tables under a running conversion */
	const struct qs_kernels *other = qs_kernels_by_name("avx2");
	if (!other)
		other = qs_kernels_by_name("neon");
	if (other) {
		setenv("QSHARD_SIMD", other->name, 1);
		assert_ptr_equal(qs_kernels_get(), &qs_kernels_ref);
		setenv("QSHARD_SIMD", "ref", 1);
	}
	assert_ptr_equal(qs_kernels_by_name("ref"), &qs_kernels_ref);
	assert_string_equal(qs_kernels_ref.name, "ref");
	assert_null(qs_kernels_by_name("nonexistent"));
	assert_null(qs_kernels_by_name(""));
	assert_null(qs_kernels_by_name(NULL));
	assert_ptr_equal(qs_kernels_choose("ref"), &qs_kernels_ref);

	/* unknown or unsupported requests fall back to the best available,
	 * which is the same as no request */
	const struct qs_kernels *best = qs_kernels_choose(NULL);
	assert_non_null(best);
	assert_ptr_equal(qs_kernels_choose("bogus"), best);
	assert_ptr_equal(qs_kernels_choose(""), best);
	const char *names[] = {"ref", "avx2", "avx512", "neon"};
	for (size_t i = 0; i < 4; i++) {
		const struct qs_kernels *k = qs_kernels_by_name(names[i]);
		if (k) {
			assert_string_equal(k->name, names[i]);
			assert_ptr_equal(qs_kernels_choose(names[i]), k);
		} else {
			assert_ptr_equal(qs_kernels_choose(names[i]), best);
		}
	}
	for (const struct qs_kernels *k = best; k; k = NULL) {
		assert_non_null(k->bf16_to_f32);
		assert_non_null(k->f16_to_f32);
		assert_non_null(k->f32_to_bf16);
		assert_non_null(k->f32_to_f16);
		assert_non_null(k->count_nonfinite);
		assert_non_null(k->decode_checked);
		assert_non_null(k->rtn_quantize_row);
		assert_non_null(k->rtn_quantize_src);
		assert_non_null(k->rtn_dequantize_row);
		assert_non_null(k->pack_bits);
		assert_non_null(k->unpack_bits);
	}
}

int main(void)
{
	setenv("QSHARD_SIMD", "ref", 1);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dispatch),
		cmocka_unit_test(test_tables_complete),
		cmocka_unit_test(test_f16_hand_values),
		cmocka_unit_test(test_bf16_hand_values),
		cmocka_unit_test(test_f16_exhaustive),
		cmocka_unit_test(test_bf16_exhaustive),
		cmocka_unit_test(test_f32_to_f16_random),
		cmocka_unit_test(test_table_conversions),
		cmocka_unit_test(test_count_nonfinite),
		cmocka_unit_test(test_pack_roundtrip),
		cmocka_unit_test(test_pack_consecutive),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_simd.c - every SIMD kernel table built for and supported by this
 * machine gives bit-identical results to qs_kernels_ref (kernels.h), on
 * random and adversarial data, every length up to 300 and a few large
 * ones, unaligned buffers and every width and group; plus QSHARD_SIMD.
 * Levels this machine lacks are skipped, not failed. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "decode_src_check.h"
#include "kernels.h"

static const char *const levels[] = {"avx2", "avx512", "neon"};
#define NLEVELS (sizeof(levels) / sizeof(levels[0]))

/* xorshift64*: deterministic test data */
static uint64_t rng_state = 0x243f6a8885a308d3ull;
static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static float bitsf(uint32_t u)
{
	float f;
	memcpy(&f, &u, sizeof(f));
	return f;
}

/* Lengths: all of 0..300, then a few large and odd ones. */
static const size_t big_lengths[] = {511, 1024, 4099, 65536 + 37};
#define NBIG (sizeof(big_lengths) / sizeof(big_lengths[0]))
static size_t length_at(size_t k)
{
	return k <= 300 ? k : big_lengths[k - 301];
}
#define NLENGTHS (301 + NBIG)

/* Exactly-sized heap copies so ASan catches any read or write past the
 * end; `off` extra leading elements make the pointer unaligned. */
static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	assert_non_null(p);
	return p;
}

/* ---------------------------------------------------------------- data */

enum { K_UNIFORM, K_EQUAL, K_ZEROS, K_DENORM, K_SPECIAL, K_BITS, K_NAN, K_F16GRID,
       K_HUGE, K_COUNT };

static float special_value(void)
{
	static const uint32_t sp[] = {
		0x7f800000u, 0xff800000u,             /* +-Inf */
		0x7fc00000u, 0xffc00000u, 0x7f800001u, /* qNaN, -qNaN, sNaN */
		0x7fbfffffu, 0xffa5a5a5u,             /* sNaN payloads */
		0x00000000u, 0x80000000u,             /* +-0 */
		0x00000001u, 0x807fffffu,             /* denormals */
		0x477fe000u, 0xc77fe000u,             /* +-65504 */
		0x477ff000u, 0x477fefffu,             /* 65520 (to Inf), just below */
		0x49742400u, 0xc9742400u,             /* +-1e6 */
		0x33000000u, 0x33000001u,             /* 2^-25 and just above */
		0x387fc000u, 0x38800000u,             /* f16 subnormal/normal edge */
	};
	return bitsf(sp[rnd() % (sizeof(sp) / sizeof(sp[0]))]);
}

static float uniform(float scale)
{
	return ((float)(rnd() >> 40) / (float)(1u << 24) * 2.0f - 1.0f) * scale;
}

static void fill(float *x, size_t n, int kind)
{
	float scale = ldexpf(1.0f, (int)(rnd() % 40) - 20);
	float c = uniform(scale);
	for (size_t i = 0; i < n; i++) {
		switch (kind) {
		case K_UNIFORM: x[i] = uniform(scale); break;
		case K_EQUAL: x[i] = c; break;
		case K_ZEROS: x[i] = rnd() & 1 ? -0.0f : 0.0f; break;
		case K_DENORM: x[i] = bitsf((uint32_t)(rnd() & 0x807fffffu)); break;
		case K_SPECIAL: x[i] = rnd() % 8 ? uniform(scale) : special_value(); break;
		case K_BITS: x[i] = bitsf((uint32_t)rnd()); break;
		case K_NAN: x[i] = bitsf(0x7fc00000u | (uint32_t)(rnd() & 0x803fffffu)); break;
		case K_F16GRID:
			/* values on or right next to the fp16 grid, where the
			 * min/scale roundings are decided */
			x[i] = qs_f16_to_f32((uint16_t)(rnd() & 0xfbffu)) * (1.0f + (float)((int)(rnd() % 3) - 1) * 0x1p-23f);
			break;
		default: x[i] = uniform(70000.0f); break;
		}
	}
}

/* ---------------------------------------------------------------- setup */

/* The first test: QSHARD_SIMD is read once, by the first qs_kernels_get(). */
static void test_env_forces_ref(void **state)
{
	(void)state;
	setenv("QSHARD_SIMD", "ref", 1);
	assert_ptr_equal(qs_kernels_get(), &qs_kernels_ref);
	assert_ptr_equal(qs_kernels_get(), &qs_kernels_ref);
}

static void test_choose(void **state)
{
	(void)state;
	assert_ptr_equal(qs_kernels_choose("ref"), &qs_kernels_ref);
	const struct qs_kernels *best = qs_kernels_choose(NULL);
	assert_non_null(best);
	assert_ptr_equal(qs_kernels_choose(""), best);
	assert_ptr_equal(qs_kernels_choose("no-such-level"), best);
	assert_null(qs_kernels_by_name("no-such-level"));
	for (size_t l = 0; l < NLEVELS; l++) {
		const struct qs_kernels *k = qs_kernels_by_name(levels[l]);
		if (k) {
			assert_string_equal(k->name, levels[l]);
			assert_ptr_equal(qs_kernels_choose(levels[l]), k);
			/* an available SIMD level is preferred over ref */
			assert_ptr_not_equal(best, &qs_kernels_ref);
		} else {
			/* unsupported here: falls back to the best */
			assert_ptr_equal(qs_kernels_choose(levels[l]), best);
		}
	}
}

/* Runs fn for every available SIMD level; skips when there is none. */
static void for_levels(void (*fn)(const struct qs_kernels *))
{
	int ran = 0;
	for (size_t l = 0; l < NLEVELS; l++) {
		const struct qs_kernels *k = qs_kernels_by_name(levels[l]);
		if (!k)
			continue;
		fn(k);
		ran++;
	}
	if (!ran)
		skip();
}

/* --------------------------------------------------------- conversions */

static void widen_check(const struct qs_kernels *k, int f16)
{
	/* every 16-bit pattern once, at each misalignment */
	for (size_t off = 0; off < 4; off++) {
		size_t n = 65536;
		uint16_t *src = xmalloc((n + off) * 2);
		float *a = xmalloc((n + off) * 4), *b = xmalloc((n + off) * 4);
		for (size_t i = 0; i < n; i++)
			src[off + i] = (uint16_t)(i * 40503u + off);
		if (f16) {
			qs_kernels_ref.f16_to_f32(src + off, a + off, n);
			k->f16_to_f32(src + off, b + off, n);
		} else {
			qs_kernels_ref.bf16_to_f32(src + off, a + off, n);
			k->bf16_to_f32(src + off, b + off, n);
		}
		assert_memory_equal(a + off, b + off, n * 4);
		free(src);
		free(a);
		free(b);
	}
	for (size_t li = 0; li < NLENGTHS; li++) {
		size_t n = length_at(li), off = li % 4;
		uint16_t *src = xmalloc((n + off) * 2);
		float *a = xmalloc((n + off) * 4), *b = xmalloc((n + off) * 4);
		for (size_t i = 0; i < n + off; i++)
			src[i] = (uint16_t)rnd();
		if (f16) {
			qs_kernels_ref.f16_to_f32(src + off, a + off, n);
			k->f16_to_f32(src + off, b + off, n);
		} else {
			qs_kernels_ref.bf16_to_f32(src + off, a + off, n);
			k->bf16_to_f32(src + off, b + off, n);
		}
		assert_memory_equal(a + off, b + off, n * 4);
		free(src);
		free(a);
		free(b);
	}
}

static void bf16_widen_level(const struct qs_kernels *k)
{
	widen_check(k, 0);
}

static void f16_widen_level(const struct qs_kernels *k)
{
	widen_check(k, 1);
}

static void test_bf16_to_f32(void **state)
{
	(void)state;
	for_levels(bf16_widen_level);
}

static void test_f16_to_f32(void **state)
{
	(void)state;
	for_levels(f16_widen_level);
}

static void narrow_check(const struct qs_kernels *k, int f16)
{
	for (int kind = 0; kind < K_COUNT; kind++) {
		for (size_t li = 0; li < NLENGTHS; li++) {
			size_t n = length_at(li), off = (li + (size_t)kind) % 4;
			float *src = xmalloc((n + off) * 4);
			uint16_t *a = xmalloc((n + off) * 2), *b = xmalloc((n + off) * 2);
			fill(src, n + off, kind);
			if (f16) {
				qs_kernels_ref.f32_to_f16(src + off, a + off, n);
				k->f32_to_f16(src + off, b + off, n);
			} else {
				qs_kernels_ref.f32_to_bf16(src + off, a + off, n);
				k->f32_to_bf16(src + off, b + off, n);
			}
			assert_memory_equal(a + off, b + off, n * 2);
			free(src);
			free(a);
			free(b);
		}
	}
}

static void bf16_narrow_level(const struct qs_kernels *k)
{
	narrow_check(k, 0);
}

static void f16_narrow_level(const struct qs_kernels *k)
{
	narrow_check(k, 1);
}

static void test_f32_to_bf16(void **state)
{
	(void)state;
	for_levels(bf16_narrow_level);
}

static void test_f32_to_f16(void **state)
{
	(void)state;
	for_levels(f16_narrow_level);
}

/* Every rounding boundary of f32 -> f16: each fp16 value's neighbourhood
 * (exact value, the halfway points and one ulp either side of them). */
static void f16_edges_level(const struct qs_kernels *k)
{
	size_t n = 65536 * 8;
	float *src = xmalloc(n * 4);
	uint16_t *a = xmalloc(n * 2), *b = xmalloc(n * 2);
	for (uint32_t h = 0; h < 65536; h++) {
		float f = qs_f16_to_f32((uint16_t)h);
		uint32_t u;
		memcpy(&u, &f, 4);
		/* half an fp16 ulp above, in f32 bits: 2^12 units for normals */
		for (int d = 0; d < 8; d++) {
			static const int32_t delta[8] = {0, 1, -1, 4095, 4096, 4097, -4096, -4097};
			src[h * 8 + (uint32_t)d] = bitsf(u + (uint32_t)delta[d]);
		}
	}
	qs_kernels_ref.f32_to_f16(src, a, n);
	k->f32_to_f16(src, b, n);
	assert_memory_equal(a, b, n * 2);
	qs_kernels_ref.f32_to_bf16(src, a, n);
	k->f32_to_bf16(src, b, n);
	assert_memory_equal(a, b, n * 2);
	free(src);
	free(a);
	free(b);
}

static void test_rounding_edges(void **state)
{
	(void)state;
	for_levels(f16_edges_level);
}

static void nonfinite_level(const struct qs_kernels *k)
{
	for (int kind = 0; kind < K_COUNT; kind++)
		for (size_t li = 0; li < NLENGTHS; li++) {
			size_t n = length_at(li), off = li % 4;
			float *x = xmalloc((n + off) * 4);
			fill(x, n + off, kind);
			assert_int_equal(qs_kernels_ref.count_nonfinite(x + off, n),
					 k->count_nonfinite(x + off, n));
			free(x);
		}
}

static void test_count_nonfinite(void **state)
{
	(void)state;
	for_levels(nonfinite_level);
}

/* ----------------------------------------------------------------- rtn */

static const unsigned groups[] = {32, 64, 128, 256, 1, 7, 8, 13, 100};
#define NGROUPS (sizeof(groups) / sizeof(groups[0]))

static void rtn_case(const struct qs_kernels *k, const float *w, size_t n, unsigned group,
		     unsigned bits)
{
	size_t ng = group ? n / group + (n % group != 0) : 0;
	uint16_t *sa = xmalloc(ng * 2), *sb = xmalloc(ng * 2);
	uint16_t *ma = xmalloc(ng * 2), *mb = xmalloc(ng * 2);
	uint8_t *ca = xmalloc(n), *cb = xmalloc(n);
	/* outputs start equal: degenerate parameters write nothing */
	memset(sa, 0xa5, ng * 2);
	memset(sb, 0xa5, ng * 2);
	memset(ma, 0xa5, ng * 2);
	memset(mb, 0xa5, ng * 2);
	memset(ca, 0xa5, n);
	memset(cb, 0xa5, n);
	size_t ra = qs_kernels_ref.rtn_quantize_row(w, n, group, bits, sa, ma, ca);
	size_t rb = k->rtn_quantize_row(w, n, group, bits, sb, mb, cb);
	assert_int_equal(ra, rb);
	assert_memory_equal(sa, sb, ng * 2);
	assert_memory_equal(ma, mb, ng * 2);
	assert_memory_equal(ca, cb, n);
	free(sa);
	free(sb);
	free(ma);
	free(mb);
	free(ca);
	free(cb);
}

static void rtn_level(const struct qs_kernels *k)
{
	for (int kind = 0; kind < K_COUNT; kind++)
		for (size_t li = 0; li < NLENGTHS; li++) {
			size_t n = length_at(li), off = (li + (size_t)kind) % 4;
			/* the big lengths once per kind, not per width */
			if (li > 300 && li % 2 != (size_t)kind % 2)
				continue;
			float *w = xmalloc((n + off) * 4);
			fill(w, n + off, kind);
			/* a few isolated specials in otherwise normal data */
			if (kind == K_UNIFORM && n && li % 5 == 0)
				w[off + rnd() % n] = special_value();
			for (unsigned bits = 1; bits <= 8; bits++) {
				unsigned group = groups[(li + bits) % NGROUPS];
				rtn_case(k, w + off, n, group, bits);
			}
			free(w);
		}
}

static void test_rtn_quantize(void **state)
{
	(void)state;
	for_levels(rtn_level);
}

/* Every width x group on one long row with a partial last group. */
static void rtn_grid_level(const struct qs_kernels *k)
{
	size_t n = 4 * 256 + 77;
	float *w = xmalloc((n + 3) * 4);
	for (int kind = 0; kind < K_COUNT; kind++) {
		fill(w, n + 3, kind);
		for (unsigned bits = 1; bits <= 8; bits++)
			for (size_t g = 0; g < NGROUPS; g++)
				rtn_case(k, w + bits % 4, n, groups[g], bits);
	}
	/* degenerate parameters return the same failure */
	rtn_case(k, w, n, 0, 4);
	rtn_case(k, w, n, 128, 0);
	rtn_case(k, w, n, 128, 9);
	free(w);
}

static void test_rtn_grid(void **state)
{
	(void)state;
	for_levels(rtn_grid_level);
}

static void dequant_level(const struct qs_kernels *k)
{
	for (size_t li = 0; li < NLENGTHS; li++) {
		size_t n = length_at(li), off = li % 4;
		unsigned group = groups[li % NGROUPS];
		size_t ng = n / group + (n % group != 0);
		uint8_t *codes = xmalloc(n + off);
		uint16_t *scale = xmalloc(ng * 2 + 2), *min = xmalloc(ng * 2 + 2);
		float *a = xmalloc((n + off) * 4), *b = xmalloc((n + off) * 4);
		for (size_t i = 0; i < n + off; i++)
			codes[i] = (uint8_t)rnd();
		for (size_t g = 0; g < ng + 1; g++) {
			/* any finite or infinite fp16 (NaN scale and min both
			 * NaN would leave the result's payload to the
			 * compiler's operand order even in ref) */
			scale[g] = (uint16_t)(rnd() % 4 ? rnd() & 0x7bffu : rnd() & 0xfc00u);
			min[g] = (uint16_t)(rnd() % 4 ? rnd() & 0xfbffu : rnd() | 0x7c00u);
		}
		qs_kernels_ref.rtn_dequantize_row(codes + off, n, group, scale + off % 2,
						  min + off % 2, a + off);
		k->rtn_dequantize_row(codes + off, n, group, scale + off % 2, min + off % 2,
				      b + off);
		/* A NaN min or Inf*0 gives NaN; which NaN payload survives
		 * depends on the operand order the compiler picks for the
		 * commutative add (it differs between -O0 sanitizer builds and
		 * -O2), so NaNs compare as equal whatever their payload. */
		for (size_t i = off; i < n + off; i++) {
			if (a[i] != a[i] && b[i] != b[i])
				a[i] = b[i] = NAN;
		}
		assert_memory_equal(a + off, b + off, n * 4);
		free(codes);
		free(scale);
		free(min);
		free(a);
		free(b);
	}
}

static void test_rtn_dequantize(void **state)
{
	(void)state;
	for_levels(dequant_level);
}

/* ---------------------------------------------------------- bit packing */

static void pack_level(const struct qs_kernels *k)
{
	for (unsigned bits = 1; bits <= 8; bits++)
		for (size_t li = 0; li < NLENGTHS; li++) {
			size_t n = length_at(li);
			uint64_t bitpos = (li * 7 + bits) % 24;
			size_t off = li % 3;
			size_t nbytes = (size_t)((bitpos + (uint64_t)n * bits + 7) / 8) + 5;
			uint8_t *codes = xmalloc(n + off);
			uint8_t *a = xmalloc(nbytes), *b = xmalloc(nbytes);
			for (size_t i = 0; i < n + off; i++)
				codes[i] = (uint8_t)rnd();
			/* codes are < 2^bits by contract; exercise the masking
			 * too on half of the cases */
			if (li % 2)
				for (size_t i = 0; i < n + off; i++)
					codes[i] &= (uint8_t)((1u << bits) - 1u);
			for (size_t i = 0; i < nbytes; i++)
				a[i] = b[i] = (uint8_t)rnd();
			qs_kernels_ref.pack_bits(codes + off, n, bits, a, bitpos);
			k->pack_bits(codes + off, n, bits, b, bitpos);
			assert_memory_equal(a, b, nbytes);
			free(codes);
			free(a);
			free(b);
		}
}

static void test_pack_bits(void **state)
{
	(void)state;
	for_levels(pack_level);
}

static void unpack_level(const struct qs_kernels *k)
{
	for (unsigned bits = 1; bits <= 8; bits++)
		for (size_t li = 0; li < NLENGTHS; li++) {
			size_t n = length_at(li);
			uint64_t bitpos = (li * 5 + bits) % 24;
			size_t off = li % 3;
			/* exactly the bytes the stream covers: reading one more
			 * is an ASan error */
			size_t nbytes = (size_t)((bitpos + (uint64_t)n * bits + 7) / 8);
			uint8_t *src = xmalloc(nbytes);
			uint8_t *a = xmalloc(n + off), *b = xmalloc(n + off);
			for (size_t i = 0; i < nbytes; i++)
				src[i] = (uint8_t)rnd();
			qs_kernels_ref.unpack_bits(src, bitpos, n, bits, a + off);
			k->unpack_bits(src, bitpos, n, bits, b + off);
			assert_memory_equal(a + off, b + off, n);
			free(src);
			free(a);
			free(b);
		}
}

static void test_unpack_bits(void **state)
{
	(void)state;
	for_levels(unpack_level);
}

/* Rows packed back to back (as rtn.c does) round-trip through every
 * level's unpack. */
static void rows_level(const struct qs_kernels *k)
{
	static const size_t cols[] = {256, 200, 33, 4096};
	for (unsigned bits = 2; bits <= 8; bits++)
		for (size_t c = 0; c < 4; c++) {
			size_t rows = 3, n = rows * cols[c];
			size_t nbytes = (n * bits + 7) / 8;
			uint8_t *codes = xmalloc(n), *back = xmalloc(n);
			uint8_t *a = calloc(nbytes, 1), *b = calloc(nbytes, 1);
			assert_non_null(a);
			assert_non_null(b);
			for (size_t i = 0; i < n; i++)
				codes[i] = (uint8_t)(rnd() & ((1u << bits) - 1u));
			for (size_t r = 0; r < rows; r++) {
				uint64_t pos = (uint64_t)r * cols[c] * bits;
				qs_kernels_ref.pack_bits(codes + r * cols[c], cols[c], bits, a, pos);
				k->pack_bits(codes + r * cols[c], cols[c], bits, b, pos);
			}
			assert_memory_equal(a, b, nbytes);
			for (size_t r = 0; r < rows; r++)
				k->unpack_bits(b, (uint64_t)r * cols[c] * bits, cols[c], bits,
					       back + r * cols[c]);
			assert_memory_equal(codes, back, n);
			free(codes);
			free(back);
			free(a);
			free(b);
		}
}

static void test_pack_rows(void **state)
{
	(void)state;
	for_levels(rows_level);
}

/* ------------------------------------------- decode_checked, rtn_quantize_src */

static void decode_src_level(const struct qs_kernels *k)
{
	char what[160] = "";
	int bad = decode_src_check(&qs_kernels_ref, k, what, sizeof(what));
	if (bad)
		fail_msg("%s: %d mismatches, first: %s", k->name, bad, what);
}

static void test_decode_src(void **state)
{
	(void)state;
	for_levels(decode_src_level);
}

/* ref against the two-pass definition and its own fused rtn (the check
 * runs ref against itself: only the definitional parts can fail) */
static void test_decode_src_ref(void **state)
{
	(void)state;
	decode_src_level(&qs_kernels_ref);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_env_forces_ref),
		cmocka_unit_test(test_choose),
		cmocka_unit_test(test_bf16_to_f32),
		cmocka_unit_test(test_f16_to_f32),
		cmocka_unit_test(test_f32_to_bf16),
		cmocka_unit_test(test_f32_to_f16),
		cmocka_unit_test(test_rounding_edges),
		cmocka_unit_test(test_count_nonfinite),
		cmocka_unit_test(test_rtn_quantize),
		cmocka_unit_test(test_rtn_grid),
		cmocka_unit_test(test_rtn_dequantize),
		cmocka_unit_test(test_pack_bits),
		cmocka_unit_test(test_unpack_bits),
		cmocka_unit_test(test_pack_rows),
		cmocka_unit_test(test_decode_src),
		cmocka_unit_test(test_decode_src_ref),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* neon_driver.c - stand-alone check that arm/neon.c is bit-identical to
 * ref.c, built by neon-check.sh with a cross compiler and run under
 * qemu-aarch64 (no cmocka or other libraries on the target side).  The
 * kernels are compiled into this unit directly.  Exit 0 when every case
 * matches, 1 (with the first mismatch on stderr) otherwise. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "fp16.c"
#include "ref.c"
#include "ref_adpq.c"
#include "ref_daq.c"
#include "ref_claq.c"
#include "arm/neon.c"

static const struct qs_kernels *const R = &qs_kernels_ref;
static const struct qs_kernels *const N = &qs_kernels_neon;
static int failures;

static uint64_t rng_state = 0x13198a2e03707344ull;
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

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		perror("malloc");
		exit(2);
	}
	return p;
}

static void same(const void *a, const void *b, size_t n, const char *what, size_t len,
		 unsigned x, unsigned y)
{
	if (memcmp(a, b, n) == 0)
		return;
	if (failures++ < 10)
		fprintf(stderr, "neon differs from ref: %s n=%zu (%u, %u)\n", what, len, x, y);
}

static size_t length_at(size_t k)
{
	static const size_t big[] = {511, 1024, 4099, 65536 + 37};
	return k <= 300 ? k : big[k - 301];
}
#define NLENGTHS 305

static float special_value(void)
{
	static const uint32_t sp[] = {
		0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00000u, 0x7f800001u,
		0x7fbfffffu, 0xffa5a5a5u, 0x00000000u, 0x80000000u, 0x00000001u,
		0x807fffffu, 0x477fe000u, 0xc77fe000u, 0x477ff000u, 0x477fefffu,
		0x49742400u, 0xc9742400u, 0x33000000u, 0x33000001u, 0x387fc000u,
		0x38800000u,
	};
	return bitsf(sp[rnd() % (sizeof(sp) / sizeof(sp[0]))]);
}

static float uniform(float scale)
{
	return ((float)(rnd() >> 40) / (float)(1u << 24) * 2.0f - 1.0f) * scale;
}

#define KINDS 9
static void fill(float *x, size_t n, int kind)
{
	float scale = ldexpf(1.0f, (int)(rnd() % 40) - 20);
	float c = uniform(scale);
	for (size_t i = 0; i < n; i++) {
		switch (kind) {
		case 0: x[i] = uniform(scale); break;
		case 1: x[i] = c; break;
		case 2: x[i] = rnd() & 1 ? -0.0f : 0.0f; break;
		case 3: x[i] = bitsf((uint32_t)(rnd() & 0x807fffffu)); break;
		case 4: x[i] = rnd() % 8 ? uniform(scale) : special_value(); break;
		case 5: x[i] = bitsf((uint32_t)rnd()); break;
		case 6: x[i] = bitsf(0x7fc00000u | (uint32_t)(rnd() & 0x803fffffu)); break;
		case 7:
			x[i] = qs_f16_to_f32((uint16_t)(rnd() & 0xfbffu)) *
			       (1.0f + (float)((int)(rnd() % 3) - 1) * 0x1p-23f);
			break;
		default: x[i] = uniform(70000.0f); break;
		}
	}
}

static void check_conversions(void)
{
	size_t n = 65536;
	uint16_t *h = xmalloc(n * 2 + 8);
	float *a = xmalloc(n * 4 + 16), *b = xmalloc(n * 4 + 16);
	for (size_t off = 0; off < 4; off++) {
		for (size_t i = 0; i < n; i++)
			h[off + i] = (uint16_t)(i * 40503u + off);
		R->bf16_to_f32(h + off, a + off, n);
		N->bf16_to_f32(h + off, b + off, n);
		same(a + off, b + off, n * 4, "bf16_to_f32", n, (unsigned)off, 0);
		R->f16_to_f32(h + off, a + off, n);
		N->f16_to_f32(h + off, b + off, n);
		same(a + off, b + off, n * 4, "f16_to_f32", n, (unsigned)off, 0);
	}
	free(h);
	free(a);
	free(b);

	for (int kind = 0; kind < KINDS; kind++)
		for (size_t li = 0; li < NLENGTHS; li++) {
			size_t len = length_at(li), off = li % 4;
			float *x = xmalloc((len + off) * 4);
			uint16_t *ha = xmalloc((len + off) * 2), *hb = xmalloc((len + off) * 2);
			fill(x, len + off, kind);
			R->f32_to_f16(x + off, ha + off, len);
			N->f32_to_f16(x + off, hb + off, len);
			same(ha + off, hb + off, len * 2, "f32_to_f16", len, (unsigned)kind, 0);
			R->f32_to_bf16(x + off, ha + off, len);
			N->f32_to_bf16(x + off, hb + off, len);
			same(ha + off, hb + off, len * 2, "f32_to_bf16", len, (unsigned)kind, 0);
			if (R->count_nonfinite(x + off, len) != N->count_nonfinite(x + off, len))
				same("a", "b", 1, "count_nonfinite", len, (unsigned)kind, 0);
			free(x);
			free(ha);
			free(hb);
		}

	/* around every fp16 rounding boundary */
	n = 65536 * 8;
	float *x = xmalloc(n * 4);
	uint16_t *ha = xmalloc(n * 2), *hb = xmalloc(n * 2);
	for (uint32_t v = 0; v < 65536; v++) {
		static const int32_t delta[8] = {0, 1, -1, 4095, 4096, 4097, -4096, -4097};
		float f = qs_f16_to_f32((uint16_t)v);
		uint32_t u;
		memcpy(&u, &f, 4);
		for (int d = 0; d < 8; d++)
			x[v * 8 + (uint32_t)d] = bitsf(u + (uint32_t)delta[d]);
	}
	R->f32_to_f16(x, ha, n);
	N->f32_to_f16(x, hb, n);
	same(ha, hb, n * 2, "f32_to_f16 edges", n, 0, 0);
	R->f32_to_bf16(x, ha, n);
	N->f32_to_bf16(x, hb, n);
	same(ha, hb, n * 2, "f32_to_bf16 edges", n, 0, 0);
	free(x);
	free(ha);
	free(hb);
}

static const unsigned groups[] = {32, 64, 128, 256, 1, 7, 8, 13, 100};
#define NGROUPS (sizeof(groups) / sizeof(groups[0]))

static void rtn_case(const float *w, size_t n, unsigned group, unsigned bits)
{
	size_t ng = n / group + (n % group != 0);
	uint16_t *sa = xmalloc(ng * 2), *sb = xmalloc(ng * 2);
	uint16_t *ma = xmalloc(ng * 2), *mb = xmalloc(ng * 2);
	uint8_t *ca = xmalloc(n), *cb = xmalloc(n);
	size_t ra = R->rtn_quantize_row(w, n, group, bits, sa, ma, ca);
	size_t rb = N->rtn_quantize_row(w, n, group, bits, sb, mb, cb);
	if (ra != rb)
		same("a", "b", 1, "rtn overflow count", n, group, bits);
	same(sa, sb, ng * 2, "rtn scale", n, group, bits);
	same(ma, mb, ng * 2, "rtn min", n, group, bits);
	same(ca, cb, n, "rtn codes", n, group, bits);
	free(sa);
	free(sb);
	free(ma);
	free(mb);
	free(ca);
	free(cb);
}

static void check_rtn(void)
{
	for (int kind = 0; kind < KINDS; kind++)
		for (size_t li = 0; li < NLENGTHS; li++) {
			size_t n = length_at(li), off = (li + (size_t)kind) % 4;
			float *w = xmalloc((n + off) * 4);
			fill(w, n + off, kind);
			if (kind == 0 && n && li % 5 == 0)
				w[off + rnd() % n] = special_value();
			for (unsigned bits = 1; bits <= 8; bits++)
				rtn_case(w + off, n, groups[(li + bits) % NGROUPS], bits);
			free(w);
		}

	for (size_t li = 0; li < NLENGTHS; li++) {
		size_t n = length_at(li);
		unsigned group = groups[li % NGROUPS];
		size_t ng = n / group + (n % group != 0);
		uint8_t *codes = xmalloc(n);
		uint16_t *scale = xmalloc(ng * 2), *min = xmalloc(ng * 2);
		float *a = xmalloc(n * 4), *b = xmalloc(n * 4);
		for (size_t i = 0; i < n; i++)
			codes[i] = (uint8_t)rnd();
		for (size_t g = 0; g < ng; g++) {
			scale[g] = (uint16_t)(rnd() % 4 ? rnd() & 0x7bffu : rnd() & 0xfc00u);
			min[g] = (uint16_t)(rnd() % 4 ? rnd() & 0xfbffu : rnd() | 0x7c00u);
		}
		R->rtn_dequantize_row(codes, n, group, scale, min, a);
		N->rtn_dequantize_row(codes, n, group, scale, min, b);
		same(a, b, n * 4, "rtn_dequantize_row", n, group, 0);
		free(codes);
		free(scale);
		free(min);
		free(a);
		free(b);
	}
}

static void check_bits(void)
{
	for (unsigned bits = 1; bits <= 8; bits++)
		for (size_t li = 0; li < NLENGTHS; li++) {
			size_t n = length_at(li);
			uint64_t bitpos = (li * 7 + bits) % 24;
			size_t nbytes = (size_t)((bitpos + (uint64_t)n * bits + 7) / 8) + 5;
			uint8_t *codes = xmalloc(n), *a = xmalloc(nbytes), *b = xmalloc(nbytes);
			uint8_t *ca = xmalloc(n), *cb = xmalloc(n);
			for (size_t i = 0; i < n; i++)
				codes[i] = (uint8_t)(li % 2 ? rnd() & ((1u << bits) - 1u) : rnd());
			for (size_t i = 0; i < nbytes; i++)
				a[i] = b[i] = (uint8_t)rnd();
			R->pack_bits(codes, n, bits, a, bitpos);
			N->pack_bits(codes, n, bits, b, bitpos);
			same(a, b, nbytes, "pack_bits", n, bits, (unsigned)bitpos);
			R->unpack_bits(a, bitpos, n, bits, ca);
			N->unpack_bits(a, bitpos, n, bits, cb);
			same(ca, cb, n, "unpack_bits", n, bits, (unsigned)bitpos);
			free(codes);
			free(a);
			free(b);
			free(ca);
			free(cb);
		}
}

int main(void)
{
	check_conversions();
	check_rtn();
	check_bits();
	if (failures) {
		fprintf(stderr, "%d mismatches\n", failures);
		return 1;
	}
	printf("neon: all kernels bit-identical to ref\n");
	return 0;
}

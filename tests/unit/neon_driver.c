/* neon_driver.c - stand-alone check that arm/neon.c and arm/neon_adpq.c
 * are bit-identical to ref.c and ref_adpq.c, built by neon-check.sh with a
 * cross compiler and run under qemu-aarch64 (no cmocka or other libraries
 * on the target side).  neon-check.sh compiles every kernel file as its own
 * unit with the build's flags and links them to this one, as the library
 * does.  Exit 0 when every case matches, 1 (with the first mismatch on
 * stderr) otherwise. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf_blocks.h"
#include "decode_src_check.h"
#include "kernels.h"

extern const struct qs_kernels qs_kernels_neon;

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

/* adpq: heavy-tailed and adversarial rows (zeros, all-equal groups, ties,
 * denormals, huge values, NaN, Inf, any bits). */
#define AKINDS 12
static float avalue(int d, size_t i)
{
	switch (d) {
	case 0: return uniform(0.02f) + uniform(0.02f) + uniform(0.02f);
	case 1: {
		float v = uniform(0.02f) + uniform(0.02f);
		return rnd() % 100 == 0 ? v * 40.0f : v;
	}
	case 2: return rnd() % 2 ? 0.0f : -0.0f;
	case 3: return (i / 64) % 2 ? 0.5f : -0.125f;
	case 4: return (float)((int)(rnd() % 7) - 3) * 0.25f;
	case 5: return bitsf((uint32_t)(rnd() % 0x7fffffu) | (rnd() % 2 ? 0x80000000u : 0));
	case 6: return rnd() % 50 == 0 ? (rnd() % 2 ? 6.0e4f : -7.0e4f) : uniform(3000.0f);
	case 7:
		return rnd() % 10 == 0 ? bitsf(0x7fc00000u | (uint32_t)(rnd() % 0x3fffffu) |
					       (rnd() % 2 ? 0x80000000u : 0))
				       : uniform(0.1f);
	case 8: return rnd() % 40 == 0 ? (rnd() % 2 ? INFINITY : -INFINITY) : uniform(2.0f);
	case 9: return bitsf((uint32_t)rnd());
	case 10:
		/* halves on [0, 15]: ties in the nearest-code rounding */
		return i % 64 == 0 ? 0.0f : i % 64 == 1 ? 15.0f : (float)(rnd() % 31) * 0.5f;
	default: return uniform(1.5f) + 2.5f;
	}
}

static size_t adpq_total_k(const struct qs_adpq_params *p, size_t n)
{
	size_t k = qs_adpq_k(p->alpha_e4, n);
	return k < n ? k : n;
}

struct arow {
	struct qs_adpq_row r;
	uint16_t *meta, *counts;
	float *tmp;
	uint8_t *codes, *mask, *idx;
};

static void arow_alloc(struct arow *x, size_t n, size_t ng)
{
	memset(x, 0, sizeof(*x));
	x->meta = xmalloc(4 * ng * sizeof(uint16_t));
	x->tmp = xmalloc(4 * ng * sizeof(float));
	x->codes = xmalloc(n);
	x->mask = xmalloc(n);
	x->idx = xmalloc(n);
	x->counts = xmalloc(ng * sizeof(uint16_t));
	x->r.counts = x->counts;
	memset(x->meta, 0, 4 * ng * sizeof(uint16_t));
	memset(x->idx, 0, n);
	x->r.meta = x->meta;
	x->r.tmp = x->tmp;
	x->r.codes = x->codes;
	x->r.mask = x->mask;
	x->r.idx = x->idx;
}

static void arow_free(struct arow *x)
{
	free(x->meta);
	free(x->tmp);
	free(x->codes);
	free(x->mask);
	free(x->idx);
	free(x->counts);
}

static unsigned adpq_rows;

/* ref and neon on one row (at an odd offset), everything compared, then
 * both dequantizers on ref's payload and the bit planes of its codes. */
static void adpq_case(const float *src, size_t n, const struct qs_adpq_params *p)
{
	size_t ng = n / p->group + (n % p->group != 0);
	float *buf = xmalloc((n + 1) * sizeof(float));
	memcpy(buf + 1, src, n * sizeof(float));
	struct arow a, b;
	arow_alloc(&a, n, ng);
	arow_alloc(&b, n, ng);
	unsigned pv = p->bits * 1000 + p->group, fv = p->alpha_e4 * 100 + p->search * 4 + p->flags;
	size_t ra = R->adpq_quantize_row(buf + 1, n, p, &a.r);
	size_t rb = N->adpq_quantize_row(buf + 1, n, p, &b.r);
	if (ra != rb)
		same("a", "b", 1, "adpq return", n, pv, fv);
	same(a.r.super, b.r.super, sizeof(a.r.super), "adpq super", n, pv, fv);
	same(a.meta, b.meta, 4 * ng * sizeof(uint16_t), "adpq meta", n, pv, fv);
	same(a.codes, b.codes, n, "adpq codes", n, pv, fv);
	same(a.idx, b.idx, adpq_total_k(p, n), "adpq idx", n, pv, fv);
	same(a.counts, b.counts, (n / p->group + (n % p->group != 0)) * sizeof(uint16_t),
	     "adpq counts", n, pv, fv);
	adpq_rows++;

	float *da = xmalloc(n * sizeof(float) + 4), *db = xmalloc(n * sizeof(float) + 4);
	if (R->adpq_dequantize_row(&a.r, n, p, da) != N->adpq_dequantize_row(&a.r, n, p, db + 1))
		same("a", "b", 1, "adpq dequantize return", n, pv, fv);
	same(da, db + 1, n * sizeof(float), "adpq dequantize", n, pv, fv);

	size_t pb = n / 8 + (n % 8 != 0), stride = pb + 3;
	uint8_t *pa = xmalloc(4 * stride + 1), *pn = xmalloc(4 * stride + 1);
	memset(pa, 0xa5, 4 * stride + 1);
	memset(pn, 0xa5, 4 * stride + 1);
	R->pack_planes(a.codes, n, p->bits, pa, stride);
	N->pack_planes(a.codes, n, p->bits, pn + 1, stride);
	same(pa, pn + 1, 4 * stride, "adpq pack_planes", n, pv, fv);
	N->unpack_planes(pn + 1, stride, n, p->bits, b.codes);
	uint8_t *back = xmalloc(n);
	R->unpack_planes(pa, stride, n, p->bits, back);
	same(back, b.codes, n, "adpq unpack_planes", n, pv, fv);
	free(back);
	free(pa);
	free(pn);
	free(da);
	free(db);
	arow_free(&a);
	arow_free(&b);
	free(buf);
}

static void check_adpq(void)
{
	static const size_t lens[] = {1, 5, 31, 63, 64, 65, 100, 127, 128, 129, 200, 255,
				      256, 257, 300, 511, 777, 1024, 2048 + 13};
	static const unsigned alphas[] = {0, 1, 78, 200, 390, 700, 1000, 1563, 2500};
	static const unsigned searches[] = {0, 1, 4, 9, 16};
	float *w = xmalloc(4096 * sizeof(float));

	/* every bits x group x scales x layout on every kind and length */
	for (int d = 0; d < AKINDS; d++)
		for (size_t li = 0; li < sizeof(lens) / sizeof(*lens); li++) {
			size_t n = lens[li];
			for (size_t i = 0; i < n; i++)
				w[i] = avalue(d, i);
			for (unsigned bits = 2; bits <= 4; bits++)
				for (unsigned group = 64; group <= 256; group *= 2)
					for (unsigned flags = 0; flags < 4; flags++) {
						struct qs_adpq_params p = {bits, group, 200, 4, flags};
						adpq_case(w, n, &p);
					}
		}
	/* alpha 0..0.25 (k past the per-lane top-k path) x search 0..16 */
	for (int d = 0; d < AKINDS; d++)
		for (size_t a = 0; a < sizeof(alphas) / sizeof(*alphas); a++)
			for (size_t si = 0; si < sizeof(searches) / sizeof(*searches); si++) {
				size_t n = 64 + rnd() % 900;
				for (size_t i = 0; i < n; i++)
					w[i] = avalue(d, i);
				struct qs_adpq_params p = {2 + (unsigned)(rnd() % 3), 64u << (rnd() % 3),
							   alphas[a], searches[si],
							   (unsigned)(rnd() % 4)};
				adpq_case(w, n, &p);
			}
	/* mixtures of kinds within a row, random parameters */
	for (int it = 0; it < 600; it++) {
		size_t n = 1 + rnd() % 700;
		for (size_t i = 0; i < n; i++)
			w[i] = avalue((int)(rnd() % AKINDS), i);
		struct qs_adpq_params p = {2 + (unsigned)(rnd() % 3), 64u << (rnd() % 3),
					   (unsigned)(rnd() % 2501), (unsigned)(rnd() % 17),
					   (unsigned)(rnd() % 4)};
		adpq_case(w, n, &p);
	}
	free(w);

	/* bit planes on random codes of every width 1..8, unaligned */
	for (size_t n = 0; n <= 700; n += (n < 300 ? 1 : 97))
		for (unsigned bits = 1; bits <= 8; bits++) {
			size_t pb = n / 8 + (n % 8 != 0), stride = pb + 3;
			uint8_t *codes = xmalloc(n + 1), *ca = xmalloc(n + 1), *cb = xmalloc(n + 1);
			uint8_t *da = xmalloc(8 * stride + 1), *db = xmalloc(8 * stride + 1);
			for (size_t i = 0; i < n; i++)
				codes[1 + i] = (uint8_t)(rnd() & ((1u << bits) - 1u));
			memset(da, 0xa5, 8 * stride + 1);
			memset(db, 0xa5, 8 * stride + 1);
			R->pack_planes(codes + 1, n, bits, da + 1, stride);
			N->pack_planes(codes + 1, n, bits, db + 1, stride);
			same(da, db, 8 * stride + 1, "pack_planes", n, bits, 0);
			R->unpack_planes(da + 1, stride, n, bits, ca + 1);
			N->unpack_planes(db + 1, stride, n, bits, cb + 1);
			same(ca + 1, cb + 1, n, "unpack_planes", n, bits, 0);
			same(codes + 1, cb + 1, n, "unpack_planes round trip", n, bits, 0);
			free(codes);
			free(ca);
			free(cb);
			free(da);
			free(db);
		}
}

/* gguf: quantized payloads and dequantized floats, every type, odd block
 * counts (the legacy types run eight blocks at a time), with and without
 * importance, on the fill() kinds that stay within fp16 scale range */
static void check_gguf(void)
{
	float *x = xmalloc(4 * 2560), *imp = xmalloc(4 * 2560);
	float *ya = xmalloc(4 * 2560), *yb = xmalloc(4 * 2560);
	uint8_t *a = xmalloc(4096), *b = xmalloc(4096);
	for (unsigned t = 0; t < QS_GGUF_NTYPES; t++) {
		unsigned bw = qs_gguf_block_weights(t), bb = qs_gguf_block_bytes(t);
		for (size_t nb = 1; nb <= (bw == 32 ? 19u : 6u); nb++)
			for (int kind = 0; kind < KINDS; kind++) {
				if (kind == 4 || kind == 5 || kind == 6 || kind == 8)
					continue;  /* Inf/NaN/huge: refused alike, not compared */
				fill(x, nb * bw, kind);
				for (size_t i = 0; i < nb * bw; i++)
					imp[i] = (float)(rnd() % 1000) * 0.01f;
				for (int wi = 0; wi < 2; wi++) {
					size_t ra = R->gguf_quantize_row(t, x, wi ? imp : NULL, nb, a);
					size_t rb = N->gguf_quantize_row(t, x, wi ? imp : NULL, nb, b);
					if (ra != rb)
						same("a", "b", 1, "gguf overflow count", nb, t, (unsigned)kind);
					same(a, b, nb * bb, "gguf_quantize_row", nb, t, (unsigned)kind);
					R->gguf_dequantize_row(t, a, nb, ya);
					N->gguf_dequantize_row(t, a, nb, yb);
					same(ya, yb, nb * bw * 4, "gguf_dequantize_row", nb, t,
					     (unsigned)kind);
				}
			}
	}
	free(x);
	free(imp);
	free(ya);
	free(yb);
	free(a);
	free(b);
}

/* The NEON table is complete (kernels.h): every entry, read as a pointer
 * word, is non-NULL. */
static void check_table_complete(void)
{
	_Static_assert(sizeof(struct qs_kernels) % sizeof(void *) == 0,
		       "struct qs_kernels holds only pointers");
	for (size_t w = 0; w < sizeof(qs_kernels_neon) / sizeof(void *); w++) {
		void *p;
		memcpy(&p, (const char *)&qs_kernels_neon + w * sizeof(void *), sizeof(p));
		if (!p) {
			fprintf(stderr, "neon: kernel table entry %zu is NULL\n", w);
			failures++;
		}
	}
}

static void check_decode_src(void)
{
	char what[160] = "";
	int bad = decode_src_check(R, N, what, sizeof(what));
	if (bad) {
		failures += bad;
		fprintf(stderr, "neon differs from ref: %d mismatches, first: %s\n", bad, what);
	}
}

int main(void)
{
	check_decode_src();
	check_gguf();
	check_table_complete();
	check_conversions();
	check_rtn();
	check_bits();
	check_adpq();
	if (failures) {
		fprintf(stderr, "%d mismatches\n", failures);
		return 1;
	}
	printf("neon: all kernels bit-identical to ref\n");
	return 0;
}

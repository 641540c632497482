/* ref_digest.c - prints one digest per ref kernel over fixed pseudo-random
 * inputs (normal-ish weights with outliers, ties, zeros, denormals, NaN),
 * so neon-check.sh can build it for the host and for AArch64 and compare:
 * the reference kernels are the definition of the output and must give the
 * same bits on every architecture (kernels.h).  A compiler that fuses a
 * multiply and an add (aarch64 gcc without -ffp-contract=off) changes a
 * digest.  Stand-alone: only the kernel files and libm. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daq_qform.h"
#include "gguf_blocks.h"
#include "kernels.h"

static const struct qs_kernels *const R = &qs_kernels_ref;

static uint64_t rng_state = 0x452821e638d01377ull;
static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static float uniform(void)
{
	return (float)((double)(rnd() >> 11) * 0x1p-53) * 2.0f - 1.0f;
}

static float weight(size_t i)
{
	switch (rnd() % 64) {
	case 0: return uniform() * 8.0f;           /* outlier */
	case 1: return 0.0f;
	case 2: return (float)(i % 5) * 0.125f;    /* exact ties */
	case 3: return 1e-40f;                     /* denormal */
	default: return (uniform() + uniform() + uniform()) * 0.05f;
	}
}

/* FNV-1a 64 */
struct digest {
	uint64_t h;
};

static void put(struct digest *d, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++) {
		d->h ^= b[i];
		d->h *= 0x100000001b3ull;
	}
}

static void show(const char *name, const struct digest *d)
{
	printf("%-16s %016llx\n", name, (unsigned long long)d->h);
}

#define N 4096

int main(void)
{
	static float w[N], imp[N], back[N];
	static uint8_t codes[N], codes2[N];
	static uint16_t h16[N], scale[N], mn[N];
	for (size_t i = 0; i < N; i++) {
		w[i] = weight(i);
		imp[i] = 0.5f + uniform() * uniform();
	}
	w[77] = NAN;

	struct digest d = {0xcbf29ce484222325ull};
	R->f32_to_bf16(w, h16, N);
	put(&d, h16, sizeof(h16));
	R->bf16_to_f32(h16, back, N);
	put(&d, back, sizeof(back));
	R->f32_to_f16(w, h16, N);
	put(&d, h16, sizeof(h16));
	R->f16_to_f32(h16, back, N);
	put(&d, back, sizeof(back));
	show("conversions", &d);

	d.h = 0xcbf29ce484222325ull;
	w[77] = 0.25f;
	for (unsigned bits = 2; bits <= 8; bits *= 2) {
		for (unsigned group = 32; group <= 256; group *= 2) {
			size_t over = R->rtn_quantize_row(w, N, group, bits, scale, mn, codes);
			put(&d, &over, sizeof(over));
			put(&d, scale, N / group * sizeof(uint16_t));
			put(&d, mn, N / group * sizeof(uint16_t));
			put(&d, codes, N);
			R->rtn_dequantize_row(codes, N, group, scale, mn, back);
			put(&d, back, sizeof(back));
		}
	}
	show("rtn", &d);

	/* adpq: every bits x group, with and without outliers and search */
	d.h = 0xcbf29ce484222325ull;
	static uint16_t meta[4 * N];
	static float tmp[4 * N];
	static uint8_t mask[N], idx[N];
	static uint16_t counts[N];
	for (unsigned bits = 2; bits <= 4; bits++)
		for (unsigned group = 64; group <= 256; group *= 2) {
			struct qs_adpq_params p = {.bits = bits, .group = group,
						   .alpha_e4 = bits * 50, .search = bits * 2,
						   .flags = bits == 3 ? QS_ADPQ_SCALES_F16 : 0};
			struct qs_adpq_row r = {.meta = meta, .codes = codes, .idx = idx,
						.tmp = tmp, .mask = mask, .counts = counts};
			memset(meta, 0, sizeof(meta));
			memset(idx, 0, sizeof(idx));
			size_t k = R->adpq_quantize_row(w, N, &p, &r);
			put(&d, &k, sizeof(k));
			put(&d, r.super, sizeof(r.super));
			put(&d, meta, 4 * (N / group) * sizeof(uint16_t));
			put(&d, codes, N);
			put(&d, idx, k < N ? k : N);
			put(&d, counts, (N / group) * sizeof(uint16_t));
			R->adpq_dequantize_row(&r, N, &p, back);
			put(&d, back, sizeof(back));
		}
	show("adpq", &d);

	/* daq/claq: code search, range statistics, candidate evaluation */
	d.h = 0xcbf29ce484222325ull;
	w[77] = NAN;
	float lev[16], mid[15];
	for (unsigned q = 0; q < 16; q++)
		lev[q] = ((float)q - 7.5f) / 7.5f;
	lev[3] = -0.6f;  /* uneven levels, as nf4 and fp4 have */
	for (unsigned q = 0; q < 15; q++)
		mid[q] = (lev[q] + lev[q + 1]) * 0.5f;
	for (size_t g = 0; g + 128 <= N; g += 128) {
		float lo[8], hi[8], out[3];
		size_t m = R->daq_range(w + g, 128, 8, lo, hi);
		put(&d, &m, sizeof(m));
		put(&d, lo, sizeof(lo));
		put(&d, hi, sizeof(hi));
		float z = (lo[7] + hi[7]) * 0.5f, s = (hi[7] - lo[7]) * 0.5f + 1e-3f;
		unsigned nlev = 3 + (unsigned)(g / 128 % 14);
		R->daq_eval(w + g, g % 256 ? imp + g : NULL, 128, z, s, 1.0f / s, lev, mid, nlev,
			    codes + g, out);
		put(&d, out, sizeof(out));
		put(&d, codes + g, 128);
		R->nearest_code(w + g, 128, z, 1.0f / s, mid, nlev - 1, codes2 + g);
		put(&d, codes2 + g, 128);
	}
	show("daq", &d);

	/* daq's incremental e^T H e (src/schemes/daq_qform.c, plain C in
	 * double): a walk of candidates on each group, H an indefinite
	 * symmetric block, every E and code digested */
	d.h = 0xcbf29ce484222325ull;
	{
		static float h[128 * 128];
		for (size_t i = 0; i < 128; i++)
			for (size_t j = 0; j <= i; j++)
				h[i * 128 + j] = h[j * 128 + i] =
					i == j ? 2.0f + uniform() : 0.3f * uniform();
		for (size_t g = 0; g + 128 <= N; g += 128) {
			float lo[1], hi[1];
			R->daq_range(w + g, 128, 1, lo, hi);
			float z = (lo[0] + hi[0]) * 0.5f, s = (hi[0] - lo[0]) * 0.5f + 1e-3f;
			R->nearest_code(w + g, 128, z, 1.0f / s, mid, 14, codes + g);
			struct qs_daq_qform q;
			qs_daq_qform_init(&q, h, w + g, lev, mid, 14, 128, z, s, 1.0f / s, codes + g);
			put(&d, &q.eb, sizeof(q.eb));
			for (unsigned t = 0; t < 40; t++) {
				float cz = z + uniform() * s * 0.05f, cs = s * (1.0f + uniform() * 0.05f);
				double e = qs_daq_qform_eval(&q, cz, cs, 1.0f / cs, codes2 + g);
				put(&d, &e, sizeof(e));
				put(&d, codes2 + g, 128);
				if (t % 2) {
					qs_daq_qform_commit(&q);
					z = cz;
					s = cs;
				}
			}
		}
	}
	show("daq_qform", &d);

	/* gguf: every ggml block type, plain and importance-weighted (the
	 * search uses fused multiply-adds: fmaf must round as FMLA does) */
	d.h = 0xcbf29ce484222325ull;
	static uint8_t blocks[N * 2];
	for (unsigned t = 0; t < QS_GGUF_NTYPES; t++)
		for (int wi = 0; wi < 2; wi++) {
			size_t nb = N / qs_gguf_block_weights(t);
			size_t bad = R->gguf_quantize_row(t, w, wi ? imp : NULL, nb, blocks);
			put(&d, &bad, sizeof(bad));
			put(&d, blocks, nb * qs_gguf_block_bytes(t));
			R->gguf_dequantize_row(t, blocks, nb, back);
			put(&d, back, sizeof(back));
		}
	show("gguf", &d);
	return 0;
}

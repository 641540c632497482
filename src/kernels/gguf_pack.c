/* gguf_pack.c - where ggml's blocks keep their codes and scales
 * (ggml-common.h's block_q8_0 ... block_q6_K, read off its dequantization
 * loops), as scalar pack/unpack functions every gguf kernel instance and
 * the gguf scheme share.  Offsets below are bytes from the block start. */
#include <string.h>

#include "gguf_blocks.h"
#include "kernels.h"

static float f16_at(const uint8_t *p)
{
	return qs_f16_to_f32((uint16_t)(p[0] | (p[1] << 8)));
}

/* Legacy nibbles: byte j holds element j (low) and j + 16 (high); the
 * fifth bits of q5_0/q5_1 are bit j of a little-endian u32 for element j. */
static void pack_legacy(const uint8_t *c, uint8_t *qh, uint8_t *qs)
{
	for (unsigned j = 0; j < 16; j++)
		qs[j] = (uint8_t)((c[j] & 0xf) | ((c[j + 16] & 0xf) << 4));
	if (!qh)
		return;
	uint32_t h = 0;
	for (unsigned j = 0; j < 32; j++)
		h |= (uint32_t)((c[j] >> 4) & 1) << j;
	for (unsigned k = 0; k < 4; k++)
		qh[k] = (uint8_t)(h >> (8 * k));
}

static void unpack_legacy(const uint8_t *qh, const uint8_t *qs, uint8_t *c)
{
	uint32_t h = qh ? (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 |
				  (uint32_t)qh[3] << 24
			: 0;
	for (unsigned j = 0; j < 16; j++) {
		c[j] = (uint8_t)((qs[j] & 0xf) | (((h >> j) & 1) << 4));
		c[j + 16] = (uint8_t)((qs[j] >> 4) | (((h >> (j + 16)) & 1) << 4));
	}
}

void qs_gguf_pack_codes(unsigned type, const uint8_t *c, uint8_t *b)
{
	switch (type) {
	case QS_GGUF_Q8_0:  /* d, qs[32] int8 */
		for (unsigned i = 0; i < 32; i++)
			b[2 + i] = (uint8_t)(c[i] - 128);
		break;
	case QS_GGUF_Q4_0:  /* d, qs[16] */
		pack_legacy(c, NULL, b + 2);
		break;
	case QS_GGUF_Q4_1:  /* d, m, qs[16] */
		pack_legacy(c, NULL, b + 4);
		break;
	case QS_GGUF_Q5_0:  /* d, qh[4], qs[16] */
		pack_legacy(c, b + 2, b + 6);
		break;
	case QS_GGUF_Q5_1:  /* d, m, qh[4], qs[16] */
		pack_legacy(c, b + 4, b + 8);
		break;
	case QS_GGUF_Q2_K:
	case QS_GGUF_Q3_K: {
		/* q2_K: scales[16], qs[64] at 16; q3_K: hmask[32] at 0, qs[64]
		 * at 32.  Element e = 128n + 32j + l has its low two bits in
		 * qs[32n + l] at bit 2j, q3_K's third bit in hmask[l] at bit
		 * 4n + j */
		uint8_t *qs = b + (type == QS_GGUF_Q2_K ? 16 : 32);
		for (unsigned n = 0; n < 2; n++)
			for (unsigned l = 0; l < 32; l++) {
				const uint8_t *e = c + 128 * n + l;
				qs[32 * n + l] = (uint8_t)((e[0] & 3) | (e[32] & 3) << 2 |
							   (e[64] & 3) << 4 | (e[96] & 3) << 6);
			}
		if (type == QS_GGUF_Q3_K)
			for (unsigned l = 0; l < 32; l++) {
				unsigned h = 0;
				for (unsigned k = 0; k < 8; k++)
					h |= ((c[32 * k + l] >> 2) & 1u) << k;
				b[l] = (uint8_t)h;
			}
		break;
	}
	case QS_GGUF_Q4_K:
	case QS_GGUF_Q5_K: {
		/* q4_K: qs[128] at 16; q5_K: qh[32] at 16, qs[128] at 48.
		 * Element e = 64j + 32h + l: nibble h of qs[32j + l]; q5_K's
		 * fifth bit in qh[l] at bit 2j + h */
		int q5 = type == QS_GGUF_Q5_K;
		uint8_t *qs = b + (q5 ? 48 : 16);
		for (unsigned j = 0; j < 4; j++)
			for (unsigned l = 0; l < 32; l++)
				qs[32 * j + l] = (uint8_t)((c[64 * j + l] & 0xf) |
							   (c[64 * j + 32 + l] & 0xf) << 4);
		if (q5)
			for (unsigned l = 0; l < 32; l++) {
				unsigned h = 0;
				for (unsigned k = 0; k < 8; k++)
					h |= ((c[32 * k + l] >> 4) & 1u) << k;
				b[16 + l] = (uint8_t)h;
			}
		break;
	}
	case QS_GGUF_Q6_K:
		/* ql[128] at 0, qh[64] at 128: element e = 128n + 32k + l has
		 * its low nibble in ql[64n + 32(k & 1) + l] (nibble k >> 1) and
		 * its top two bits in qh[32n + l] at bit 2k */
		for (unsigned n = 0; n < 2; n++)
			for (unsigned l = 0; l < 32; l++) {
				const uint8_t *e = c + 128 * n + l;
				b[64 * n + l] = (uint8_t)((e[0] & 0xf) | (e[64] & 0xf) << 4);
				b[64 * n + 32 + l] = (uint8_t)((e[32] & 0xf) | (e[96] & 0xf) << 4);
				b[128 + 32 * n + l] = (uint8_t)((e[0] >> 4 & 3) | (e[32] >> 4 & 3) << 2 |
								(e[64] >> 4 & 3) << 4 |
								(e[96] >> 4 & 3) << 6);
			}
		break;
	default:
		break;
	}
}

void qs_gguf_unpack_codes(unsigned type, const uint8_t *b, uint8_t *c)
{
	switch (type) {
	case QS_GGUF_Q8_0:
		for (unsigned i = 0; i < 32; i++)
			c[i] = (uint8_t)(b[2 + i] + 128);
		break;
	case QS_GGUF_Q4_0:
		unpack_legacy(NULL, b + 2, c);
		break;
	case QS_GGUF_Q4_1:
		unpack_legacy(NULL, b + 4, c);
		break;
	case QS_GGUF_Q5_0:
		unpack_legacy(b + 2, b + 6, c);
		break;
	case QS_GGUF_Q5_1:
		unpack_legacy(b + 4, b + 8, c);
		break;
	case QS_GGUF_Q2_K:
		for (unsigned e = 0; e < 256; e++)
			c[e] = (b[16 + 32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
		break;
	case QS_GGUF_Q3_K:
		for (unsigned e = 0; e < 256; e++) {
			unsigned n = e / 128, j = (e % 128) / 32, l = e % 32;
			c[e] = (uint8_t)(((b[32 + 32 * n + l] >> (2 * j)) & 3) |
					 (((b[l] >> (4 * n + j)) & 1) << 2));
		}
		break;
	case QS_GGUF_Q4_K:
	case QS_GGUF_Q5_K: {
		int q5 = type == QS_GGUF_Q5_K;
		const uint8_t *qs = b + (q5 ? 48 : 16);
		for (unsigned e = 0; e < 256; e++) {
			unsigned j = e / 64, h = (e % 64) / 32, l = e % 32;
			unsigned v = (qs[32 * j + l] >> (4 * h)) & 0xf;
			if (q5)
				v |= ((b[16 + l] >> (2 * j + h)) & 1u) << 4;
			c[e] = (uint8_t)v;
		}
		break;
	}
	case QS_GGUF_Q6_K:
		for (unsigned e = 0; e < 256; e++) {
			unsigned n = e / 128, k = (e % 128) / 32, l = e % 32;
			unsigned lo = (b[64 * n + 32 * (k & 1) + l] >> (4 * (k >> 1))) & 0xf;
			unsigned hi = (b[128 + 32 * n + l] >> (2 * k)) & 3;
			c[e] = (uint8_t)(lo | (hi << 4));
		}
		break;
	default:
		break;
	}
}

/* ggml's get_scale_min_k4, inverted: bytes 0-3 hold sc[0..3] and the top
 * two bits of sc[4..7], bytes 4-7 the same for the mins, bytes 8-11 the
 * low nibbles of sc[4..7] (low) and m[4..7] (high). */
void qs_gguf_pack_k4_scales(const uint8_t *sc, const uint8_t *mn, uint8_t *q)
{
	for (unsigned j = 0; j < 4; j++) {
		q[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
		q[j + 4] = (uint8_t)((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
		q[j + 8] = (uint8_t)((sc[j + 4] & 0xf) | ((mn[j + 4] & 0xf) << 4));
	}
}

void qs_gguf_unpack_k4_scales(const uint8_t *q, uint8_t *sc, uint8_t *mn)
{
	for (unsigned j = 0; j < 8; j++) {
		if (j < 4) {
			sc[j] = q[j] & 63;
			mn[j] = q[j + 4] & 63;
		} else {
			sc[j] = (uint8_t)((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4));
			mn[j] = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
		}
	}
}

/* q3_K's scales, stored +32 as 6 bits: bytes 0-7 hold the low nibbles of
 * scale j (low) and j + 8 (high); byte 8 + k holds the top two bits of
 * scales k, k+4, k+8, k+12 at bits 0, 2, 4, 6. */
void qs_gguf_pack_q3_scales(const int8_t *sc, uint8_t *q)
{
	uint8_t u[16];
	for (unsigned j = 0; j < 16; j++)
		u[j] = (uint8_t)((sc[j] + 32) & 63);
	for (unsigned j = 0; j < 8; j++)
		q[j] = (uint8_t)((u[j] & 0xf) | ((u[j + 8] & 0xf) << 4));
	for (unsigned k = 0; k < 4; k++) {
		uint8_t v = 0;
		for (unsigned g = 0; g < 4; g++)
			v |= (uint8_t)((u[k + 4 * g] >> 4) << (2 * g));
		q[8 + k] = v;
	}
}

void qs_gguf_unpack_q3_scales(const uint8_t *q, int8_t *sc)
{
	for (unsigned i = 0; i < 16; i++) {
		unsigned lo = i < 8 ? (q[i] & 0xfu) : (unsigned)(q[i - 8] >> 4);
		unsigned hi = (q[8 + i % 4] >> (2 * (i / 4))) & 3u;
		sc[i] = (int8_t)((int)(lo | (hi << 4)) - 32);
	}
}

void qs_gguf_block_grid(unsigned type, const uint8_t *b, float *a, float *off, unsigned *cmax)
{
	switch (type) {
	case QS_GGUF_Q8_0:
	case QS_GGUF_Q4_0:
	case QS_GGUF_Q5_0: {
		float d = f16_at(b);
		int mid = type == QS_GGUF_Q8_0 ? 128 : type == QS_GGUF_Q4_0 ? 8 : 16;
		*cmax = (unsigned)(2 * mid - 1);
		for (unsigned i = 0; i < 32; i++) {
			a[i] = d;
			off[i] = -(float)mid * d;
		}
		break;
	}
	case QS_GGUF_Q4_1:
	case QS_GGUF_Q5_1: {
		float d = f16_at(b), m = f16_at(b + 2);
		*cmax = type == QS_GGUF_Q4_1 ? 15 : 31;
		for (unsigned i = 0; i < 32; i++) {
			a[i] = d;
			off[i] = m;
		}
		break;
	}
	case QS_GGUF_Q2_K: {
		float d = f16_at(b + 80), dm = f16_at(b + 82);
		*cmax = 3;
		for (unsigned e = 0; e < 256; e++) {
			a[e] = d * (float)(b[e / 16] & 0xf);
			off[e] = -(dm * (float)(b[e / 16] >> 4));
		}
		break;
	}
	case QS_GGUF_Q3_K: {
		int8_t sc[16];
		float d = f16_at(b + 108);
		qs_gguf_unpack_q3_scales(b + 96, sc);
		*cmax = 7;
		for (unsigned e = 0; e < 256; e++) {
			a[e] = d * (float)sc[e / 16];
			off[e] = -4.0f * a[e];
		}
		break;
	}
	case QS_GGUF_Q4_K:
	case QS_GGUF_Q5_K: {
		uint8_t sc[8], mn[8];
		float d = f16_at(b), dm = f16_at(b + 2);
		qs_gguf_unpack_k4_scales(b + 4, sc, mn);
		*cmax = type == QS_GGUF_Q4_K ? 15 : 31;
		for (unsigned e = 0; e < 256; e++) {
			a[e] = d * (float)sc[e / 32];
			off[e] = -(dm * (float)mn[e / 32]);
		}
		break;
	}
	case QS_GGUF_Q6_K: {
		float d = f16_at(b + 208);
		*cmax = 63;
		for (unsigned e = 0; e < 256; e++) {
			a[e] = d * (float)(int8_t)b[192 + e / 16];
			off[e] = -32.0f * a[e];
		}
		break;
	}
	default:
		*cmax = 0;
		break;
	}
}

/* ggml_types.c - the ggml tensor types export writes: their block geometry
 * (ggml-common.h: QK4_0 = QK4_1 = QK5_0 = QK5_1 = QK8_0 = 32, QK_K = 256
 * and the block_* struct sizes) and, where this build has one, a quantizer
 * from f32.
 *
 * Quantizers here: f32, f16, bf16 (conversions) and q8_0.  The other
 * block types have from_f32 NULL: export quantizes them through the gguf
 * scheme ("gguf:type=T", whose payload is exactly the ggml blocks) when
 * that scheme is registered, and otherwise names the type as unavailable
 * instead of guessing.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "gguf.h"
#include "kernels.h"
#include "util.h"

static int from_f32_f32(const float *src, uint64_t rows, uint64_t cols, uint8_t *dst)
{
	memcpy(dst, src, (size_t)(rows * cols) * sizeof(float));
	return 0;
}

static int from_f32_f16(const float *src, uint64_t rows, uint64_t cols, uint8_t *dst)
{
	qs_kernels_get()->f32_to_f16(src, (uint16_t *)(void *)dst, (size_t)(rows * cols));
	return 0;
}

static int from_f32_bf16(const float *src, uint64_t rows, uint64_t cols, uint8_t *dst)
{
	qs_kernels_get()->f32_to_bf16(src, (uint16_t *)(void *)dst, (size_t)(rows * cols));
	return 0;
}

/* block_q8_0 = { fp16 d, i8 qs[32] }: d = max|x| / 127, q = round(x / d)
 * (halves away from zero), as ggml's reference quantize_row_q8_0 defines
 * the type; x = d * q on reading. */
static int from_f32_q8_0(const float *src, uint64_t rows, uint64_t cols, uint8_t *dst)
{
	uint64_t n = rows * cols;
	for (uint64_t b = 0; b < n / 32; b++) {
		const float *x = src + b * 32;
		uint8_t *y = dst + b * 34;
		float amax = 0.0f;
		for (int j = 0; j < 32; j++) {
			float a = fabsf(x[j]);
			if (a > amax)  /* a NaN never wins */
				amax = a;
		}
		float d = amax / 127.0f;
		float id = d != 0.0f ? 1.0f / d : 0.0f;
		qs_put_le16(y, qs_f32_to_f16(d));
		for (int j = 0; j < 32; j++) {
			float q = roundf(x[j] * id);
			if (q != q)
				q = 0.0f;
			y[2 + j] = (uint8_t)(int8_t)(q > 127.0f ? 127 : q < -127.0f ? -127 : q);
		}
	}
	return 0;
}

/* general.file_type values are llama.cpp's llama_ftype: the K types map to
 * their _M mixes, which is what a mostly-q4_K file is called. */
static const struct qs_ggml_type types[] = {
	{"f32", QS_GGML_F32, 1, 4, 0, from_f32_f32},
	{"f16", QS_GGML_F16, 1, 2, 1, from_f32_f16},
	{"bf16", QS_GGML_BF16, 1, 2, 32, from_f32_bf16},
	{"q8_0", QS_GGML_Q8_0, 32, 34, 7, from_f32_q8_0},
	{"q4_0", QS_GGML_Q4_0, 32, 18, 2, NULL},
	{"q4_1", QS_GGML_Q4_1, 32, 20, 3, NULL},
	{"q5_0", QS_GGML_Q5_0, 32, 22, 8, NULL},
	{"q5_1", QS_GGML_Q5_1, 32, 24, 9, NULL},
	{"q2_K", QS_GGML_Q2_K, 256, 84, 10, NULL},
	{"q3_K", QS_GGML_Q3_K, 256, 110, 12, NULL},
	{"q4_K", QS_GGML_Q4_K, 256, 144, 15, NULL},
	{"q5_K", QS_GGML_Q5_K, 256, 176, 17, NULL},
	{"q6_K", QS_GGML_Q6_K, 256, 210, 18, NULL},
};

#define NTYPES (sizeof(types) / sizeof(types[0]))

const struct qs_ggml_type *qs_ggml_type_find(const char *name)
{
	for (size_t i = 0; name && i < NTYPES; i++)
		if (strcasecmp(types[i].name, name) == 0)
			return &types[i];
	return NULL;
}

const struct qs_ggml_type *qs_ggml_type_by_id(uint32_t id)
{
	for (size_t i = 0; i < NTYPES; i++)
		if (types[i].id == id)
			return &types[i];
	return NULL;
}

uint64_t qs_ggml_row_bytes(const struct qs_ggml_type *t, uint64_t cols)
{
	uint64_t n;
	if (!t || cols % t->block != 0 || !qs_mul_u64(cols / t->block, t->block_bytes, &n))
		return 0;
	return n;
}

const struct qs_ggml_type *qs_ggml_fallback(const struct qs_ggml_type *t, uint64_t cols)
{
	if (cols % t->block == 0)
		return t;
	/* llama-quant.cpp (llama_tensor_get_type, convert_incompatible_tensor):
	 * q4_K -> q5_0, q5_K -> q5_1, q6_K -> q8_0, q2_K/q3_K -> iq4_nl, which
	 * qshard does not have: q4_0, its 4.5-bit sibling of the same block
	 * (as preset.c chooses), stands in; then f16 when even 32 does not
	 * divide the row.  The 32-blocks go straight to f16. */
	uint32_t next = QS_GGML_F16;
	switch (t->id) {
	case QS_GGML_Q2_K:
	case QS_GGML_Q3_K: next = QS_GGML_Q4_0; break;
	case QS_GGML_Q4_K: next = QS_GGML_Q5_0; break;
	case QS_GGML_Q5_K: next = QS_GGML_Q5_1; break;
	case QS_GGML_Q6_K: next = QS_GGML_Q8_0; break;
	default: break;
	}
	const struct qs_ggml_type *f = qs_ggml_type_by_id(next);
	return cols % f->block == 0 ? f : qs_ggml_type_by_id(QS_GGML_F16);
}

const struct qs_ggml_type *qs_ggml_type_at(size_t i)
{
	return i < NTYPES ? &types[i] : NULL;
}

void qs_ggml_q4_1_from_rtn(const uint8_t *payload, uint64_t rows, uint64_t cols,
			   uint8_t *dst)
{
	/* rtn's layout (qshard(5)): rows*G fp16 scales, rows*G fp16 mins, then
	 * 4-bit codes LSB-first, row-major: code k of the chunk in byte k/2,
	 * low nibble for even k. */
	uint64_t g = cols / 32;
	const uint8_t *scales = payload;
	const uint8_t *mins = payload + 2 * rows * g;
	const uint8_t *codes = payload + 4 * rows * g;
	for (uint64_t r = 0; r < rows; r++) {
		for (uint64_t b = 0; b < g; b++) {
			uint8_t *y = dst + (r * g + b) * 20;
			memcpy(y, scales + 2 * (r * g + b), 2);
			memcpy(y + 2, mins + 2 * (r * g + b), 2);
			/* the group's 32 codes are 16 whole bytes: cols is even */
			const uint8_t *c = codes + (r * cols + b * 32) / 2;
			for (int j = 0; j < 16; j++) {
				uint8_t lo = j % 2 ? (uint8_t)(c[j / 2] >> 4) : (uint8_t)(c[j / 2] & 15);
				uint8_t hi = j % 2 ? (uint8_t)(c[8 + j / 2] >> 4)
						   : (uint8_t)(c[8 + j / 2] & 15);
				y[4 + j] = (uint8_t)(lo | hi << 4);
			}
		}
	}
}

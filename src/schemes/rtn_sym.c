/* rtn_sym.c - round-to-nearest, symmetric absmax quantization per group of
 * `group` consecutive weights along a row: one fp16 scale a group and no
 * zero point (the grid is centred on 0, so an exact 0 stays 0).  Also the
 * worked example of HACKING.md's "Adding a scheme": this file and its line
 * in scheme.c's registry are all the code a scheme needs.
 *
 * Parameters: bits in {2, 3, 4, 8} (default 4), group in {32, 64, 128, 256}
 * (default 128).  Canonical text: "rtn_sym:bits=B,group=G".
 *
 * Payload of a chunk of R rows x C cols, G = ceil(C / group) groups per row
 * (a row's last group may be shorter), all little-endian:
 *   1. R*G fp16 scales, row-major;
 *   2. R*C codes of `bits` bits as one LSB-first bitstream over the chunk in
 *      row-major order (row r starts at bit r*C*bits), zero-padded to a
 *      whole byte.
 * payload_size = 2*R*G + ceil(R*C*bits / 8).
 *
 * Per group, with f32 arithmetic and each operation rounded separately:
 *   amax    = the largest |w| of the group (NaN left out);
 *   half    = 2^(bits-1) - 1 (7 for 4 bits: codes -7..7, one code unused,
 *             as llama.cpp's and GPTQ's symmetric grids leave it);
 *   scale16 = the smallest fp16 >= amax / half;
 *   q       = clamp(nearbyint(w / scale16), -half, half), ties to even
 *             (0 when scale16 is 0 or w is NaN), stored as q + 2^(bits-1);
 * and back: w' = (code - 2^(bits-1)) * scale16.  A group whose scale does
 * not fit fp16 makes quantize fail with -QS_ETOOBIG.
 */
#include <math.h>

#include "kernels.h"
#include "scheme.h"
#include "util.h"
#include "wksp.h"

struct rtn_sym_params {
	unsigned bits, group;
};

static const struct qs_param rtn_sym_param_table[] = {
	QS_PARAM_ONE_OF(struct rtn_sym_params, bits, 4, "code width", 2, 3, 4, 8),
	QS_PARAM_ONE_OF(struct rtn_sym_params, group, 128, "weights per group along the row",
			32, 64, 128, 256),
	QS_PARAM_END,
};

static const struct rtn_sym_params *P(const struct qs_scheme *s)
{
	return QS_SCHEME_PARAMS(struct rtn_sym_params, s);
}

static uint64_t groups(const struct qs_scheme *s, uint64_t cols)
{
	return cols / P(s)->group + (cols % P(s)->group != 0);
}

static uint64_t rtn_sym_payload_size(const struct qs_scheme *s, uint64_t rows, uint64_t cols)
{
	uint64_t ng, nw, nbits, total;
	if (!qs_scheme_params_ok(s) || !qs_mul_u64(rows, groups(s, cols), &ng) ||
	    ng > UINT64_MAX / 2 || !qs_mul_u64(rows, cols, &nw) ||
	    !qs_mul_u64(nw, P(s)->bits, &nbits) ||
	    !qs_add_u64(2 * ng, nbits / 8 + (nbits % 8 != 0), &total))
		return UINT64_MAX;
	return total;
}

/* One row's codes, a byte each, before packing (and after unpacking). */
static uint64_t rtn_sym_scratch_size(const struct qs_scheme *s, uint64_t rows, uint64_t cols)
{
	(void)rows;
	if (!qs_scheme_params_ok(s))
		return UINT64_MAX;
	struct qs_wksp w;
	qs_wksp_init(&w, NULL);
	qs_wksp_take(&w, cols, 1);
	return w.used;
}

static int check_chunk(const struct qs_scheme *s, uint64_t rows, uint64_t cols)
{
	if (!qs_scheme_params_ok(s))
		return -QS_EUSAGE;
	uint64_t nw;
	if (!qs_mul_u64(rows, cols, &nw) || nw > SIZE_MAX ||
	    rtn_sym_payload_size(s, rows, cols) > SIZE_MAX)
		return -QS_ETOOBIG;
	return 0;
}

/* The group's fp16 scale and its codes (offset by 2^(bits-1)). */
static int quantize_group(const float *w, size_t n, unsigned bits, uint16_t *scale16,
			  uint8_t *codes)
{
	const int zero = 1 << (bits - 1), half = zero - 1;
	float amax = 0.0f;
	for (size_t i = 0; i < n; i++)
		if (fabsf(w[i]) > amax)  /* false for NaN */
			amax = fabsf(w[i]);
	float want = amax / (float)half;
	if (!(want <= 65504.0f))
		return -QS_ETOOBIG;
	uint16_t h = qs_f32_to_f16(want);
	if (qs_f16_to_f32(h) < want)
		h++;  /* the next fp16 up: positive fp16 order is bit order */
	float sc = qs_f16_to_f32(h);
	if (!(sc <= 65504.0f))
		return -QS_ETOOBIG;
	*scale16 = h;
	for (size_t i = 0; i < n; i++) {
		float q = sc > 0.0f && !isnan(w[i]) ? nearbyintf(w[i] / sc) : 0.0f;
		q = q < (float)-half ? (float)-half : q > (float)half ? (float)half : q;
		codes[i] = (uint8_t)((int)q + zero);
	}
	return 0;
}

/* A chunk's sizes and its row of codes (scratch), once check_chunk passed. */
struct chunk {
	size_t c, g, ng;
	unsigned bits;
	uint8_t *codes;
};

static int open_chunk(const struct qs_scheme *s, uint64_t rows, uint64_t cols, void *scratch,
		      struct chunk *ch)
{
	int rc = check_chunk(s, rows, cols);
	if (rc)
		return rc;
	struct qs_wksp ws;
	qs_wksp_init(&ws, scratch);
	*ch = (struct chunk){.c = (size_t)cols, .g = P(s)->group, .ng = (size_t)groups(s, cols),
			     .bits = P(s)->bits, .codes = qs_wksp_take(&ws, cols, 1)};
	return 0;
}

static int rtn_sym_quantize(const struct qs_scheme *s, const float *w, uint64_t rows,
			    uint64_t cols, uint8_t *out, void *scratch)
{
	struct chunk ch;
	int rc = open_chunk(s, rows, cols, scratch, &ch);
	if (rc)
		return rc;
	const struct qs_kernels *k = qs_kernels_get();
	for (size_t r = 0; r < rows; r++) {
		for (size_t j = 0; j < ch.ng; j++) {
			uint16_t h;
			size_t n = ch.c - j * ch.g < ch.g ? ch.c - j * ch.g : ch.g;
			rc = quantize_group(w + r * ch.c + j * ch.g, n, ch.bits, &h,
					    ch.codes + j * ch.g);
			if (rc)
				return rc;
			qs_put_le16(out + 2 * (r * ch.ng + j), h);
		}
		k->pack_bits(ch.codes, ch.c, ch.bits, out + 2 * (size_t)rows * ch.ng,
			     (uint64_t)r * ch.c * ch.bits);
	}
	return 0;
}

static int rtn_sym_dequantize(const struct qs_scheme *s, const uint8_t *in, uint64_t rows,
			      uint64_t cols, float *out, void *scratch)
{
	struct chunk ch;
	int rc = open_chunk(s, rows, cols, scratch, &ch);
	if (rc)
		return rc;
	const struct qs_kernels *k = qs_kernels_get();
	const int zero = 1 << (ch.bits - 1);
	for (size_t r = 0; r < rows; r++) {
		k->unpack_bits(in + 2 * (size_t)rows * ch.ng, (uint64_t)r * ch.c * ch.bits, ch.c,
			       ch.bits, ch.codes);
		for (size_t i = 0; i < ch.c; i++) {
			float sc = qs_f16_to_f32(qs_get_le16(in + 2 * (r * ch.ng + i / ch.g)));
			out[r * ch.c + i] = (float)((int)ch.codes[i] - zero) * sc;
		}
	}
	return 0;
}

const struct qs_scheme_ops qs_scheme_rtn_sym = {
	.name = "rtn_sym",
	.params = rtn_sym_param_table,
	.payload_size = rtn_sym_payload_size,
	.scratch_size = rtn_sym_scratch_size,
	.quantize = rtn_sym_quantize,
	.dequantize = rtn_sym_dequantize,
};

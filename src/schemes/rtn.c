/* rtn.c - round-to-nearest, asymmetric min-max quantization per group of
 * `group` consecutive weights along a row (the same definition is the
 * reference in qshard(5); change both or neither).
 *
 * Parameters: bits in {2, 3, 4, 8} (default 4), group in {32, 64, 128, 256}
 * (default 128).  Canonical text: "rtn:bits=B,group=G".
 *
 * Payload of a chunk of R rows x C cols, G = ceil(C / group) groups per row
 * (a row's last group may be shorter), all little-endian:
 *   1. R*G fp16 scales, row-major;
 *   2. R*G fp16 mins, row-major;
 *   3. R*C codes of `bits` bits as one LSB-first bitstream over the chunk in
 *      row-major order (row r starts at bit r*C*bits), zero-padded to a
 *      whole byte.
 * payload_size = 4*R*G + ceil(R*C*bits / 8).
 *
 * Per group, with f32 arithmetic and each operation rounded separately:
 *   mn, mx   = min and max of the group's weights;
 *   min16    = the largest fp16 <= mn (+0 when mn is zero);
 *   qmax     = 2^bits - 1;
 *   scale16  = the smallest fp16 >= (mx - min16) / qmax, then raised one
 *              fp16 step at a time while min16 + qmax*scale16 < mx;
 *   code     = clamp(nearbyint((w - min16) / scale16), 0, qmax), ties to
 *              even (all codes 0 when scale16 is 0);
 * and back: w' = min16 + code*scale16 (product rounded, then the sum).
 * So |w' - w| <= scale16/2 (up to f32 rounding) and w' stays within
 * [min16, min16 + qmax*scale16].  A group with |mn| > 65504 or whose scale
 * does not fit fp16 (so any group holding an Inf) makes quantize fail with
 * -QS_ETOOBIG.  NaN weights (only seen with --allow-nonfinite) are left out
 * of mn and mx and get code 0; a group of only NaNs has min 0, scale 0.
 *
 * The per-row arithmetic and bit packing live in the kernel table
 * (kernels.h) so SIMD variants can take them over bit-identically.
 */
#include <stdio.h>
#include <string.h>

#include "kernels.h"
#include "scheme.h"
#include "util.h"

#define RTN_ALIGN 64u

static bool bits_ok(unsigned b)
{
	return b == 2 || b == 3 || b == 4 || b == 8;
}

static bool group_ok(unsigned g)
{
	return g == 32 || g == 64 || g == 128 || g == 256;
}

static int rtn_arg(struct qs_scheme *s, const char *key, const char *val,
		   struct qs_diag *diag)
{
	unsigned v = 0;
	bool num = qs_scheme_parse_uint(val, &v) == 0;

	if (strcmp(key, "bits") == 0) {
		if (!num || !bits_ok(v))
			goto bad;
		s->bits = v;
		return 0;
	}
	if (strcmp(key, "group") == 0) {
		if (!num || !group_ok(v))
			goto bad;
		s->group = v;
		return 0;
	}
	return qs_diag_set(diag, -QS_EUSAGE,
			   "rtn: unknown parameter '%s' (known: bits, group)", key);
bad:
	return qs_diag_set(diag, -QS_EUSAGE, "rtn: %s must be one of %s (got %s%s%s)",
			   key, strcmp(key, "bits") == 0 ? "2, 3, 4, 8" : "32, 64, 128, 256",
			   num ? "" : "'", val, num ? "" : "'");
}

static int rtn_parse(struct qs_scheme *s, const char *args, struct qs_diag *diag)
{
	s->bits = 4;
	s->group = 128;
	int rc = qs_scheme_each_arg(s, args, rtn_arg, diag);
	if (rc)
		return rc;
	snprintf(s->text, sizeof(s->text), "rtn:bits=%u,group=%u", s->bits, s->group);
	return 0;
}

static uint64_t groups_per_row(const struct qs_scheme *s, uint64_t cols)
{
	return cols / s->group + (cols % s->group != 0);
}

/* UINT64_MAX when the size does not fit 64 bits (no real chunk does). */
static uint64_t rtn_payload_size(const struct qs_scheme *s, uint64_t rows, uint64_t cols)
{
	uint64_t ng, meta, nw, nbits, total;

	if (!group_ok(s->group) || !bits_ok(s->bits))
		return UINT64_MAX;
	if (!qs_mul_u64(rows, groups_per_row(s, cols), &ng) || !qs_mul_u64(ng, 4, &meta) ||
	    !qs_mul_u64(rows, cols, &nw) || !qs_mul_u64(nw, s->bits, &nbits) ||
	    !qs_add_u64(meta, nbits / 8 + (nbits % 8 != 0), &total))
		return UINT64_MAX;
	return total;
}

/* One row at a time: its fp16 scales and mins (host order, then written
 * out little-endian) and its codes as bytes before packing; plus slack to
 * align the arrays whatever the caller's pointer. */
static uint64_t rtn_scratch_size(const struct qs_scheme *s, uint64_t rows, uint64_t cols)
{
	(void)rows;
	if (!group_ok(s->group) || cols > UINT64_MAX / 2)
		return UINT64_MAX;
	uint64_t need = RTN_ALIGN + 4 * groups_per_row(s, cols) + cols;
	return (need + RTN_ALIGN - 1) / RTN_ALIGN * RTN_ALIGN;
}

struct row_scratch {
	uint16_t *scale, *min;
	uint8_t *codes;
};

static struct row_scratch carve(void *scratch, size_t ng)
{
	uintptr_t p = ((uintptr_t)scratch + RTN_ALIGN - 1) & ~(uintptr_t)(RTN_ALIGN - 1);
	struct row_scratch r;
	r.scale = (uint16_t *)p;
	r.min = r.scale + ng;
	r.codes = (uint8_t *)(r.min + ng);
	return r;
}

/* Validates the parameters and that every index of the chunk fits size_t. */
static int check_chunk(const struct qs_scheme *s, uint64_t rows, uint64_t cols)
{
	uint64_t nw, nbits;
	if (!group_ok(s->group) || !bits_ok(s->bits))
		return -QS_EUSAGE;
	if (!qs_mul_u64(rows, cols, &nw) || !qs_mul_u64(nw, s->bits, &nbits) ||
	    nw > SIZE_MAX || rtn_payload_size(s, rows, cols) > SIZE_MAX)
		return -QS_ETOOBIG;
	return 0;
}

static int rtn_quantize(const struct qs_scheme *s, const float *w, uint64_t rows,
			uint64_t cols, uint8_t *out, void *scratch)
{
	int rc = check_chunk(s, rows, cols);
	if (rc)
		return rc;
	if (rows == 0 || cols == 0)
		return 0;

	const struct qs_kernels *k = qs_kernels_get();
	size_t ng = (size_t)groups_per_row(s, cols);
	size_t c = (size_t)cols;
	struct row_scratch t = carve(scratch, ng);
	uint8_t *scales = out;
	uint8_t *mins = out + 2 * (size_t)rows * ng;
	uint8_t *codes = out + 4 * (size_t)rows * ng;
	size_t overflowed = 0;

	for (size_t r = 0; r < rows; r++) {
		overflowed += k->rtn_quantize_row(w + r * c, c, s->group, s->bits,
						  t.scale, t.min, t.codes);
		if (overflowed)
			return -QS_ETOOBIG;
		for (size_t g = 0; g < ng; g++) {
			qs_put_le16(scales + 2 * (r * ng + g), t.scale[g]);
			qs_put_le16(mins + 2 * (r * ng + g), t.min[g]);
		}
		k->pack_bits(t.codes, c, s->bits, codes, (uint64_t)r * c * s->bits);
	}
	return 0;
}

static int rtn_dequantize(const struct qs_scheme *s, const uint8_t *in, uint64_t rows,
			  uint64_t cols, float *out, void *scratch)
{
	int rc = check_chunk(s, rows, cols);
	if (rc)
		return rc;
	if (rows == 0 || cols == 0)
		return 0;

	const struct qs_kernels *k = qs_kernels_get();
	size_t ng = (size_t)groups_per_row(s, cols);
	size_t c = (size_t)cols;
	struct row_scratch t = carve(scratch, ng);
	const uint8_t *scales = in;
	const uint8_t *mins = in + 2 * (size_t)rows * ng;
	const uint8_t *codes = in + 4 * (size_t)rows * ng;

	for (size_t r = 0; r < rows; r++) {
		for (size_t g = 0; g < ng; g++) {
			t.scale[g] = qs_get_le16(scales + 2 * (r * ng + g));
			t.min[g] = qs_get_le16(mins + 2 * (r * ng + g));
		}
		k->unpack_bits(codes, (uint64_t)r * c * s->bits, c, s->bits, t.codes);
		k->rtn_dequantize_row(t.codes, c, s->group, t.scale, t.min, out + r * c);
	}
	return 0;
}

const struct qs_scheme_ops qs_scheme_rtn = {
	.name = "rtn",
	.parse = rtn_parse,
	.payload_size = rtn_payload_size,
	.scratch_size = rtn_scratch_size,
	.quantize = rtn_quantize,
	.dequantize = rtn_dequantize,
};

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
#include <string.h>

#include "grouped.h"
#include "kernels.h"
#include "rtn.h"
#include "scheme.h"
#include "util.h"
#include "wksp.h"

static const struct qs_param rtn_param_table[] = {
	QS_PARAM_ONE_OF(struct qs_rtn_params, bits, 4, "code width", 2, 3, 4, 8),
	QS_PARAM_ONE_OF(struct qs_rtn_params, group, 128, "weights per group along the row",
			32, 64, 128, 256),
	QS_PARAM_END,
};

static const struct qs_rtn_params *P(const struct qs_scheme *s)
{
	return QS_SCHEME_PARAMS(struct qs_rtn_params, s);
}

static uint64_t rtn_payload_size(const struct qs_scheme *s, uint64_t rows, uint64_t cols)
{
	if (!qs_scheme_params_ok(s))
		return UINT64_MAX;
	return qs_grouped_payload_size(P(s)->bits, P(s)->group, rows, cols);
}

/* One row at a time: its fp16 scales and mins (host order, then written
 * out little-endian) and its codes as bytes before packing. */
static uint64_t rtn_scratch_size(const struct qs_scheme *s, uint64_t rows, uint64_t cols)
{
	(void)rows;
	if (!qs_scheme_params_ok(s))
		return UINT64_MAX;
	return qs_grouped_scratch_size(P(s)->group, cols);
}

/* Validates the parameters and that every index of the chunk fits size_t. */
static int check_chunk(const struct qs_scheme *s, uint64_t rows, uint64_t cols)
{
	if (!qs_scheme_params_ok(s))
		return -QS_EUSAGE;
	return qs_grouped_fits(P(s)->bits, P(s)->group, rows, cols) ? 0 : -QS_ETOOBIG;
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
	struct qs_grouped_chunk ch = qs_grouped_chunk_of(P(s)->bits, P(s)->group, rows, cols, scratch);
	for (size_t r = 0; r < ch.rows; r++) {
		if (k->rtn_quantize_row(w + r * ch.cols, ch.cols, P(s)->group, ch.bits, ch.t.a,
					ch.t.b, ch.t.codes))
			return -QS_ETOOBIG;
		qs_grouped_put_row(&ch, k, out, r);
	}
	return 0;
}

/* rtn_quantize from the source bytes (scheme.h quantize_src): the same
 * rows, each through the kernels' fused decode + group quantization. */
static int rtn_quantize_src(const struct qs_scheme *s, unsigned kind, const void *src,
			    uint64_t rows, uint64_t cols, int sanitize, uint8_t *out, void *scratch,
			    float *row, size_t *nonfinite, const struct qs_row_hook *hook)
{
	(void)row;  /* each group is decoded into an L1 buffer of its own */
	int rc = check_chunk(s, rows, cols);
	if (rc)
		return rc;
	if (rows == 0 || cols == 0)
		return 0;

	const struct qs_kernels *k = qs_kernels_get();
	struct qs_grouped_chunk ch = qs_grouped_chunk_of(P(s)->bits, P(s)->group, rows, cols, scratch);
	size_t esz = kind == QS_SRC_KIND_F32 ? 4 : 2;
	size_t overflowed = 0;

	for (size_t r = 0; r < ch.rows; r++) {
		if (hook)
			hook->before_row(hook->user, r);
		overflowed += k->rtn_quantize_src(kind, (const uint8_t *)src + r * ch.cols * esz,
						  ch.cols, P(s)->group, ch.bits, sanitize, ch.t.a,
						  ch.t.b, ch.t.codes, nonfinite);
		/* without sanitize, keep counting NaN/Inf: that error, with
		 * the chunk's whole count, comes before this one */
		if (overflowed && sanitize)
			return -QS_ETOOBIG;
		qs_grouped_put_row(&ch, k, out, r);
	}
	return overflowed ? -QS_ETOOBIG : 0;
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
	struct qs_grouped_chunk ch = qs_grouped_chunk_of(P(s)->bits, P(s)->group, rows, cols, scratch);
	for (size_t r = 0; r < ch.rows; r++) {
		qs_grouped_get_row(&ch, k, in, r);
		k->rtn_dequantize_row(ch.t.codes, ch.cols, P(s)->group, ch.t.a, ch.t.b,
				      out + r * ch.cols);
	}
	return 0;
}

const struct qs_scheme_ops qs_scheme_rtn = {
	.name = "rtn",
	.params = rtn_param_table,
	.payload_size = rtn_payload_size,
	.scratch_size = rtn_scratch_size,
	.quantize = rtn_quantize,
	.dequantize = rtn_dequantize,
	.quantize_src = rtn_quantize_src,
};

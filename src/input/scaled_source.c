/* scaled_source.c - pairing FP8 weights with their scale tensors, and
 * decoding them (scaled_source.h). */
#include "scaled_source.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <xxhash.h>

#include "util.h"

/* ---------------------------------------------------------------- decode */

/* OCP 8-bit Floating Point Specification (OFP8), rev. 1.0, 2023:
 * E4M3: bias 7, no infinities, S.1111.111 is NaN, max 448;
 * E5M2: bias 15, IEEE 754 conventions (infinities and NaNs at exponent 31).
 * Subnormals (exponent field 0) are m / 2^mbits * 2^(1 - bias). */
static float fp8_decode(uint8_t v, int ebits, int mbits, int bias, bool ieee_special)
{
	int sign = v >> 7;
	int e = (v >> mbits) & ((1 << ebits) - 1);
	int m = v & ((1 << mbits) - 1);
	float r;
	if (ieee_special && e == (1 << ebits) - 1)
		r = m ? NAN : INFINITY;
	else if (!ieee_special && e == (1 << ebits) - 1 && m == (1 << mbits) - 1)
		r = NAN;
	else if (e == 0)
		r = ldexpf((float)m, 1 - bias - mbits);
	else
		r = ldexpf((float)((1 << mbits) + m), e - bias - mbits);
	return sign ? -r : r;
}

float qs_fp8_e4m3_to_f32(uint8_t v)
{
	return fp8_decode(v, 4, 3, 7, false);
}

float qs_fp8_e5m2_to_f32(uint8_t v)
{
	return fp8_decode(v, 5, 2, 15, true);
}

/* 256-entry tables, built once; a table look-up is exact and faster than
 * the bit arithmetic. */
static float e4m3_table[256], e5m2_table[256];
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void build_tables(void)
{
	for (int i = 0; i < 256; i++) {
		e4m3_table[i] = qs_fp8_e4m3_to_f32((uint8_t)i);
		e5m2_table[i] = qs_fp8_e5m2_to_f32((uint8_t)i);
	}
}

static const float *table_for(enum qs_dtype dt)
{
	pthread_once(&tables_once, build_tables);
	return dt == QS_DTYPE_F8_E5M2 ? e5m2_table : e4m3_table;
}

void qs_fp8_to_f32(enum qs_dtype dt, const uint8_t *in, float *out, size_t n)
{
	const float *t = table_for(dt);
	for (size_t i = 0; i < n; i++)
		out[i] = t[in[i]];
}

static float scale_at(enum qs_dtype sdt, const void *scale, size_t i)
{
	if (sdt == QS_DTYPE_BF16) {
		uint32_t u = (uint32_t)((const uint16_t *)scale)[i] << 16;
		float f;
		memcpy(&f, &u, sizeof(f));
		return f;
	}
	return ((const float *)scale)[i];
}

/* e2m1 (OCP MX v1.0, section 5.3.3): 1 sign, 2 exponent (bias 1), 1
 * mantissa bit: 0, 0.5, 1, 1.5, 2, 3, 4, 6. */
static const float e2m1_values[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
				      -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

static void mxfp4_dequant_rows(const uint8_t *blocks, const uint8_t *scales, uint64_t rows,
			       uint64_t cols, float *out)
{
	uint64_t nblk = cols / QS_MXFP4_BLOCK;
	for (uint64_t b = 0; b < rows * nblk; b++) {
		/* E8M0: 2^(s - 127); 255 is NaN */
		float s = scales[b] == 255 ? NAN : ldexpf(1.0f, (int)scales[b] - 127);
		const uint8_t *in = blocks + b * (QS_MXFP4_BLOCK / 2);
		float *o = out + b * QS_MXFP4_BLOCK;
		for (unsigned i = 0; i < QS_MXFP4_BLOCK / 2; i++) {
			o[2 * i] = e2m1_values[in[i] & 15] * s;
			o[2 * i + 1] = e2m1_values[in[i] >> 4] * s;
		}
	}
}

void qs_scaled_dequant_rows(const struct qs_src_pairing *pr, enum qs_dtype dt,
			    enum qs_dtype scale_dtype, const uint8_t *in, const void *scale,
			    uint64_t row0, uint64_t rows, uint64_t cols, float *out)
{
	if (pr->enc == QS_SRC_MXFP4) {
		mxfp4_dequant_rows(in, scale, rows, cols, out);
		return;
	}
	const float *t = table_for(dt);
	if (pr->enc == QS_SRC_FP8_TENSOR) {
		float s = scale_at(scale_dtype, scale, 0);
		for (uint64_t i = 0; i < rows * cols; i++)
			out[i] = t[in[i]] * s;
		return;
	}
	uint64_t br = pr->block_rows, bc = pr->block_cols;
	uint64_t scols = (cols + bc - 1) / bc;
	uint64_t first_block_row = row0 / br;
	for (uint64_t r = 0; r < rows; r++) {
		uint64_t srow = (row0 + r) / br - first_block_row;
		const uint8_t *src = in + r * cols;
		float *dst = out + r * cols;
		for (uint64_t c0 = 0; c0 < cols; c0 += bc) {
			float s = scale_at(scale_dtype, scale, (size_t)(srow * scols + c0 / bc));
			uint64_t end = c0 + bc < cols ? c0 + bc : cols;
			for (uint64_t c = c0; c < end; c++)
				dst[c] = t[src[c]] * s;
		}
	}
}

struct qs_st_tensor qs_mxfp4_logical(const struct qs_st_tensor *blocks)
{
	struct qs_st_tensor t = *blocks;
	size_t n = strlen(blocks->name) - strlen("_blocks");
	t.name = strndup(blocks->name, n);
	t.dtype = QS_DTYPE_MXFP4;
	t.ndim = blocks->ndim - 1;
	t.shape[t.ndim - 1] = blocks->shape[blocks->ndim - 2] * QS_MXFP4_BLOCK;
	t.shape[t.ndim] = 0;
	return t;
}

uint64_t qs_paired_source_xxh3(uint64_t weight_xxh3, uint64_t scale_xxh3)
{
	uint8_t b[16];
	qs_put_le64(b, weight_xxh3);
	qs_put_le64(b + 8, scale_xxh3);
	return XXH3_64bits(b, sizeof(b));
}

/* --------------------------------------------------------------- pairing */

static bool is_fp8(enum qs_dtype dt)
{
	return dt == QS_DTYPE_F8_E4M3 || dt == QS_DTYPE_F8_E5M2;
}

static int cmp_name(const void *a, const void *b)
{
	const struct qs_st_tensor *const *x = a, *const *y = b;
	return strcmp((*x)->name, (*y)->name);
}

static size_t find(const struct qs_st_tensor *const *sorted, size_t n,
		   const struct qs_st_tensor *base, const char *name)
{
	struct qs_st_tensor key = {.name = (char *)name};
	const struct qs_st_tensor *kp = &key;
	const struct qs_st_tensor *const *hit = bsearch(&kp, sorted, n, sizeof(*sorted), cmp_name);
	return hit ? (size_t)(*hit - base) : SIZE_MAX;
}

/* quantization_config.weight_block_size of config.json: [br, bc], or the
 * default when the config has none. */
static int block_size(const struct qs_checkpoint *ck, uint32_t *br, uint32_t *bc,
		      struct qs_diag *diag)
{
	*br = *bc = QS_FP8_BLOCK_DEFAULT;
	if (!ck->config_json)
		return 0;
	json_t *root = json_loads(ck->config_json, 0, NULL);
	if (!root)
		return 0;  /* checkpoint.c reports an invalid config.json */
	int rc = 0;
	json_t *qc = json_object_get(root, "quantization_config");
	json_t *bs = qc ? json_object_get(qc, "weight_block_size") : NULL;
	if (bs) {
		json_t *a = json_array_get(bs, 0), *b = json_array_get(bs, 1);
		if (!json_is_array(bs) || json_array_size(bs) != 2 || !json_is_integer(a) ||
		    !json_is_integer(b) || json_integer_value(a) < 1 ||
		    json_integer_value(a) > (1 << 20) || json_integer_value(b) < 1 ||
		    json_integer_value(b) > (1 << 20))
			rc = qs_diag_set(diag, -QS_EFORMAT,
					 "'config.json': quantization_config.weight_block_size "
					 "must be two positive integers");
		else {
			*br = (uint32_t)json_integer_value(a);
			*bc = (uint32_t)json_integer_value(b);
		}
	}
	json_decref(root);
	return rc;
}

static void shape_text(const struct qs_st_tensor *t, char *buf, size_t len)
{
	int at = snprintf(buf, len, "[");
	for (uint32_t d = 0; d < t->ndim && at > 0 && (size_t)at < len; d++)
		at += snprintf(buf + at, len - (size_t)at, "%s%llu", d ? "," : "",
			       (unsigned long long)t->shape[d]);
	if (at > 0 && (size_t)at < len)
		snprintf(buf + at, len - (size_t)at, "]");
}

static uint64_t numel(const struct qs_st_tensor *t)
{
	uint64_t n = 1;
	for (uint32_t d = 0; d < t->ndim; d++)
		n *= t->shape[d];
	return n;
}

/* Checks companion s of FP8 weight w and fills pr. */
static int pair_one(const struct qs_checkpoint *ck, const struct qs_st_tensor *w,
		    const struct qs_st_tensor *s, uint32_t br, uint32_t bc,
		    struct qs_src_pairing *pr, struct qs_diag *diag)
{
	const char *file = ck->shards[w->shard].name;
	char ws[128], ss[128];
	shape_text(w, ws, sizeof(ws));
	shape_text(s, ss, sizeof(ss));
	if (s->dtype != QS_DTYPE_F32 && s->dtype != QS_DTYPE_BF16)
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': tensor '%s': scale of FP8 tensor '%s' is %s; "
				   "expected F32 or BF16",
				   ck->shards[s->shard].name, s->name, w->name, qs_dtype_name(s->dtype));
	if (numel(s) == 1) {
		pr->enc = QS_SRC_FP8_TENSOR;
		return 0;
	}
	if (w->ndim != 2)
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': tensor '%s' %s: block-scaled FP8 needs a 2-D weight "
				   "(its scale '%s' is %s)",
				   file, w->name, ws, s->name, ss);
	uint64_t want_r = (w->shape[0] + br - 1) / br, want_c = (w->shape[1] + bc - 1) / bc;
	if (s->ndim != 2 || s->shape[0] != want_r || s->shape[1] != want_c)
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': tensor '%s' has shape %s but FP8 tensor '%s' %s in "
				   "%ux%u blocks needs a scale of shape [%llu,%llu]",
				   ck->shards[s->shard].name, s->name, ss, w->name, ws, br, bc,
				   (unsigned long long)want_r, (unsigned long long)want_c);
	pr->enc = QS_SRC_FP8_BLOCK;
	pr->block_rows = br;
	pr->block_cols = bc;
	return 0;
}

/* "P_blocks": U8 [..., rows, cols / 32, 16] with at least one row
 * dimension. */
static bool is_mxfp4_blocks(const struct qs_st_tensor *t)
{
	size_t n = strlen(t->name), m = strlen("_blocks");
	return t->dtype == QS_DTYPE_U8 && t->ndim >= 3 && t->shape[t->ndim - 1] == 16 &&
	       n > m && strcmp(t->name + n - m, "_blocks") == 0;
}

static int pair_mxfp4(const struct qs_checkpoint *ck, const struct qs_st_tensor **sorted,
		      size_t i, struct qs_src_pairing *out, struct qs_diag *diag)
{
	const struct qs_st_tensor *b = &ck->tensors[i];
	size_t base = strlen(b->name) - strlen("_blocks");
	char *name = malloc(base + 8);
	if (!name)
		return -ENOMEM;
	snprintf(name, base + 8, "%.*s_scales", (int)base, b->name);
	size_t hit = find(sorted, ck->ntensors, ck->tensors, name);
	int rc = 0;
	char bs[128], ss[128];
	shape_text(b, bs, sizeof(bs));
	if (hit == SIZE_MAX) {
		rc = qs_diag_set(diag, -QS_EFORMAT,
				 "'%s': tensor '%s' holds MXFP4 blocks but the checkpoint has "
				 "no tensor '%s'",
				 ck->shards[b->shard].name, b->name, name);
		goto out;
	}
	const struct qs_st_tensor *s = &ck->tensors[hit];
	shape_text(s, ss, sizeof(ss));
	bool shape_ok = s->dtype == QS_DTYPE_U8 && s->ndim + 1 == b->ndim &&
			out[hit].scale_of == SIZE_MAX;
	for (uint32_t d = 0; shape_ok && d < s->ndim; d++)
		shape_ok = s->shape[d] == b->shape[d];
	if (!shape_ok) {
		rc = qs_diag_set(diag, -QS_EFORMAT,
				 "'%s': tensor '%s' (%s %s) is not the E8M0 scales of MXFP4 "
				 "tensor '%s' %s: expected U8 of its shape without the last "
				 "dimension",
				 ck->shards[s->shard].name, s->name, qs_dtype_name(s->dtype), ss,
				 b->name, bs);
		goto out;
	}
	out[i].enc = QS_SRC_MXFP4;
	out[i].companion = hit;
	out[hit].scale_of = i;
out:
	free(name);
	return rc;
}

int qs_src_pair_scales(const struct qs_checkpoint *ck, struct qs_src_pairing *out,
		       struct qs_diag *diag)
{
	for (size_t i = 0; i < ck->ntensors; i++)
		out[i] = (struct qs_src_pairing){.companion = SIZE_MAX, .scale_of = SIZE_MAX};
	bool any = false;
	for (size_t i = 0; i < ck->ntensors && !any; i++)
		any = is_fp8(ck->tensors[i].dtype) || is_mxfp4_blocks(&ck->tensors[i]);
	if (!any)
		return 0;
	uint32_t br, bc;
	int rc = block_size(ck, &br, &bc, diag);
	if (rc < 0)
		return rc;
	const struct qs_st_tensor **sorted = malloc(ck->ntensors * sizeof(*sorted));
	if (!sorted)
		return -ENOMEM;
	for (size_t i = 0; i < ck->ntensors; i++)
		sorted[i] = &ck->tensors[i];
	qsort(sorted, ck->ntensors, sizeof(*sorted), cmp_name);
	static const char *const suffixes[] = {"_scale_inv", "_scale"};
	for (size_t i = 0; i < ck->ntensors && rc == 0; i++) {
		const struct qs_st_tensor *w = &ck->tensors[i];
		if (is_mxfp4_blocks(w)) {
			rc = pair_mxfp4(ck, sorted, i, out, diag);
			continue;
		}
		if (!is_fp8(w->dtype))
			continue;
		size_t len = strlen(w->name);
		char *name = malloc(len + 16);
		if (!name) {
			rc = -ENOMEM;
			break;
		}
		size_t hit = SIZE_MAX;
		for (size_t k = 0; k < 2 && hit == SIZE_MAX; k++) {
			snprintf(name, len + 16, "%s%s", w->name, suffixes[k]);
			hit = find(sorted, ck->ntensors, ck->tensors, name);
		}
		if (hit == SIZE_MAX) {
			rc = qs_diag_set(diag, -QS_EFORMAT,
					 "'%s': tensor '%s' is %s but the checkpoint has no scale "
					 "tensor '%s_scale_inv' or '%s_scale'",
					 ck->shards[w->shard].name, w->name, qs_dtype_name(w->dtype),
					 w->name, w->name);
		} else if (out[hit].scale_of != SIZE_MAX || is_fp8(ck->tensors[hit].dtype)) {
			rc = qs_diag_set(diag, -QS_EFORMAT,
					 "'%s': tensor '%s' cannot be the scale of '%s'",
					 ck->shards[ck->tensors[hit].shard].name, ck->tensors[hit].name,
					 w->name);
		} else {
			rc = pair_one(ck, w, &ck->tensors[hit], br, bc, &out[i], diag);
			out[i].companion = hit;
			out[hit].scale_of = i;
		}
		free(name);
	}
	free(sorted);
	return rc;
}

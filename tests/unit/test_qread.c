/* test_qread.c - the loader calls (qs_qfile_read(3), qs_qfile_read_payload(3))
 * on hand-built files: dtype conversions of raw tensors, a quantized
 * tensor against its scheme's own dequantize, row ranges across chunks,
 * empty and 0-D tensors, and every refusal (bad index, rows, buffer,
 * dtype, unknown scheme, a payload of the wrong size). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>
#include <zstd.h>

#include "container.h"
#include "kernels.h"
#include "scheme.h"
#include "test_util.h"
#include "util.h"

#define QR 6    /* rows of the quantized tensor, in chunks of 4 and 2 */
#define QC 40   /* its columns: a short last group */

static float qweights[QR * QC];
static uint16_t f16vals[5 * 3];

struct tensor_spec {
	const char *name, *scheme;
	enum qs_dtype dtype;
	uint32_t ndim;
	uint64_t shape[2];
	uint32_t nchunks;
	uint64_t rows[2];          /* rows of each chunk */
	const void *payload[2];
	size_t payload_len[2];
};

static void add(struct qs_cwriter *w, const struct tensor_spec *t)
{
	struct qs_diag d;
	struct qs_chunk_entry ch[2];
	uint64_t row = 0;
	for (uint32_t c = 0; c < t->nchunks; c++) {
		size_t cap = ZSTD_compressBound(t->payload_len[c]);
		void *z = malloc(cap);
		size_t zn = ZSTD_compress(z, cap, t->payload[c], t->payload_len[c], 1);
		assert_false(ZSTD_isError(zn));
		uint64_t off;
		assert_int_equal(qs_cwriter_frame(w, z, zn, &off, &d), 0);
		free(z);
		ch[c] = (struct qs_chunk_entry){off, zn, t->payload_len[c], row, t->rows[c],
						XXH3_64bits(t->payload[c], t->payload_len[c]), 0};
		row += t->rows[c];
	}
	struct qs_record r = {.name = (char *)t->name, .shard = "model.safetensors",
			      .dtype = t->dtype, .ndim = t->ndim, .scheme = (char *)t->scheme,
			      .nchunks = t->nchunks, .chunks = ch};
	memcpy(r.shape, t->shape, sizeof(t->shape));
	assert_int_equal(qs_cwriter_record(w, &r, &d), 0);
}

static uint8_t qpay[2][4096];
static size_t qpay_len[2];

static const char *build(void)
{
	static const char *path;
	if (path)
		return path;
	path = test_path("qread.qshard");
	for (int i = 0; i < QR * QC; i++)
		qweights[i] = (float)((i * 37) % 101) / 7.0f - 6.0f;
	for (int i = 0; i < 15; i++)
		f16vals[i] = qs_f32_to_f16((float)i * 0.3333f - 2.0f);
	struct qs_scheme s;
	struct qs_diag d;
	assert_int_equal(qs_scheme_parse("rtn:bits=4,group=32", &s, &d), 0);
	uint64_t rows[2] = {4, 2};
	for (int c = 0; c < 2; c++) {
		qpay_len[c] = (size_t)s.ops->payload_size(&s, rows[c], QC);
		void *scratch = malloc(s.ops->scratch_size(&s, rows[c], QC) + 1);
		assert_int_equal(s.ops->quantize(&s, qweights + c * 4 * QC, rows[c], QC, qpay[c],
						 scratch), 0);
		free(scratch);
	}
	static const int64_t ints[4] = {1, -2, 3, 1ll << 40};
	static const float scalar = 2.5f;
	struct qs_header h = {.input_fp = 1, .options_fp = 2, .creator = "qshard test",
			      .options = "test"};
	struct qs_cwriter *w;
	assert_int_equal(qs_cwriter_create(path, &h, true, false, &w, &d), 0);
	add(w, &(struct tensor_spec){"q", s.text, QS_DTYPE_BF16, 2, {QR, QC}, 2, {4, 2},
				     {qpay[0], qpay[1]}, {qpay_len[0], qpay_len[1]}});
	add(w, &(struct tensor_spec){"f16", "raw", QS_DTYPE_F16, 2, {5, 3}, 2, {3, 2},
				     {f16vals, f16vals + 9}, {18, 12}});
	add(w, &(struct tensor_spec){"ints", "raw", QS_DTYPE_I64, 1, {4}, 1, {1},
				     {ints}, {sizeof(ints)}});
	add(w, &(struct tensor_spec){"empty", "raw", QS_DTYPE_F32, 2, {0, 8}, 0, {0}, {0}, {0}});
	add(w, &(struct tensor_spec){"scalar", "raw", QS_DTYPE_F32, 0, {0}, 1, {1},
				     {&scalar}, {4}});
	/* a scheme this library does not know, and one whose payload size
	 * disagrees with the record's shape (rtn 8-bit over 4-bit bytes) */
	add(w, &(struct tensor_spec){"future", "zzz:k=1", QS_DTYPE_BF16, 2, {4, QC}, 1, {4},
				     {qpay[0]}, {qpay_len[0]}});
	add(w, &(struct tensor_spec){"wrongsize", "rtn:bits=8,group=32", QS_DTYPE_BF16, 2,
				     {4, QC}, 1, {4}, {qpay[0]}, {qpay_len[0]}});
	assert_int_equal(qs_cwriter_finish(w, &d), 0);
	return path;
}

static struct qs_qfile *open_it(void)
{
	struct qs_qfile *qf;
	struct qs_diag d;
	assert_int_equal(qs_qfile_open(build(), &qf, &d), 0);
	return qf;
}

static size_t idx(const struct qs_qfile *qf, const char *name)
{
	size_t i = 99;
	assert_int_equal(qs_qfile_find(qf, name, &i), 0);
	return i;
}

static void test_find(void **state)
{
	(void)state;
	struct qs_qfile *qf = open_it();
	const char *names[] = {"q", "f16", "ints", "empty", "scalar", "future", "wrongsize"};
	for (size_t i = 0; i < 7; i++)
		assert_int_equal(idx(qf, names[i]), i);
	size_t i;
	assert_int_equal(qs_qfile_find(qf, "qq", &i), -ENOENT);
	assert_int_equal(qs_qfile_find(qf, "", &i), -ENOENT);
	qs_qfile_free(qf);
}

static void test_quantized_matches_dequantize(void **state)
{
	(void)state;
	struct qs_qfile *qf = open_it();
	struct qs_scheme s;
	struct qs_diag d;
	assert_int_equal(qs_scheme_parse("rtn:bits=4,group=32", &s, &d), 0);
	float want[QR * QC], got[QR * QC];
	void *scratch = malloc(s.ops->scratch_size(&s, 4, QC) + 1);
	assert_int_equal(s.ops->dequantize(&s, qpay[0], 4, QC, want, scratch), 0);
	assert_int_equal(s.ops->dequantize(&s, qpay[1], 2, QC, want + 4 * QC, scratch), 0);
	free(scratch);
	size_t q = idx(qf, "q");
	assert_int_equal(qs_qfile_read(qf, q, QS_DTYPE_F32, got, sizeof(got), &d), 0);
	assert_memory_equal(got, want, sizeof(want));
	/* rows 3..4 straddle the two chunks */
	memset(got, 0, sizeof(got));
	assert_int_equal(qs_qfile_read_rows(qf, q, 3, 2, QS_DTYPE_F32, got, 2 * QC * 4, &d), 0);
	assert_memory_equal(got, want + 3 * QC, 2 * QC * 4);
	/* bf16 and f16: rounded from the f32 values */
	uint16_t h[QR * QC], ref[QR * QC];
	assert_int_equal(qs_qfile_read(qf, q, QS_DTYPE_BF16, h, sizeof(h), &d), 0);
	for (int i = 0; i < QR * QC; i++)
		ref[i] = qs_f32_to_bf16(want[i]);
	assert_memory_equal(h, ref, sizeof(h));
	assert_int_equal(qs_qfile_read_rows(qf, q, 1, 4, QS_DTYPE_F16, h, 4 * QC * 2, &d), 0);
	for (int i = 0; i < 4 * QC; i++)
		ref[i] = qs_f32_to_f16(want[QC + i]);
	assert_memory_equal(h, ref, 4 * QC * 2);
	/* quantized tensors decode to float dtypes only */
	assert_int_equal(qs_qfile_read(qf, q, QS_DTYPE_I8, h, sizeof(h), &d), -QS_EDTYPE);
	assert_non_null(strstr(d.msg, "tensor 'q'"));
	qs_qfile_free(qf);
}

static void test_raw_conversions(void **state)
{
	(void)state;
	struct qs_qfile *qf = open_it();
	struct qs_diag d;
	size_t f = idx(qf, "f16");
	uint16_t h[15];
	float x[15];
	assert_int_equal(qs_qfile_read(qf, f, QS_DTYPE_F16, h, sizeof(h), &d), 0);
	assert_memory_equal(h, f16vals, sizeof(h));
	assert_int_equal(qs_qfile_read(qf, f, QS_DTYPE_F32, x, sizeof(x), &d), 0);
	for (int i = 0; i < 15; i++)
		assert_true(x[i] == qs_f16_to_f32(f16vals[i]));
	/* f16 -> bf16 goes through f32 (exact), then one rounding */
	assert_int_equal(qs_qfile_read_rows(qf, f, 2, 2, QS_DTYPE_BF16, h, 12, &d), 0);
	for (int i = 0; i < 6; i++)
		assert_int_equal(h[i], qs_f32_to_bf16(qs_f16_to_f32(f16vals[6 + i])));

	size_t n = idx(qf, "ints");
	int64_t v[4];
	assert_int_equal(qs_qfile_read(qf, n, QS_DTYPE_I64, v, sizeof(v), &d), 0);
	assert_true(v[0] == 1 && v[1] == -2 && v[3] == 1ll << 40);
	assert_int_equal(qs_qfile_read(qf, n, QS_DTYPE_F32, x, sizeof(x), &d), -QS_EDTYPE);
	assert_non_null(strstr(d.msg, "tensor 'ints' (I64, raw) cannot be read as F32"));

	float s = 0;
	assert_int_equal(qs_qfile_read(qf, idx(qf, "scalar"), QS_DTYPE_F32, &s, 4, &d), 0);
	assert_true(s == 2.5f);
	/* an empty tensor reads as nothing; any row is outside it */
	assert_int_equal(qs_qfile_read(qf, idx(qf, "empty"), QS_DTYPE_F32, NULL, 0, &d), 0);
	assert_int_equal(qs_qfile_read_rows(qf, idx(qf, "empty"), 0, 1, QS_DTYPE_F32, x,
					    sizeof(x), &d), -QS_EUSAGE);
	qs_qfile_free(qf);
}

static void test_refusals(void **state)
{
	(void)state;
	struct qs_qfile *qf = open_it();
	struct qs_diag d;
	float x[QR * QC];
	size_t q = idx(qf, "q");
	assert_int_equal(qs_qfile_read(qf, 7, QS_DTYPE_F32, x, sizeof(x), &d), -QS_EUSAGE);
	assert_int_equal(qs_qfile_read(qf, q, QS_DTYPE_F32, x, sizeof(x) - 1, &d), -QS_EUSAGE);
	assert_non_null(strstr(d.msg, "cannot hold"));
	assert_int_equal(qs_qfile_read_rows(qf, q, 5, 2, QS_DTYPE_F32, x, sizeof(x), &d),
			 -QS_EUSAGE);
	assert_non_null(strstr(d.msg, "rows 5:7 outside its 6 rows"));
	assert_int_equal(qs_qfile_read_rows(qf, q, UINT64_MAX, 2, QS_DTYPE_F32, x, sizeof(x), &d),
			 -QS_EUSAGE);
	assert_int_equal(qs_qfile_read(qf, q, QS_DTYPE_COUNT, x, sizeof(x), &d), -QS_EUSAGE);
	assert_int_equal(qs_qfile_read(qf, q, (enum qs_dtype)-1, x, sizeof(x), &d), -QS_EUSAGE);

	assert_int_equal(qs_qfile_read(qf, idx(qf, "future"), QS_DTYPE_F32, x, sizeof(x), &d),
			 -QS_EFORMAT);
	assert_non_null(strstr(d.msg, "tensor 'future': unknown scheme 'zzz:k=1'"));
	assert_int_equal(qs_qfile_read(qf, idx(qf, "wrongsize"), QS_DTYPE_F32, x, sizeof(x), &d),
			 -QS_EFORMAT);
	assert_non_null(strstr(d.msg, "tensor 'wrongsize': chunk 0 has"));
	qs_qfile_free(qf);
}

static void test_payload_and_scheme(void **state)
{
	(void)state;
	struct qs_qfile *qf = open_it();
	struct qs_diag d;
	size_t q = idx(qf, "q");
	struct qs_chunk_info ci;
	assert_int_equal(qs_qfile_chunk(qf, q, 1, &ci), 0);
	assert_int_equal(ci.row_begin, 4);
	assert_int_equal(ci.row_count, 2);
	assert_int_equal(ci.payload_bytes, qpay_len[1]);
	assert_true(ci.payload_xxh3 == XXH3_64bits(qpay[1], qpay_len[1]));
	assert_int_equal(qs_qfile_chunk(qf, q, 2, &ci), -QS_EUSAGE);
	assert_int_equal(qs_qfile_chunk(qf, 99, 0, &ci), -QS_EUSAGE);

	uint8_t buf[4096];
	assert_int_equal(qs_qfile_read_payload(qf, q, 1, buf, qpay_len[1], &d), 0);
	assert_memory_equal(buf, qpay[1], qpay_len[1]);
	assert_int_equal(qs_qfile_read_payload(qf, q, 1, buf, qpay_len[1] - 1, &d), -QS_EUSAGE);
	assert_int_equal(qs_qfile_read_payload(qf, q, 2, buf, sizeof(buf), &d), -QS_EUSAGE);
	assert_non_null(strstr(d.msg, "no chunk 2 (it has 2)"));

	struct qs_scheme_info si;
	assert_int_equal(qs_qfile_scheme(qf, q, &si, &d), 0);
	assert_string_equal(si.name, "rtn");
	assert_int_equal(si.nparams, 2);
	assert_string_equal(qs_scheme_info_get(&si, "bits"), "4");
	assert_string_equal(qs_scheme_info_get(&si, "group"), "32");
	assert_null(qs_scheme_info_get(&si, "alpha"));
	assert_int_equal(qs_qfile_scheme(qf, idx(qf, "f16"), &si, &d), 0);
	assert_string_equal(si.name, "raw");
	assert_int_equal(si.nparams, 0);
	assert_int_equal(qs_qfile_scheme(qf, idx(qf, "future"), &si, &d), -QS_EFORMAT);
	assert_int_equal(qs_qfile_scheme(qf, 99, &si, &d), -QS_EUSAGE);
	qs_qfile_free(qf);
}

/* Every scheme the library knows splits into the parameters its canonical
 * text lists. */
static void test_scheme_split_every_scheme(void **state)
{
	(void)state;
	for (size_t k = 0; qs_scheme_registry[k]; k++) {
		struct qs_scheme s;
		struct qs_diag d;
		assert_int_equal(qs_scheme_parse(qs_scheme_registry[k]->name, &s, &d), 0);
		const char *path = test_path("split.qshard");
		struct qs_header h = {.creator = "t", .options = "t"};
		struct qs_cwriter *w;
		assert_int_equal(qs_cwriter_create(path, &h, true, false, &w, &d), 0);
		add(w, &(struct tensor_spec){"t", s.text, QS_DTYPE_F32, 2, {0, 4}, 0, {0}, {0}, {0}});
		assert_int_equal(qs_cwriter_finish(w, &d), 0);
		struct qs_qfile *qf;
		assert_int_equal(qs_qfile_open(path, &qf, &d), 0);
		struct qs_scheme_info si;
		assert_int_equal(qs_qfile_scheme(qf, 0, &si, &d), 0);
		assert_string_equal(si.name, qs_scheme_registry[k]->name);
		/* joined again, the parts are the canonical text */
		char joined[256];
		size_t at = (size_t)snprintf(joined, sizeof(joined), "%s", si.name);
		for (unsigned p = 0; p < si.nparams; p++)
			at += (size_t)snprintf(joined + at, sizeof(joined) - at, "%s%s=%s",
					       p ? "," : ":", si.params[p].key, si.params[p].value);
		assert_string_equal(joined, s.text);
		qs_qfile_free(qf);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_find),
		cmocka_unit_test(test_quantized_matches_dequantize),
		cmocka_unit_test(test_raw_conversions),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_payload_and_scheme),
		cmocka_unit_test(test_scheme_split_every_scheme),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

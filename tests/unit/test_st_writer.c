/* test_st_writer.c - the safetensors writer: round trip through our reader,
 * header layout (alignment, key order, plain JSON), and misuse. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "safetensors.h"
#include "util.h"
#include "test_util.h"

static const struct qs_st_out_tensor tensors[] = {
	{"model.embed.weight", QS_DTYPE_BF16, 2, {3, 5}},
	{"scalar", QS_DTYPE_F64, 0, {0}},
	{"empty", QS_DTYPE_F32, 2, {0, 7}},
	{"odd", QS_DTYPE_U8, 1, {3}},
	{"lm_head.weight", QS_DTYPE_F32, 3, {2, 1, 3}},
	{"idx", QS_DTYPE_I64, 1, {2}},
};
#define NT (sizeof(tensors) / sizeof(tensors[0]))

static uint64_t nbytes(const struct qs_st_out_tensor *t)
{
	uint64_t n = qs_dtype_size(t->dtype);
	for (uint32_t d = 0; d < t->ndim; d++)
		n *= t->shape[d];
	return n;
}

static bool exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

/* Writes tensors with a per-tensor byte pattern, in uneven pieces. */
static void write_all(const char *path, const char *meta)
{
	struct qs_st_writer *w;
	struct qs_diag diag;
	int ret = qs_st_writer_open(path, tensors, NT, meta, &w, &diag);
	if (ret)
		fail_msg("open: %s", diag.msg);
	for (size_t i = 0; i < NT; i++) {
		uint64_t n = nbytes(&tensors[i]);
		uint8_t *buf = malloc(n + 1);
		assert_non_null(buf);
		for (uint64_t k = 0; k < n; k++)
			buf[k] = (uint8_t)(i * 31 + k);
		size_t half = (size_t)(n / 2);
		assert_int_equal(qs_st_writer_write(w, buf, half, &diag), 0);
		assert_int_equal(qs_st_writer_write(w, buf + half, (size_t)n - half, &diag), 0);
		free(buf);
	}
	ret = qs_st_writer_close(w, &diag);
	if (ret)
		fail_msg("close: %s", diag.msg);
}

static void test_roundtrip(void **state)
{
	(void)state;
	const char *path = test_path("rt.safetensors");
	write_all(path, "{\"format\":\"pt\",\"by\":\"qshard\"}");

	struct qs_st_header h;
	struct qs_diag diag;
	uint64_t size;
	int ret = qs_st_read_file(path, &h, &size, NULL, &diag);
	if (ret)
		fail_msg("read back: %s", diag.msg);
	assert_int_equal(h.ntensors, NT);
	assert_int_equal(h.data_offset % 8, 0);
	assert_string_equal(h.metadata_json, "{\"by\":\"qshard\",\"format\":\"pt\"}");

	size_t flen;
	unsigned char *file = test_read_file(path, &flen);
	assert_int_equal(flen, size);
	for (size_t i = 0; i < NT; i++) {
		const struct qs_st_tensor *t = NULL;
		for (size_t j = 0; j < h.ntensors; j++)
			if (strcmp(h.tensors[j].name, tensors[i].name) == 0)
				t = &h.tensors[j];
		assert_non_null(t);
		assert_int_equal(t->dtype, tensors[i].dtype);
		assert_int_equal(t->ndim, tensors[i].ndim);
		for (uint32_t d = 0; d < t->ndim; d++)
			assert_int_equal(t->shape[d], tensors[i].shape[d]);
		assert_int_equal(t->nbytes, nbytes(&tensors[i]));
		for (uint64_t k = 0; k < t->nbytes; k++)
			assert_int_equal(file[t->offset + k], (uint8_t)(i * 31 + k));
	}
	qs_st_header_release(&h);

	/* The header is plain JSON (padding is whitespace), 8-byte aligned,
	 * with __metadata__ first and tensors in the given order. */
	uint64_t n = qs_get_le64(file);
	assert_int_equal((8 + n) % 8, 0);
	json_error_t jerr;
	json_t *root = json_loadb((const char *)file + 8, n, JSON_REJECT_DUPLICATES, &jerr);
	assert_non_null(root);
	assert_true(json_is_object(root));
	assert_int_equal(json_object_size(root), NT + 1);
	json_decref(root);
	char *text = strndup((const char *)file + 8, n);
	assert_non_null(text);
	assert_ptr_equal(strstr(text, "{\"__metadata__\":"), text);
	const char *prev = text;
	for (size_t i = 0; i < NT; i++) {
		char key[128];
		snprintf(key, sizeof(key), "\"%s\":{", tensors[i].name);
		const char *at = strstr(text, key);
		assert_non_null(at);
		assert_true(at > prev);
		prev = at;
	}
	/* compact: no space before the padding */
	const char *end = strrchr(text, '}');
	assert_null(memchr(text, ' ', (size_t)(end - text)));
	free(text);
	free(file);
}

static void test_no_metadata_no_tensors(void **state)
{
	(void)state;
	const char *path = test_path("empty.safetensors");
	struct qs_st_writer *w;
	struct qs_diag diag;
	assert_int_equal(qs_st_writer_open(path, NULL, 0, NULL, &w, &diag), 0);
	assert_int_equal(qs_st_writer_close(w, &diag), 0);
	/* an existing file is never truncated or reused */
	assert_int_equal(qs_st_writer_open(path, NULL, 0, "", &w, &diag), -EEXIST);
	unlink(path);
	/* an empty metadata text means none */
	assert_int_equal(qs_st_writer_open(path, NULL, 0, "", &w, &diag), 0);
	assert_int_equal(qs_st_writer_close(w, &diag), 0);
	size_t len;
	unsigned char *file = test_read_file(path, &len);
	assert_int_equal(len, 16);
	assert_int_equal(qs_get_le64(file), 8);
	assert_memory_equal(file + 8, "{}      ", 8);
	free(file);
	struct qs_st_header h;
	assert_int_equal(qs_st_read_file(path, &h, NULL, NULL, &diag), 0);
	assert_int_equal(h.ntensors, 0);
	assert_null(h.metadata_json);
	qs_st_header_release(&h);
}

static void test_write_too_much(void **state)
{
	(void)state;
	const char *path = test_path("much.safetensors");
	struct qs_st_out_tensor t = {"t", QS_DTYPE_U16, 1, {2}};
	struct qs_st_writer *w;
	struct qs_diag diag;
	assert_int_equal(qs_st_writer_open(path, &t, 1, NULL, &w, &diag), 0);
	uint8_t buf[8] = {0};
	assert_int_equal(qs_st_writer_write(w, buf, 3, &diag), 0);
	assert_int_equal(qs_st_writer_write(w, buf, 2, &diag), -QS_EUSAGE);
	assert_non_null(strstr(diag.msg, "much.safetensors'"));
	assert_int_equal(qs_st_writer_write(w, buf, 1, &diag), 0);
	assert_int_equal(qs_st_writer_close(w, &diag), 0);
	assert_true(exists(path));
}

static void test_close_short(void **state)
{
	(void)state;
	const char *path = test_path("short.safetensors");
	struct qs_st_out_tensor t = {"t", QS_DTYPE_F32, 1, {4}};
	struct qs_st_writer *w;
	struct qs_diag diag;
	assert_int_equal(qs_st_writer_open(path, &t, 1, NULL, &w, &diag), 0);
	uint8_t buf[16] = {0};
	assert_int_equal(qs_st_writer_write(w, buf, 15, &diag), 0);
	assert_int_equal(qs_st_writer_close(w, &diag), -QS_EUSAGE);
	assert_non_null(strstr(diag.msg, "short.safetensors'"));
	/* the incomplete file is removed */
	assert_false(exists(path));
}

static void test_abort(void **state)
{
	(void)state;
	const char *path = test_path("abort.safetensors");
	struct qs_st_out_tensor t = {"t", QS_DTYPE_F32, 1, {4}};
	struct qs_st_writer *w;
	struct qs_diag diag;
	assert_int_equal(qs_st_writer_open(path, &t, 1, NULL, &w, &diag), 0);
	assert_true(exists(path));
	qs_st_writer_abort(w);
	assert_false(exists(path));
	qs_st_writer_abort(NULL);
}

static void open_rejects(const struct qs_st_out_tensor *t, size_t n, const char *meta,
			 int err)
{
	const char *path = test_path("bad.safetensors");
	struct qs_st_writer *w = (struct qs_st_writer *)1;
	struct qs_diag diag;
	int ret = qs_st_writer_open(path, t, n, meta, &w, &diag);
	if (ret != err)
		fail_msg("got %d (%s), want %d", ret, diag.msg, err);
	assert_null(w);
	assert_non_null(strstr(diag.msg, "bad.safetensors'"));
	assert_false(exists(path));
}

static void test_bad_input(void **state)
{
	(void)state;
	struct qs_st_out_tensor dup[] = {{"t", QS_DTYPE_U8, 1, {1}}, {"t", QS_DTYPE_U8, 1, {1}}};
	open_rejects(dup, 2, NULL, -QS_EUSAGE);
	struct qs_st_out_tensor empty = {"", QS_DTYPE_U8, 1, {1}};
	open_rejects(&empty, 1, NULL, -QS_EUSAGE);
	struct qs_st_out_tensor meta = {"__metadata__", QS_DTYPE_U8, 1, {1}};
	open_rejects(&meta, 1, NULL, -QS_EUSAGE);
	struct qs_st_out_tensor dtype = {"t", QS_DTYPE_COUNT, 1, {1}};
	open_rejects(&dtype, 1, NULL, -QS_EUSAGE);
	struct qs_st_out_tensor dims = {"t", QS_DTYPE_U8, QS_MAX_DIMS + 1, {1}};
	open_rejects(&dims, 1, NULL, -QS_EUSAGE);
	struct qs_st_out_tensor huge = {"t", QS_DTYPE_F32, 2, {1ull << 40, 1ull << 30}};
	open_rejects(&huge, 1, NULL, -QS_ETOOBIG);
	struct qs_st_out_tensor ok = {"t", QS_DTYPE_U8, 1, {1}};
	open_rejects(&ok, 1, "[1]", -QS_EFORMAT);
	open_rejects(&ok, 1, "{\"a\":1}", -QS_EFORMAT);
	open_rejects(&ok, 1, "{", -QS_EFORMAT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_no_metadata_no_tensors),
		cmocka_unit_test(test_write_too_much),
		cmocka_unit_test(test_close_short),
		cmocka_unit_test(test_abort),
		cmocka_unit_test(test_bad_input),
	};
	int ret = cmocka_run_group_tests(tests, NULL, NULL);
	test_cleanup_tmpdir();
	return ret;
}

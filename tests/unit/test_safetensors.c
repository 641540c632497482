/* test_safetensors.c - header and index parsing: every validation rule gets
 * a test asserting the error code and that the message names the file and
 * the tensor. */
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

#include "safetensors.h"
#include "util.h"
#include "test_util.h"

#define FNAME "model-00001-of-00002.safetensors"

/* Parses json as the header of a file whose data area is data_size bytes. */
static int parse(const char *json, uint64_t data_size, struct qs_st_header *h,
		 struct qs_diag *diag)
{
	size_t len = strlen(json);
	memset(diag, 0, sizeof(*diag));
	return qs_st_parse_header(FNAME, json, len, 8 + len + data_size, h, diag);
}

/* The message names the file and, when given, the tensor, in quotes. */
static void assert_names(const struct qs_diag *diag, const char *file, const char *tensor)
{
	char q[600];
	snprintf(q, sizeof(q), "'%s'", file);
	if (!strstr(diag->msg, q))
		fail_msg("message '%s' does not name file %s", diag->msg, q);
	if (tensor) {
		snprintf(q, sizeof(q), "'%s'", tensor);
		if (!strstr(diag->msg, q))
			fail_msg("message '%s' does not name tensor %s", diag->msg, q);
	}
}

/* Asserts a header fails with err, naming the tensor (or just the file). */
static void expect_fail(const char *json, uint64_t data_size, int err, const char *tensor)
{
	struct qs_st_header h;
	struct qs_diag diag;
	int ret = parse(json, data_size, &h, &diag);
	if (ret != err)
		fail_msg("header %s: got %d (%s), want %d", json, ret, diag.msg, err);
	assert_names(&diag, FNAME, tensor);
	assert_null(h.tensors);
	assert_int_equal(h.ntensors, 0);
	assert_null(h.metadata_json);
}

static void test_valid(void **state)
{
	(void)state;
	const char *json =
		"{\"__metadata__\":{\"format\":\"pt\",\"a\":\"b\"},"
		"\"w\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[16,28]},"
		"\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
		"\"s\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[28,36]}}";
	struct qs_st_header h;
	struct qs_diag diag;
	assert_int_equal(parse(json, 36, &h, &diag), 0);
	size_t len = strlen(json);
	assert_int_equal(h.data_offset, 8 + len);
	assert_int_equal(h.ntensors, 3);
	/* sorted by offset */
	assert_string_equal(h.tensors[0].name, "b");
	assert_int_equal(h.tensors[0].dtype, QS_DTYPE_F32);
	assert_int_equal(h.tensors[0].ndim, 1);
	assert_int_equal(h.tensors[0].shape[0], 4);
	assert_int_equal(h.tensors[0].offset, 8 + len);
	assert_int_equal(h.tensors[0].nbytes, 16);
	assert_string_equal(h.tensors[1].name, "w");
	assert_int_equal(h.tensors[1].dtype, QS_DTYPE_BF16);
	assert_int_equal(h.tensors[1].ndim, 2);
	assert_int_equal(h.tensors[1].shape[1], 3);
	assert_int_equal(h.tensors[1].offset, 8 + len + 16);
	assert_string_equal(h.tensors[2].name, "s");
	assert_int_equal(h.tensors[2].ndim, 0);
	assert_int_equal(h.tensors[2].nbytes, 8);
	/* compact and key-sorted */
	assert_string_equal(h.metadata_json, "{\"a\":\"b\",\"format\":\"pt\"}");
	qs_st_header_release(&h);
	assert_null(h.tensors);
}

static void test_empty_header(void **state)
{
	(void)state;
	struct qs_st_header h;
	struct qs_diag diag;
	assert_int_equal(parse("{}", 0, &h, &diag), 0);
	assert_int_equal(h.ntensors, 0);
	assert_null(h.metadata_json);
	qs_st_header_release(&h);
	/* data past an empty header is not covered by any tensor */
	expect_fail("{}", 4, -QS_EFORMAT, NULL);
}

static void test_trailing_whitespace(void **state)
{
	(void)state;
	struct qs_st_header h;
	struct qs_diag diag;
	assert_int_equal(parse("{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}     ",
			       1, &h, &diag), 0);
	assert_int_equal(h.ntensors, 1);
	qs_st_header_release(&h);
	expect_fail("{} x", 0, -QS_EFORMAT, NULL);
}

static void test_bad_json(void **state)
{
	(void)state;
	expect_fail("{\"t\":", 0, -QS_EFORMAT, NULL);
	expect_fail("", 0, -QS_EFORMAT, NULL);
	expect_fail("[]", 0, -QS_EFORMAT, NULL);
	/* escaped NUL would truncate names in C */
	expect_fail("{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}",
		    0, -QS_EFORMAT, NULL);
	/* invalid UTF-8 */
	expect_fail("{\"\xff\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}",
		    0, -QS_EFORMAT, NULL);
}

static void test_duplicate_keys(void **state)
{
	(void)state;
	expect_fail("{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
		    "\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
		    2, -QS_EFORMAT, NULL);
	expect_fail("{\"t\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
		    1, -QS_EFORMAT, NULL);
}

static void test_wrong_types(void **state)
{
	(void)state;
	expect_fail("{\"t\":[1]}", 0, -QS_EFORMAT, "t");
	expect_fail("{\"t\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,1]}}", 1, -QS_EFORMAT, "t");
	expect_fail("{\"t\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1, -QS_EFORMAT, "t");
	expect_fail("{\"t\":{\"dtype\":\"U8\",\"shape\":1,\"data_offsets\":[0,1]}}", 1, -QS_EFORMAT, "t");
	expect_fail("{\"t\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}}", 1, -QS_EFORMAT, "t");
	expect_fail("{\"t\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]}}", 1, -QS_EFORMAT, "t");
	expect_fail("{\"t\":{\"dtype\":\"U8\",\"shape\":[1.0],\"data_offsets\":[0,1]}}", 1, -QS_EFORMAT, "t");
	expect_fail("{\"t\":{\"dtype\":\"U8\",\"shape\":[\"1\"],\"data_offsets\":[0,1]}}", 1, -QS_EFORMAT, "t");
	expect_fail("{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}}", 1, -QS_EFORMAT, "t");
	expect_fail("{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,1]}}", 1, -QS_EFORMAT, "t");
	expect_fail("{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":{}}}", 1, -QS_EFORMAT, "t");
	expect_fail("{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,0]}}", 1, -QS_EFORMAT, "t");
	expect_fail("{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,true]}}", 1, -QS_EFORMAT, "t");
	/* beyond any 64-bit signed integer: jansson refuses it */
	expect_fail("{\"t\":{\"dtype\":\"U8\",\"shape\":[99999999999999999999],\"data_offsets\":[0,1]}}",
		    1, -QS_EFORMAT, NULL);
	/* unknown extra keys are ignored */
	struct qs_st_header h;
	struct qs_diag diag;
	assert_int_equal(parse("{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":null}}",
			       1, &h, &diag), 0);
	qs_st_header_release(&h);
}

static void test_empty_name(void **state)
{
	(void)state;
	expect_fail("{\"\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
		    -QS_EFORMAT, NULL);
}

static void test_unknown_dtype(void **state)
{
	(void)state;
	expect_fail("{\"t\":{\"dtype\":\"F4\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
		    -QS_EDTYPE, "t");
	expect_fail("{\"t\":{\"dtype\":\"bf16\",\"shape\":[1],\"data_offsets\":[0,2]}}", 2,
		    -QS_EDTYPE, "t");
}

static void test_too_many_dims(void **state)
{
	(void)state;
	expect_fail("{\"t\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}",
		    1, -QS_EFORMAT, "t");
	struct qs_st_header h;
	struct qs_diag diag;
	assert_int_equal(parse("{\"t\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}",
			       1, &h, &diag), 0);
	assert_int_equal(h.tensors[0].ndim, 8);
	qs_st_header_release(&h);
}

static void test_overflow(void **state)
{
	(void)state;
	/* 2^32 * 2^32 overflows the element count */
	expect_fail("{\"t\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}",
		    0, -QS_EFORMAT, "t");
	/* the count fits but times 8 bytes does not */
	expect_fail("{\"t\":{\"dtype\":\"F64\",\"shape\":[4294967296,1073741824],\"data_offsets\":[0,0]}}",
		    0, -QS_EFORMAT, "t");
	/* a zero later does not hide an overflow */
	expect_fail("{\"t\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,0],\"data_offsets\":[0,0]}}",
		    0, -QS_EFORMAT, "t");
}

static void test_size_mismatch(void **state)
{
	(void)state;
	expect_fail("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4,
		    -QS_EFORMAT, "t");
	expect_fail("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}}", 12,
		    -QS_EFORMAT, "t");
}

static void test_begin_after_end(void **state)
{
	(void)state;
	struct qs_st_header h;
	struct qs_diag diag;
	int ret = parse("{\"t\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[2,1]}}", 2, &h, &diag);
	assert_int_equal(ret, -QS_EFORMAT);
	assert_names(&diag, FNAME, "t");
	assert_non_null(strstr(diag.msg, "begin"));
}

static void test_hole(void **state)
{
	(void)state;
	expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
		    "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[3,5]}}",
		    5, -QS_EFORMAT, "b");
	/* first tensor must start at 0 */
	expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[1,3]}}",
		    3, -QS_EFORMAT, "a");
}

static void test_overlap(void **state)
{
	(void)state;
	struct qs_st_header h;
	struct qs_diag diag;
	assert_int_equal(parse("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
			       "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}",
			       6, &h, &diag), -QS_EFORMAT);
	assert_names(&diag, FNAME, "b");
	assert_names(&diag, FNAME, "a");
	assert_non_null(strstr(diag.msg, "overlap"));
	/* identical ranges */
	expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
		    "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}",
		    4, -QS_EFORMAT, "b");
}

static void test_past_end(void **state)
{
	(void)state;
	struct qs_st_header h;
	struct qs_diag diag;
	assert_int_equal(parse("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
			       "\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}",
			       6, &h, &diag), -QS_EFORMAT);
	assert_names(&diag, FNAME, "w");
	assert_non_null(strstr(diag.msg, "extends past end of file"));
}

static void test_trailing_data(void **state)
{
	(void)state;
	struct qs_st_header h;
	struct qs_diag diag;
	assert_int_equal(parse("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}",
			       7, &h, &diag), -QS_EFORMAT);
	assert_names(&diag, FNAME, NULL);
	assert_non_null(strstr(diag.msg, "3 bytes"));
}

static void test_zero_size(void **state)
{
	(void)state;
	/* zero-size tensors at the start, sharing offsets with neighbours,
	 * several at the same offset, and at the very end */
	const char *json =
		"{\"z0\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[0,0]},"
		"\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
		"\"z1\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,4]},"
		"\"z2\":{\"dtype\":\"BF16\",\"shape\":[3,0],\"data_offsets\":[4,4]},"
		"\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[4,6]},"
		"\"z3\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[6,6]}}";
	struct qs_st_header h;
	struct qs_diag diag;
	assert_int_equal(parse(json, 6, &h, &diag), 0);
	assert_int_equal(h.ntensors, 6);
	const char *order[] = {"z0", "a", "z1", "z2", "b", "z3"};
	for (size_t i = 0; i < 6; i++)
		assert_string_equal(h.tensors[i].name, order[i]);
	assert_int_equal(h.tensors[0].nbytes, 0);
	qs_st_header_release(&h);
	/* only zero-size tensors and an empty data area */
	assert_int_equal(parse("{\"z\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}",
			       0, &h, &diag), 0);
	qs_st_header_release(&h);
	/* a zero-size tensor inside another one's bytes is an overlap */
	expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
		    "\"z\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[2,2]}}",
		    4, -QS_EFORMAT, "z");
	/* and one beyond the data area is past the end */
	expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
		    "\"z\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[9,9]}}",
		    4, -QS_EFORMAT, "z");
}

static void test_metadata(void **state)
{
	(void)state;
	expect_fail("{\"__metadata__\":[]}", 0, -QS_EFORMAT, NULL);
	expect_fail("{\"__metadata__\":\"x\"}", 0, -QS_EFORMAT, NULL);
	expect_fail("{\"__metadata__\":{\"k\":1}}", 0, -QS_EFORMAT, NULL);
	expect_fail("{\"__metadata__\":{\"k\":{}}}", 0, -QS_EFORMAT, NULL);
	struct qs_st_header h;
	struct qs_diag diag;
	assert_int_equal(parse("{\"__metadata__\":{}}", 0, &h, &diag), 0);
	assert_string_equal(h.metadata_json, "{}");
	qs_st_header_release(&h);
}

static void test_header_length_checks(void **state)
{
	(void)state;
	struct qs_st_header h;
	struct qs_diag diag;
	/* pure-function guards: header longer than the cap or the file */
	assert_int_equal(qs_st_parse_header(FNAME, "{}", QS_ST_MAX_HEADER + 1,
					    QS_ST_MAX_HEADER + 100, &h, &diag), -QS_EFORMAT);
	assert_names(&diag, FNAME, NULL);
	assert_int_equal(qs_st_parse_header(FNAME, "{}", 2, 9, &h, &diag), -QS_EFORMAT);
	assert_names(&diag, FNAME, NULL);
	assert_int_equal(qs_st_parse_header(FNAME, "{}", 2, 3, &h, &diag), -QS_EFORMAT);
	assert_int_equal(qs_st_parse_header(FNAME, "{}", 2, 10, &h, &diag), 0);
	qs_st_header_release(&h);
}

/* ---- qs_st_read_file */

static const char *write_st(const char *name, const uint8_t *lenbytes, const char *json,
			    size_t json_len, size_t data_len)
{
	const char *path = test_path(name);
	size_t total = 8 + json_len + data_len;
	uint8_t *buf = calloc(1, total);
	assert_non_null(buf);
	memcpy(buf, lenbytes, 8);
	memcpy(buf + 8, json, json_len);
	test_write_file(path, buf, total);
	free(buf);
	return path;
}

static void read_expect(const char *path, int err)
{
	struct qs_st_header h;
	struct qs_diag diag;
	uint64_t size;
	int64_t mtime;
	memset(&diag, 0, sizeof(diag));
	int ret = qs_st_read_file(path, &h, &size, &mtime, &diag);
	if (ret != err)
		fail_msg("%s: got %d (%s), want %d", path, ret, diag.msg, err);
	assert_names(&diag, path, NULL);
	assert_null(h.tensors);
}

static void test_read_valid(void **state)
{
	(void)state;
	const char *json = "{\"t\":{\"dtype\":\"U16\",\"shape\":[3],\"data_offsets\":[0,6]}}  ";
	uint8_t len[8];
	qs_put_le64(len, strlen(json));
	const char *path = write_st("ok.safetensors", len, json, strlen(json), 6);
	struct qs_st_header h;
	struct qs_diag diag;
	uint64_t size = 0;
	int64_t mtime = 0;
	assert_int_equal(qs_st_read_file(path, &h, &size, &mtime, &diag), 0);
	assert_int_equal(size, 8 + strlen(json) + 6);
	assert_true(mtime > 0);
	assert_int_equal(h.ntensors, 1);
	assert_int_equal(h.tensors[0].offset, 8 + strlen(json));
	qs_st_header_release(&h);
}

static void test_read_short_file(void **state)
{
	(void)state;
	const char *path = test_path("short.safetensors");
	test_write_file(path, "\x02\0\0\0", 4);
	read_expect(path, -QS_EFORMAT);
	test_write_file(path, "", 0);
	read_expect(path, -QS_EFORMAT);
}

static void test_read_huge_header_len(void **state)
{
	(void)state;
	uint8_t len[8];
	qs_put_le64(len, QS_ST_MAX_HEADER + 1);
	read_expect(write_st("huge.safetensors", len, "{}", 2, 0), -QS_EFORMAT);
	qs_put_le64(len, UINT64_MAX);
	read_expect(write_st("huge2.safetensors", len, "{}", 2, 0), -QS_EFORMAT);
}

static void test_read_header_past_eof(void **state)
{
	(void)state;
	uint8_t len[8];
	qs_put_le64(len, 3);
	read_expect(write_st("past.safetensors", len, "{}", 2, 0), -QS_EFORMAT);
}

static void test_read_not_file(void **state)
{
	(void)state;
	read_expect(test_path("does-not-exist.safetensors"), -ENOENT);
	const char *d = test_path("adir.safetensors");
	assert_int_equal(mkdir(d, 0755), 0);
	read_expect(d, -QS_EFORMAT);
}

/* Random byte flips of a valid header: no crash, no leak (ASan). */
static void test_mutations(void **state)
{
	(void)state;
	const char *base =
		"{\"__metadata__\":{\"format\":\"pt\"},"
		"\"w\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[16,28]},"
		"\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}";
	size_t len = strlen(base);
	char *buf = malloc(len);
	assert_non_null(buf);
	uint32_t seed = 12345;
	for (int iter = 0; iter < 20000; iter++) {
		memcpy(buf, base, len);
		int flips = 1 + iter % 4;
		for (int k = 0; k < flips; k++) {
			seed = seed * 1103515245u + 12345u;
			size_t at = (seed >> 8) % len;
			seed = seed * 1103515245u + 12345u;
			buf[at] = (char)(seed >> 16);
		}
		size_t cut = (iter % 7 == 0) ? (seed >> 4) % (len + 1) : len;
		struct qs_st_header h;
		struct qs_diag diag;
		uint64_t fsize = 8 + cut + (iter % 3 == 0 ? (seed >> 3) % 64 : 28);
		if (qs_st_parse_header(FNAME, buf, cut, fsize, &h, &diag) == 0) {
			uint64_t sum = 0;
			for (size_t i = 0; i < h.ntensors; i++)
				sum += h.tensors[i].nbytes;
			assert_int_equal(sum, fsize - h.data_offset);
			qs_st_header_release(&h);
		}
		struct qs_st_index idx;
		if (qs_st_parse_index("i.json", buf, cut, &idx, &diag) == 0)
			qs_st_index_release(&idx);
	}
	free(buf);
}

/* ---- index.json */

#define INAME "model.safetensors.index.json"

static void index_expect(const char *text, int err, const char *tensor)
{
	struct qs_st_index idx;
	struct qs_diag diag;
	memset(&diag, 0, sizeof(diag));
	int ret = qs_st_parse_index(INAME, text, strlen(text), &idx, &diag);
	if (ret != err)
		fail_msg("index %s: got %d (%s), want %d", text, ret, diag.msg, err);
	assert_names(&diag, INAME, tensor);
	assert_null(idx.entries);
	assert_null(idx.shards);
}

static void test_index_valid(void **state)
{
	(void)state;
	const char *text =
		"{\"metadata\":{\"total_size\":123},\"weight_map\":{"
		"\"a\":\"m-2.safetensors\",\"b\":\"m-1.safetensors\",\"c\":\"m-2.safetensors\"}}";
	struct qs_st_index idx;
	struct qs_diag diag;
	assert_int_equal(qs_st_parse_index(INAME, text, strlen(text), &idx, &diag), 0);
	assert_int_equal(idx.nentries, 3);
	assert_string_equal(idx.entries[0].tensor, "a");
	assert_string_equal(idx.entries[0].shard, "m-2.safetensors");
	assert_string_equal(idx.entries[1].shard, "m-1.safetensors");
	assert_int_equal(idx.nshards, 2);
	assert_string_equal(idx.shards[0], "m-2.safetensors");
	assert_string_equal(idx.shards[1], "m-1.safetensors");
	qs_st_index_release(&idx);
	assert_null(idx.entries);
}

static void test_index_invalid(void **state)
{
	(void)state;
	index_expect("{", -QS_EFORMAT, NULL);
	index_expect("[]", -QS_EFORMAT, NULL);
	index_expect("{}", -QS_EFORMAT, NULL);
	index_expect("{\"weight_map\":[]}", -QS_EFORMAT, NULL);
	index_expect("{\"weight_map\":{\"t\":1}}", -QS_EFORMAT, "t");
	index_expect("{\"weight_map\":{\"t\":null}}", -QS_EFORMAT, "t");
	index_expect("{\"weight_map\":{\"\":\"a.safetensors\"}}", -QS_EFORMAT, NULL);
	index_expect("{\"weight_map\":{\"t\":\"a\",\"t\":\"a\"}}", -QS_EFORMAT, NULL);
}

static void test_index_shard_names(void **state)
{
	(void)state;
	const char *bad[] = {"", "/etc/passwd", "../x.safetensors", "sub/x.safetensors",
			     "a\\\\b.safetensors", ".", "..", "..\\\\x"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char text[256];
		snprintf(text, sizeof(text), "{\"weight_map\":{\"ok\":\"a.safetensors\",\"t\":\"%s\"}}",
			 bad[i]);
		index_expect(text, -QS_EFORMAT, "t");
	}
	/* dots inside a name are fine */
	struct qs_st_index idx;
	struct qs_diag diag;
	const char *ok = "{\"weight_map\":{\"t\":\"..model.safetensors\"}}";
	assert_int_equal(qs_st_parse_index(INAME, ok, strlen(ok), &idx, &diag), 0);
	qs_st_index_release(&idx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_empty_header),
		cmocka_unit_test(test_trailing_whitespace),
		cmocka_unit_test(test_bad_json),
		cmocka_unit_test(test_duplicate_keys),
		cmocka_unit_test(test_wrong_types),
		cmocka_unit_test(test_empty_name),
		cmocka_unit_test(test_unknown_dtype),
		cmocka_unit_test(test_too_many_dims),
		cmocka_unit_test(test_overflow),
		cmocka_unit_test(test_size_mismatch),
		cmocka_unit_test(test_begin_after_end),
		cmocka_unit_test(test_hole),
		cmocka_unit_test(test_overlap),
		cmocka_unit_test(test_past_end),
		cmocka_unit_test(test_trailing_data),
		cmocka_unit_test(test_zero_size),
		cmocka_unit_test(test_metadata),
		cmocka_unit_test(test_header_length_checks),
		cmocka_unit_test(test_read_valid),
		cmocka_unit_test(test_read_short_file),
		cmocka_unit_test(test_read_huge_header_len),
		cmocka_unit_test(test_read_header_past_eof),
		cmocka_unit_test(test_read_not_file),
		cmocka_unit_test(test_mutations),
		cmocka_unit_test(test_index_valid),
		cmocka_unit_test(test_index_invalid),
		cmocka_unit_test(test_index_shard_names),
	};
	int ret = cmocka_run_group_tests(tests, NULL, NULL);
	test_cleanup_tmpdir();
	return ret;
}

/* test_checkpoint.c - opening single-file and sharded checkpoints: every
 * folder rule, symlinks, unreadable files and config.json handling. */
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

#include "safetensors.h"
#include "util.h"
#include "test_util.h"

struct spec {
	const char *name;
	const char *dtype;
	unsigned esize;
	uint32_t ndim;
	uint64_t shape[4];
};

/* Emits a safetensors file holding tensors in the given order, data filled
 * with a pattern; returns the file size. */
static uint64_t emit(const char *path, const struct spec *t, size_t n)
{
	char json[4096];
	size_t at = 0;
	uint64_t off = 0;
	at += (size_t)snprintf(json + at, sizeof(json) - at, "{");
	for (size_t i = 0; i < n; i++) {
		uint64_t bytes = t[i].esize;
		for (uint32_t d = 0; d < t[i].ndim; d++)
			bytes *= t[i].shape[d];
		at += (size_t)snprintf(json + at, sizeof(json) - at,
				       "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", i ? "," : "",
				       t[i].name, t[i].dtype);
		for (uint32_t d = 0; d < t[i].ndim; d++)
			at += (size_t)snprintf(json + at, sizeof(json) - at, "%s%llu",
					       d ? "," : "", (unsigned long long)t[i].shape[d]);
		at += (size_t)snprintf(json + at, sizeof(json) - at,
				       "],\"data_offsets\":[%llu,%llu]}",
				       (unsigned long long)off, (unsigned long long)(off + bytes));
		off += bytes;
	}
	at += (size_t)snprintf(json + at, sizeof(json) - at, "}");
	while ((8 + at) % 8)
		json[at++] = ' ';
	assert_true(at < sizeof(json));
	uint64_t size = 8 + at + off;
	uint8_t *buf = malloc(size);
	assert_non_null(buf);
	qs_put_le64(buf, at);
	memcpy(buf + 8, json, at);
	for (uint64_t i = 0; i < off; i++)
		buf[8 + at + i] = (uint8_t)(i * 7 + 1);
	test_write_file(path, buf, size);
	free(buf);
	return size;
}

static const struct spec A = {"a", "BF16", 2, 2, {2, 3}};
static const struct spec B = {"b", "F32", 4, 1, {5}};
static const struct spec C = {"c", "U8", 1, 1, {3}};
static const struct spec D = {"d", "I64", 8, 0, {0}};

/* A fresh folder inside the test temp folder. */
static const char *subdir(const char *name)
{
	const char *p = test_path(name);
	assert_int_equal(mkdir(p, 0755), 0);
	return p;
}

static char *in(const char *dir, const char *name)
{
	char *p = qs_path_join(dir, name);
	assert_non_null(p);
	return p;
}

static void put(const char *dir, const char *name, const char *text)
{
	char *p = in(dir, name);
	test_write_file(p, text, strlen(text));
	free(p);
}

static uint64_t emit_in(const char *dir, const char *name, const struct spec *t, size_t n)
{
	char *p = in(dir, name);
	uint64_t size = emit(p, t, n);
	free(p);
	return size;
}

static void assert_contains(const char *msg, const char *part)
{
	if (!strstr(msg, part))
		fail_msg("message '%s' lacks \"%s\"", msg, part);
}

/* Opening path fails with err and the message holds each of the parts. */
static void open_fails(const char *path, int err, const char *p1, const char *p2,
		       const char *p3)
{
	struct qs_checkpoint *ck = (struct qs_checkpoint *)1;
	struct qs_diag diag;
	memset(&diag, 0, sizeof(diag));
	int ret = qs_checkpoint_open(path, &ck, &diag);
	if (ret != err)
		fail_msg("%s: got %d (%s), want %d", path, ret, diag.msg, err);
	assert_null(ck);
	const char *parts[] = {p1, p2, p3};
	for (int i = 0; i < 3; i++)
		if (parts[i])
			assert_contains(diag.msg, parts[i]);
}

static struct qs_checkpoint *open_ok(const char *path)
{
	struct qs_checkpoint *ck = NULL;
	struct qs_diag diag;
	int ret = qs_checkpoint_open(path, &ck, &diag);
	if (ret != 0)
		fail_msg("%s: %d (%s)", path, ret, diag.msg);
	assert_non_null(ck);
	return ck;
}

static void test_single_file(void **state)
{
	(void)state;
	const char *dir = subdir("single");
	struct spec t[] = {B, A, D};
	uint64_t size = emit_in(dir, "weights.safetensors", t, 3);
	char *p = in(dir, "weights.safetensors");
	struct qs_checkpoint *ck = open_ok(p);
	assert_false(ck->sharded);
	assert_string_equal(ck->dir, dir);
	assert_int_equal(qs_checkpoint_count(ck), 3);
	assert_int_equal(qs_checkpoint_shards(ck), 1);
	assert_int_equal(qs_checkpoint_bytes(ck), size);
	assert_string_equal(ck->shards[0].name, "weights.safetensors");
	assert_string_equal(ck->shards[0].path, p);
	assert_true(ck->shards[0].mtime_ns > 0);
	assert_int_equal(ck->shards[0].size, size);
	struct qs_tensor_info ti;
	qs_checkpoint_tensor(ck, 0, &ti);
	assert_string_equal(ti.name, "b");
	assert_string_equal(ti.file, "weights.safetensors");
	assert_int_equal(ti.dtype, QS_DTYPE_F32);
	assert_int_equal(ti.ndim, 1);
	assert_int_equal(ti.shape[0], 5);
	assert_int_equal(ti.source_bytes, 20);
	assert_null(ti.scheme);
	assert_int_equal(ti.chunks, 0);
	qs_checkpoint_tensor(ck, 1, &ti);
	assert_string_equal(ti.name, "a");
	assert_int_equal(ti.source_bytes, 12);
	qs_checkpoint_tensor(ck, 2, &ti);
	assert_string_equal(ti.name, "d");
	assert_int_equal(ti.ndim, 0);
	assert_int_equal(ti.source_bytes, 8);
	assert_int_equal(ck->tensors[2].offset + 8, size);
	/* no config.json */
	assert_null(ck->config_json);
	assert_false(ck->config_invalid);
	qs_checkpoint_free(ck);
	free(p);
}

static void test_folder_single(void **state)
{
	(void)state;
	const char *dir = subdir("fsingle");
	struct spec t[] = {A, C};
	emit_in(dir, "my-model.safetensors", t, 2);
	/* dot files are skipped as a shell glob would */
	emit_in(dir, ".hidden.safetensors", t, 1);
	put(dir, "README.md", "hello");
	put(dir, "config.json", "{\"hidden_size\": 4096}");
	struct qs_checkpoint *ck = open_ok(dir);
	assert_false(ck->sharded);
	assert_int_equal(qs_checkpoint_count(ck), 2);
	assert_string_equal(ck->shards[0].name, "my-model.safetensors");
	assert_string_equal(ck->config_json, "{\"hidden_size\": 4096}");
	assert_false(ck->config_invalid);
	qs_checkpoint_free(ck);
}

static void test_config_invalid(void **state)
{
	(void)state;
	const char *dir = subdir("badconfig");
	struct spec t[] = {A};
	emit_in(dir, "model.safetensors", t, 1);
	put(dir, "config.json", "{\"hidden_size\": ");
	struct qs_checkpoint *ck = open_ok(dir);
	assert_null(ck->config_json);
	assert_true(ck->config_invalid);
	qs_checkpoint_free(ck);
}

static const char *make_sharded(const char *name)
{
	const char *dir = subdir(name);
	struct spec s1[] = {C, A};
	struct spec s2[] = {B, D};
	emit_in(dir, "model-00001-of-00002.safetensors", s1, 2);
	emit_in(dir, "model-00002-of-00002.safetensors", s2, 2);
	return dir;
}

/* Index listing shard 2 first: plan order must still follow sorted names. */
static const char *good_index =
	"{\"metadata\":{\"total_size\":40},\"weight_map\":{"
	"\"b\":\"model-00002-of-00002.safetensors\","
	"\"a\":\"model-00001-of-00002.safetensors\","
	"\"d\":\"model-00002-of-00002.safetensors\","
	"\"c\":\"model-00001-of-00002.safetensors\"}}";

static void test_sharded(void **state)
{
	(void)state;
	const char *dir = make_sharded("sharded");
	put(dir, "model.safetensors.index.json", good_index);
	put(dir, "config.json", "{}");
	/* a stray unrelated file is ignored when an index exists */
	emit_in(dir, "consolidated.safetensors", &A, 1);
	struct qs_checkpoint *ck = open_ok(dir);
	assert_true(ck->sharded);
	assert_int_equal(qs_checkpoint_shards(ck), 2);
	assert_int_equal(qs_checkpoint_count(ck), 4);
	const char *order[] = {"c", "a", "b", "d"};
	const char *files[] = {"model-00001-of-00002.safetensors",
			       "model-00001-of-00002.safetensors",
			       "model-00002-of-00002.safetensors",
			       "model-00002-of-00002.safetensors"};
	for (size_t i = 0; i < 4; i++) {
		struct qs_tensor_info ti;
		qs_checkpoint_tensor(ck, i, &ti);
		assert_string_equal(ti.name, order[i]);
		assert_string_equal(ti.file, files[i]);
		assert_int_equal(ck->tensors[i].shard, i / 2);
	}
	assert_int_equal(qs_checkpoint_bytes(ck), ck->shards[0].size + ck->shards[1].size);
	char *p = in(dir, "model-00002-of-00002.safetensors");
	assert_string_equal(ck->shards[1].path, p);
	free(p);
	assert_true(ck->shards[1].mtime_ns > 0);
	assert_string_equal(ck->config_json, "{}");
	qs_checkpoint_free(ck);
}

static void test_open_index_file(void **state)
{
	(void)state;
	const char *dir = make_sharded("byindex");
	put(dir, "model.safetensors.index.json", good_index);
	char *p = in(dir, "model.safetensors.index.json");
	struct qs_checkpoint *ck = open_ok(p);
	assert_true(ck->sharded);
	assert_int_equal(qs_checkpoint_shards(ck), 2);
	assert_int_equal(qs_checkpoint_count(ck), 4);
	assert_string_equal(ck->dir, dir);
	qs_checkpoint_free(ck);
	free(p);
}

static void test_sharded_missing_shard(void **state)
{
	(void)state;
	const char *dir = make_sharded("missing");
	put(dir, "model.safetensors.index.json",
	    "{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\","
	    "\"c\":\"model-00001-of-00002.safetensors\","
	    "\"x\":\"model-00003-of-00002.safetensors\"}}");
	open_fails(dir, -ENOENT, "'", "model-00003-of-00002.safetensors'", NULL);
}

static void test_sharded_tensor_missing(void **state)
{
	(void)state;
	const char *dir = make_sharded("tmissing");
	put(dir, "model.safetensors.index.json",
	    "{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\","
	    "\"c\":\"model-00001-of-00002.safetensors\","
	    "\"b\":\"model-00002-of-00002.safetensors\","
	    "\"d\":\"model-00002-of-00002.safetensors\","
	    "\"e\":\"model-00002-of-00002.safetensors\"}}");
	open_fails(dir, -QS_EFORMAT, "'e'", "'model-00002-of-00002.safetensors'", "missing");
}

static void test_sharded_tensor_unlisted(void **state)
{
	(void)state;
	const char *dir = make_sharded("unlisted");
	put(dir, "model.safetensors.index.json",
	    "{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\","
	    "\"c\":\"model-00001-of-00002.safetensors\","
	    "\"b\":\"model-00002-of-00002.safetensors\"}}");
	open_fails(dir, -QS_EFORMAT, "'d'", "'model-00002-of-00002.safetensors'",
		   "not listed");
}

static void test_sharded_wrong_shard(void **state)
{
	(void)state;
	const char *dir = make_sharded("wrong");
	put(dir, "model.safetensors.index.json",
	    "{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\","
	    "\"c\":\"model-00002-of-00002.safetensors\","
	    "\"b\":\"model-00002-of-00002.safetensors\","
	    "\"d\":\"model-00002-of-00002.safetensors\"}}");
	open_fails(dir, -QS_EFORMAT, "'c'", "'model-00001-of-00002.safetensors'",
		   "'model-00002-of-00002.safetensors'");
}

static void test_sharded_duplicate(void **state)
{
	(void)state;
	const char *dir = subdir("dup");
	struct spec s1[] = {A, C};
	struct spec s2[] = {B, A};
	emit_in(dir, "x-1.safetensors", s1, 2);
	emit_in(dir, "x-2.safetensors", s2, 2);
	put(dir, "model.safetensors.index.json",
	    "{\"weight_map\":{\"a\":\"x-1.safetensors\",\"c\":\"x-1.safetensors\","
	    "\"b\":\"x-2.safetensors\"}}");
	open_fails(dir, -QS_EFORMAT, "'a'", "'x-1.safetensors'", "'x-2.safetensors'");
}

static void test_sharded_bad_index(void **state)
{
	(void)state;
	const char *dir = make_sharded("badindex");
	put(dir, "model.safetensors.index.json",
	    "{\"weight_map\":{\"a\":\"../model-00001-of-00002.safetensors\"}}");
	open_fails(dir, -QS_EFORMAT, "model.safetensors.index.json'", "'a'", NULL);
	put(dir, "model.safetensors.index.json", "not json");
	open_fails(dir, -QS_EFORMAT, "model.safetensors.index.json'", NULL, NULL);
	put(dir, "model.safetensors.index.json", "{\"weight_map\":{}}");
	open_fails(dir, -QS_EFORMAT, "model.safetensors.index.json'", "no tensors", NULL);
}

static void test_sharded_bad_shard_header(void **state)
{
	(void)state;
	const char *dir = make_sharded("badshard");
	put(dir, "model.safetensors.index.json", good_index);
	/* truncate shard 2 so its last tensor extends past the end */
	char *p = in(dir, "model-00002-of-00002.safetensors");
	struct stat st;
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(truncate(p, st.st_size - 1), 0);
	open_fails(dir, -QS_EFORMAT, "model-00002-of-00002.safetensors'", "'d'",
		   "past end of file");
	free(p);
}

static void test_both_single_and_shards(void **state)
{
	(void)state;
	const char *dir = make_sharded("both");
	put(dir, "model.safetensors.index.json", good_index);
	emit_in(dir, "model.safetensors", &A, 1);
	open_fails(dir, -QS_EFORMAT, "both a single-file checkpoint and shards", NULL, NULL);
}

static void test_index_naming_model_safetensors(void **state)
{
	(void)state;
	const char *dir = subdir("indexsingle");
	struct spec t[] = {A, B};
	emit_in(dir, "model.safetensors", t, 2);
	put(dir, "model.safetensors.index.json",
	    "{\"weight_map\":{\"a\":\"model.safetensors\",\"b\":\"model.safetensors\"}}");
	struct qs_checkpoint *ck = open_ok(dir);
	assert_true(ck->sharded);
	assert_int_equal(qs_checkpoint_count(ck), 2);
	qs_checkpoint_free(ck);
}

static void test_several_files(void **state)
{
	(void)state;
	const char *dir = subdir("several");
	emit_in(dir, "x.safetensors", &A, 1);
	emit_in(dir, "y.safetensors", &B, 1);
	open_fails(dir, -QS_EFORMAT,
		   "several .safetensors files but no model.safetensors.index.json", dir, NULL);
}

static void test_no_files(void **state)
{
	(void)state;
	const char *dir = subdir("nofiles");
	put(dir, "config.json", "{}");
	put(dir, "model.bin", "x");
	open_fails(dir, -QS_EFORMAT, "no .safetensors files", dir, NULL);
}

static void test_empty_folder(void **state)
{
	(void)state;
	const char *dir = subdir("empty");
	open_fails(dir, -QS_EFORMAT, "empty folder", dir, NULL);
}

static void test_nonexistent(void **state)
{
	(void)state;
	const char *p = test_path("nope.safetensors");
	open_fails(p, -ENOENT, p, NULL, NULL);
}

static void test_no_tensors(void **state)
{
	(void)state;
	const char *dir = subdir("notensors");
	emit_in(dir, "model.safetensors", NULL, 0);
	open_fails(dir, -QS_EFORMAT, "no tensors", "model.safetensors'", NULL);
	char *p = in(dir, "model.safetensors");
	open_fails(p, -QS_EFORMAT, "no tensors", "model.safetensors'", NULL);
	free(p);
}

static void test_symlinks(void **state)
{
	(void)state;
	/* a link to a real file elsewhere is followed */
	const char *real = subdir("reallinked");
	emit_in(real, "blob", &B, 1);
	const char *dir = subdir("linked");
	char *target = in(real, "blob");
	char *link = in(dir, "model.safetensors");
	assert_int_equal(symlink(target, link), 0);
	struct qs_checkpoint *ck = open_ok(dir);
	assert_int_equal(qs_checkpoint_count(ck), 1);
	assert_string_equal(ck->shards[0].name, "model.safetensors");
	qs_checkpoint_free(ck);
	free(target);
	free(link);
}

static void test_symlink_loop(void **state)
{
	(void)state;
	const char *dir = subdir("loop");
	char *a = in(dir, "a.safetensors");
	char *b = in(dir, "b.safetensors");
	assert_int_equal(symlink("b.safetensors", a), 0);
	assert_int_equal(symlink("a.safetensors", b), 0);
	open_fails(dir, -ELOOP, "a.safetensors'", "symbolic links", NULL);
	open_fails(a, -ELOOP, a, "symbolic links", NULL);
	/* a loop in a shard named by the index */
	const char *sdir = subdir("loopshard");
	char *s1 = in(sdir, "s1.safetensors");
	assert_int_equal(symlink("s1.safetensors", s1), 0);
	put(sdir, "model.safetensors.index.json", "{\"weight_map\":{\"a\":\"s1.safetensors\"}}");
	open_fails(sdir, -ELOOP, "s1.safetensors'", NULL, NULL);
	free(a);
	free(b);
	free(s1);
}

static void test_unreadable(void **state)
{
	(void)state;
	if (geteuid() == 0) {
		/* root reads through mode 000; nothing to observe */
		skip();
	}
	const char *dir = make_sharded("unreadable");
	put(dir, "model.safetensors.index.json", good_index);
	char *p = in(dir, "model-00002-of-00002.safetensors");
	assert_int_equal(chmod(p, 0), 0);
	open_fails(dir, -EACCES, "model-00002-of-00002.safetensors'", NULL, NULL);
	assert_int_equal(chmod(p, 0644), 0);
	free(p);
}

static void test_shard_is_folder(void **state)
{
	(void)state;
	const char *dir = subdir("shardfolder");
	char *p = in(dir, "s.safetensors");
	assert_int_equal(mkdir(p, 0755), 0);
	put(dir, "model.safetensors.index.json", "{\"weight_map\":{\"a\":\"s.safetensors\"}}");
	open_fails(dir, -QS_EFORMAT, "s.safetensors'", "not a regular file", NULL);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_single_file),
		cmocka_unit_test(test_folder_single),
		cmocka_unit_test(test_config_invalid),
		cmocka_unit_test(test_sharded),
		cmocka_unit_test(test_open_index_file),
		cmocka_unit_test(test_sharded_missing_shard),
		cmocka_unit_test(test_sharded_tensor_missing),
		cmocka_unit_test(test_sharded_tensor_unlisted),
		cmocka_unit_test(test_sharded_wrong_shard),
		cmocka_unit_test(test_sharded_duplicate),
		cmocka_unit_test(test_sharded_bad_index),
		cmocka_unit_test(test_sharded_bad_shard_header),
		cmocka_unit_test(test_both_single_and_shards),
		cmocka_unit_test(test_index_naming_model_safetensors),
		cmocka_unit_test(test_several_files),
		cmocka_unit_test(test_no_files),
		cmocka_unit_test(test_empty_folder),
		cmocka_unit_test(test_nonexistent),
		cmocka_unit_test(test_no_tensors),
		cmocka_unit_test(test_symlinks),
		cmocka_unit_test(test_symlink_loop),
		cmocka_unit_test(test_unreadable),
		cmocka_unit_test(test_shard_is_folder),
	};
	int ret = cmocka_run_group_tests(tests, NULL, NULL);
	test_cleanup_tmpdir();
	return ret;
}

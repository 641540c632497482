/* test_plan.c - the conversion plan (scheme rules, --keep, raw tensors,
 * row-chunks within the window, fingerprints) and the FIFO window ring. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"
#include "window.h"

/* A hand-built checkpoint: plan reads only these fields. */
static struct qs_st_shard shard = {.name = "model.safetensors", .size = 1, .mtime_ns = 7};
static struct qs_st_tensor tensors[] = {
	{.name = "model.embed_tokens.weight", .dtype = QS_DTYPE_BF16, .ndim = 2,
	 .shape = {1024, 256}},
	{.name = "model.layers.0.input_layernorm.weight", .dtype = QS_DTYPE_BF16, .ndim = 1,
	 .shape = {256}},
	{.name = "model.layers.0.mlp.up_proj.weight", .dtype = QS_DTYPE_BF16, .ndim = 2,
	 .shape = {4096, 256}},
	{.name = "lm_head.weight", .dtype = QS_DTYPE_F32, .ndim = 2, .shape = {1024, 256}},
	{.name = "position_ids", .dtype = QS_DTYPE_I64, .ndim = 2, .shape = {1, 64}},
	{.name = "empty.weight", .dtype = QS_DTYPE_BF16, .ndim = 2, .shape = {0, 64}},
};
#define NT (sizeof(tensors) / sizeof(tensors[0]))

static struct qs_checkpoint ckpt = {.shards = &shard, .nshards = 1, .tensors = tensors,
				    .ntensors = NT};

static void fix_sizes(void)
{
	for (size_t i = 0; i < NT; i++) {
		uint64_t n = qs_dtype_size(tensors[i].dtype);
		for (uint32_t d = 0; d < tensors[i].ndim; d++)
			n *= tensors[i].shape[d];
		tensors[i].nbytes = n;
	}
}

static int build(struct qs_plan *plan, const char **schemes, size_t ns, const char **keeps,
		 size_t nk, uint64_t memory, struct qs_diag *d)
{
	struct qs_convert_opts o = {.schemes = schemes, .nschemes = ns, .keeps = keeps,
				    .nkeeps = nk, .memory = memory};
	return qs_plan_build(&ckpt, &o, memory, plan, d);
}

static void test_rules_last_match_wins(void **state)
{
	(void)state;
	const char *schemes[] = {"rtn:bits=3,group=64", "lm_head=rtn:bits=8",
				 "mlp\\..*_proj=rtn:bits=2"};
	const char *keeps[] = {"embed_tokens"};
	struct qs_plan plan;
	struct qs_diag d;
	assert_int_equal(build(&plan, schemes, 3, keeps, 1, 256 << 20, &d), 0);
	assert_true(plan.tensors[0].raw);                       /* --keep */
	assert_true(plan.tensors[1].raw);                       /* 1-D */
	assert_false(plan.tensors[2].raw);
	assert_string_equal(plan.tensors[2].scheme.text, "rtn:bits=2,group=128");
	assert_string_equal(plan.tensors[3].scheme.text, "rtn:bits=8,group=128");
	assert_true(plan.tensors[4].raw);                       /* integer dtype */
	assert_int_equal(plan.tensors[5].nchunks, 0);           /* zero-size */
	assert_non_null(strstr(plan.options_text, "--scheme lm_head=rtn:bits=8"));
	qs_plan_release(&plan);
}

static void test_default_is_rtn(void **state)
{
	(void)state;
	struct qs_plan plan;
	struct qs_diag d;
	assert_int_equal(build(&plan, NULL, 0, NULL, 0, 256 << 20, &d), 0);
	assert_string_equal(plan.tensors[2].scheme.text, "rtn:bits=4,group=128");
	assert_false(plan.tensors[0].raw);
	qs_plan_release(&plan);
}

static void test_bad_rules(void **state)
{
	(void)state;
	struct qs_plan plan;
	struct qs_diag d;
	const char *bad_regex[] = {"(=rtn"};
	assert_int_equal(build(&plan, bad_regex, 1, NULL, 0, 256 << 20, &d), -QS_EUSAGE);
	assert_non_null(strstr(d.msg, "regular expression"));
	const char *bad_scheme[] = {"lm_head=nosuch"};
	assert_int_equal(build(&plan, bad_scheme, 1, NULL, 0, 256 << 20, &d), -QS_EUSAGE);
	const char *bad_keep[] = {"[a-"};
	assert_int_equal(build(&plan, NULL, 0, bad_keep, 1, 256 << 20, &d), -QS_EUSAGE);
}

static void test_chunks_cover_rows_and_fit(void **state)
{
	(void)state;
	struct qs_plan plan;
	struct qs_diag d;
	/* a small window forces several chunks per tensor */
	uint64_t memory = 4 << 20;
	assert_int_equal(build(&plan, NULL, 0, NULL, 0, memory, &d), 0);
	for (size_t i = 0; i < NT; i++) {
		const struct qs_plan_tensor *t = &plan.tensors[i];
		uint64_t rows = 0;
		for (uint32_t c = 0; c < t->nchunks; c++) {
			struct qs_chunk_footprint fp;
			uint64_t r = qs_plan_chunk_rows(t, c);
			assert_true(r >= 1);
			qs_plan_footprint(t, r, &fp);
			assert_true(fp.total <= memory);
			rows += r;
		}
		assert_int_equal(rows, t->nchunks ? t->rows : 0);
	}
	assert_true(plan.tensors[2].nchunks > 1);
	qs_plan_release(&plan);
}

static void test_window_too_small_names_tensor(void **state)
{
	(void)state;
	struct qs_plan plan;
	struct qs_diag d;
	assert_int_equal(build(&plan, NULL, 0, NULL, 0, 8192, &d), -QS_ENOMEM_WINDOW);
	assert_non_null(strstr(d.msg, "'model.embed_tokens.weight'"));
	assert_non_null(strstr(d.msg, "MiB"));
}

static void test_fingerprints(void **state)
{
	(void)state;
	struct qs_plan a, b;
	struct qs_diag d;
	const char *s3[] = {"rtn:bits=3"};
	assert_int_equal(build(&a, NULL, 0, NULL, 0, 256 << 20, &d), 0);
	assert_int_equal(build(&b, s3, 1, NULL, 0, 256 << 20, &d), 0);
	assert_int_equal(a.input_fp, b.input_fp);
	assert_int_not_equal(a.options_fp, b.options_fp);
	qs_plan_release(&b);
	shard.mtime_ns++;  /* a touched shard is a different input */
	assert_int_equal(build(&b, NULL, 0, NULL, 0, 256 << 20, &d), 0);
	assert_int_not_equal(a.input_fp, b.input_fp);
	assert_int_equal(a.options_fp, b.options_fp);
	shard.mtime_ns--;
	qs_plan_release(&a);
	qs_plan_release(&b);
}

static void test_window_fifo_ring(void **state)
{
	(void)state;
	struct qs_window w;
	struct qs_window_span s[4];
	assert_int_equal(qs_window_init(&w, 1000), 0);
	assert_int_equal(qs_window_alloc(&w, 1001, false, &s[0]), -E2BIG);
	assert_int_equal(qs_window_alloc(&w, 400, false, &s[0]), 0);
	assert_int_equal(qs_window_alloc(&w, 400, false, &s[1]), 0);
	/* 200 left at the end: a 300-byte request must wrap and wait */
	assert_int_equal(qs_window_alloc(&w, 300, false, &s[2]), -EAGAIN);
	qs_window_free(&w, &s[0]);
	assert_int_equal(qs_window_alloc(&w, 300, false, &s[2]), 0);
	assert_ptr_equal(s[2].ptr, w.base);          /* wrapped to the start */
	assert_int_equal(s[2].consumed, 200 + 300);  /* the skipped tail counts */
	/* spans never overlap: [400,800) and [0,300) are live */
	assert_true(s[1].ptr >= s[2].ptr + 300);
	assert_int_equal(qs_window_alloc(&w, 200, false, &s[3]), -EAGAIN);
	qs_window_free(&w, &s[1]);
	qs_window_free(&w, &s[2]);
	assert_int_equal(w.used, 0);
	assert_true(w.peak <= w.size);
	qs_window_close(&w);
	assert_int_equal(qs_window_alloc(&w, 10, true, &s[3]), -ECANCELED);
	qs_window_release(&w);
}

int main(void)
{
	fix_sizes();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rules_last_match_wins),
		cmocka_unit_test(test_default_is_rtn),
		cmocka_unit_test(test_bad_rules),
		cmocka_unit_test(test_chunks_cover_rows_and_fit),
		cmocka_unit_test(test_window_too_small_names_tensor),
		cmocka_unit_test(test_fingerprints),
		cmocka_unit_test(test_window_fifo_ring),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

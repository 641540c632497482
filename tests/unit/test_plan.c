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

/* A second checkpoint: stacked experts, an FP8 weight with block scales,
 * its scale, and a MoE router. */
static struct qs_st_tensor moe_tensors[] = {
	{.name = "model.layers.0.mlp.experts.up_proj.weight", .dtype = QS_DTYPE_BF16, .ndim = 3,
	 .shape = {3, 1000, 256}},
	{.name = "model.layers.0.mlp.experts.0.down_proj.weight", .dtype = QS_DTYPE_F8_E4M3,
	 .ndim = 2, .shape = {1000, 300}},
	{.name = "model.layers.0.mlp.experts.0.down_proj.weight_scale_inv",
	 .dtype = QS_DTYPE_F32, .ndim = 2, .shape = {8, 3}},
	{.name = "model.layers.0.mlp.gate.weight", .dtype = QS_DTYPE_BF16, .ndim = 2,
	 .shape = {3, 256}},
};
#define NMOE (sizeof(moe_tensors) / sizeof(moe_tensors[0]))
static struct qs_checkpoint moe_ckpt = {.shards = &shard, .nshards = 1,
					.tensors = moe_tensors, .ntensors = NMOE};

static int build_moe(struct qs_plan *plan, const char **schemes, size_t ns, const char **keeps,
		     size_t nk, uint64_t memory, struct qs_diag *d)
{
	for (size_t i = 0; i < NMOE; i++) {
		uint64_t n = qs_dtype_size(moe_tensors[i].dtype);
		for (uint32_t dd = 0; dd < moe_tensors[i].ndim; dd++)
			n *= moe_tensors[i].shape[dd];
		moe_tensors[i].nbytes = n;
		moe_tensors[i].offset = 4096 * (i + 1) * 1000;
	}
	struct qs_convert_opts o = {.schemes = schemes, .nschemes = ns, .keeps = keeps,
				    .nkeeps = nk, .memory = memory};
	return qs_plan_build(&moe_ckpt, &o, memory, plan, d);
}

/* Chunks of a stacked [E, rows, cols] tensor never span two experts and
 * cover every row once; FP8 chunks start on 128-row block boundaries and
 * read exactly their block rows of the scale; the scale is consumed and
 * the router kept. */
static void test_experts_and_fp8_chunks(void **state)
{
	(void)state;
	struct qs_plan plan;
	struct qs_diag d;
	/* 1 MiB of --memory: chunks far smaller than one expert */
	assert_int_equal(build_moe(&plan, NULL, 0, NULL, 0, 1 << 20, &d), 0);
	const struct qs_plan_tensor *e = &plan.tensors[0];
	assert_int_equal(e->matrix_rows, 1000);
	assert_true(e->rows_per_chunk < 1000 && 1000 % e->rows_per_chunk != 0);
	uint64_t next = 0;
	for (uint32_t c = 0; c < e->nchunks; c++) {
		uint64_t b = qs_plan_chunk_begin(e, c), r = qs_plan_chunk_rows(e, c);
		assert_int_equal(b, next);
		assert_int_equal(b / 1000, (b + r - 1) / 1000);  /* one expert */
		next = b + r;
	}
	assert_int_equal(next, 3000);

	const struct qs_plan_tensor *w = &plan.tensors[1];
	assert_false(w->raw);
	assert_ptr_equal(w->companion, &moe_tensors[2]);
	assert_int_equal(w->pairing.enc, QS_SRC_FP8_BLOCK);
	assert_int_equal(w->rows_per_chunk % 128, 0);
	assert_true(w->nchunks > 1);
	uint64_t scale_bytes = 0;
	for (uint32_t c = 0; c < w->nchunks; c++) {
		uint64_t off, len, r = qs_plan_chunk_rows(w, c);
		assert_int_equal(qs_plan_chunk_begin(w, c) % 128, 0);
		qs_plan_chunk_aux(w, c, &off, &len);
		/* 3 scale columns of f32 per 128-row block row */
		assert_int_equal(off, moe_tensors[2].offset + qs_plan_chunk_begin(w, c) / 128 * 12);
		assert_int_equal(len, (r + 127) / 128 * 12);
		scale_bytes += len;
	}
	assert_int_equal(scale_bytes, moe_tensors[2].nbytes);
	assert_true(plan.tensors[2].consumed);
	assert_int_equal(plan.tensors[2].nchunks, 0);
	assert_true(plan.tensors[3].raw);  /* the router */
	qs_plan_release(&plan);

	/* kept FP8 weight: its scale is kept beside it, raw */
	const char *keeps[] = {"down_proj"};
	const char *router[] = {"mlp\\.gate=rtn:bits=8"};
	assert_int_equal(build_moe(&plan, router, 1, keeps, 1, 1 << 20, &d), 0);
	assert_true(plan.tensors[1].raw);
	assert_null(plan.tensors[1].companion);
	assert_true(plan.tensors[2].raw);
	assert_false(plan.tensors[2].consumed);
	assert_false(plan.tensors[3].raw);  /* a rule names the router */
	qs_plan_release(&plan);

	/* a misshapen scale names both tensors */
	moe_tensors[2].shape[0] = 7;
	assert_int_equal(build_moe(&plan, NULL, 0, NULL, 0, 1 << 20, &d), -QS_EFORMAT);
	assert_non_null(strstr(d.msg, "'model.layers.0.mlp.experts.0.down_proj.weight'"));
	assert_non_null(strstr(d.msg, "'model.layers.0.mlp.experts.0.down_proj.weight_scale_inv'"));
	moe_tensors[2].shape[0] = 8;
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
	assert_int_equal(qs_window_init(&w, 1000, 0, 0), 0);
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
	assert_int_equal(w.ring.used, 0);
	assert_true(w.peak <= w.size);
	qs_window_close(&w);
	assert_int_equal(qs_window_alloc(&w, 10, true, &s[3]), -ECANCELED);
	qs_window_release(&w);
}

/* qs_plan_memory's ring figure is where the real window places the
 * chunks: replay every chunk's footprint through qs_window_alloc on a ring
 * of the size the pipeline maps, freeing the oldest only when a chunk must
 * wait (a reader ahead of the workers keeps it from emptying), and compare
 * the farthest byte reached.  With rtn, and with adpq: a one-pass adpq
 * tensor runs no preparation, so it does not start on an empty ring
 * either (qs_plan_needs_prep). */
static void plan_memory_replay(const char **schemes, size_t ns, uint64_t memory, bool wraps)
{
	struct qs_plan plan;
	struct qs_diag d;
	assert_int_equal(build(&plan, schemes, ns, NULL, 0, memory, &d), 0);
	unsigned threads = 2;
	uint32_t from[NT], end[NT];
	for (size_t i = 0; i < NT; i++) {
		from[i] = 0;
		end[i] = plan.tensors[i].nchunks;
	}
	struct qs_plan_memory m;
	qs_plan_memory(&plan, threads, from, end, 1000, 0, 7, &m);
	uint64_t size = qs_plan_ring_in_use(&plan, threads);
	assert_true(m.ring > 0 && m.ring <= size);
	assert_int_equal(m.baseline, 1000);
	assert_int_equal(m.threads, 2 * 7);  /* no second-order scheme: no reader part */
	assert_int_equal(m.total, m.ring + m.state + m.zstd + m.threads + m.baseline);

	struct qs_window w;
	assert_int_equal(qs_window_init(&w, size, 0, 0), 0);
	struct qs_window_span live[4096];
	size_t head = 0, tail = 0;
	uint64_t reach = 0, allocated = 0;
	for (size_t i = 0; i < NT; i++)
		for (uint32_t c = 0; c < plan.tensors[i].nchunks; c++) {
			struct qs_chunk_footprint fp;
			qs_plan_chunk_buffers(&plan.tensors[i], qs_plan_chunk_rows(&plan.tensors[i], c),
					  &fp);
			/* free the oldest until it fits, never the last one left */
			while (qs_window_alloc(&w, fp.total, false, &live[head % 4096]) == -EAGAIN) {
				assert_true(head - tail > 1);
				qs_window_free(&w, &live[tail++ % 4096]);
			}
			allocated += fp.total;
			uint64_t at = (uint64_t)(live[head % 4096].ptr - w.base) + fp.total;
			if (at > reach)
				reach = at;
			head++;
		}
	assert_int_equal(reach, m.ring);
	assert_true((allocated > size) == wraps);  /* when it wrapped, placement mattered */
	while (tail < head)
		qs_window_free(&w, &live[tail++ % 4096]);
	assert_int_equal(qs_window_wait_empty(&w), 0);
	qs_window_close(&w);
	assert_int_equal(qs_window_wait_empty(&w), -ECANCELED);
	qs_window_release(&w);
	qs_plan_release(&plan);
}

static void test_plan_memory_is_the_windows_placement(void **state)
{
	(void)state;
	plan_memory_replay(NULL, 0, 4 << 20, true);
	/* one chunk a tensor: each lands after the one before it */
	const char *adpq[] = {"adpq:bits=3,group=64"};
	plan_memory_replay(adpq, 1, 4 << 20, true);
	plan_memory_replay(adpq, 1, 256 << 20, false);
}

/* A one-pass tensor (rtn, or adpq with no statistics: its quantize_src)
 * gets one f32 row of work buffer, not the chunk's; its chunks are still
 * cut by the full footprint (the bytes do not depend on the path).  daq,
 * and adpq once it loads a Hessian, decode the whole chunk. */
static void test_one_pass_work_is_one_row(void **state)
{
	(void)state;
	const char *schemes[] = {"adpq:bits=3", "lm_head=daq:bits=4", "embed_tokens=rtn:bits=4"};
	struct qs_plan plan;
	struct qs_diag d;
	assert_int_equal(build(&plan, schemes, 3, NULL, 0, 256 << 20, &d), 0);
	static const struct {
		size_t tensor;
		bool one_pass;
	} want[] = {{0, true}, {2, true}, {3, false}};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		struct qs_plan_tensor *t = &plan.tensors[want[i].tensor];
		uint64_t rows = qs_plan_chunk_rows(t, 0);
		struct qs_chunk_footprint full, buf;
		qs_plan_footprint(t, rows, &full);
		qs_plan_chunk_buffers(t, rows, &buf);
		assert_true(rows > 1);
		assert_int_equal(qs_plan_one_pass(t), want[i].one_pass);
		uint64_t work = want[i].one_pass ? QS_BUF_ALIGN : full.work;  /* 256 floats */
		assert_int_equal(buf.work, work);
		assert_int_equal(buf.total, full.total - (full.work - work));
	}
	/* adpq's preparation holds nothing without statistics: not run */
	assert_true(plan.tensors[2].prep_total > 0);
	assert_false(qs_plan_needs_prep(&plan.tensors[2]));
	assert_false(qs_plan_needs_prep(&plan.tensors[0]));  /* rtn: none */
	assert_false(qs_plan_needs_prep(&plan.tensors[3]));  /* daq, no statistics */
	plan.tensors[3].scheme.stats = QS_WANT_IMPORTANCE;   /* daq --importance */
	assert_true(qs_plan_needs_prep(&plan.tensors[3]));
	assert_false(qs_plan_one_pass(&plan.tensors[3]));    /* no quantize_src */
	plan.tensors[2].scheme.stats = QS_WANT_HESSIAN;  /* adpq --hessian */
	assert_false(qs_plan_one_pass(&plan.tensors[2]));
	assert_true(qs_plan_needs_prep(&plan.tensors[2]));
	qs_plan_release(&plan);
}

int main(void)
{
	fix_sizes();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rules_last_match_wins),
		cmocka_unit_test(test_default_is_rtn),
		cmocka_unit_test(test_one_pass_work_is_one_row),
		cmocka_unit_test(test_bad_rules),
		cmocka_unit_test(test_chunks_cover_rows_and_fit),
		cmocka_unit_test(test_window_too_small_names_tensor),
		cmocka_unit_test(test_experts_and_fp8_chunks),
		cmocka_unit_test(test_fingerprints),
		cmocka_unit_test(test_window_fifo_ring),
		cmocka_unit_test(test_plan_memory_is_the_windows_placement),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

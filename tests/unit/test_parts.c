/* test_parts.c - convert --part K/N slicing (parts.c) and part file names
 * (part_id.c): every chunk of the plan in exactly one part, in order, empty
 * tensors once, balanced by work (second-order schemes by rows x cols^2),
 * the piece that ends a split tensor reading from its first row. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "container.h"
#include "parts.h"

static struct qs_st_tensor srcs[64];

/* A plan of n tensors, raw, with chunk counts and sizes from a fixed LCG. */
static void make_plan(struct qs_plan *plan, struct qs_plan_tensor *ts, size_t n,
		      unsigned seed)
{
	memset(plan, 0, sizeof(*plan));
	memset(ts, 0, n * sizeof(*ts));
	uint32_t x = seed;
	for (size_t i = 0; i < n; i++) {
		x = x * 1664525u + 1013904223u;
		struct qs_plan_tensor *t = &ts[i];
		t->src = &srcs[i];
		t->raw = true;
		t->cols = 64 + (x >> 24);
		t->row_bytes = t->cols * 2;
		/* every fifth tensor is empty, the others 1..9 chunks, the last
		 * chunk shorter */
		if (i % 5 == 3 || i % 11 == 6) {
			/* empty, or (i % 11 == 6) a scale consumed by its FP8
			 * weight: no chunks, and no record either */
			t->rows = 0;
			t->consumed = i % 11 == 6;
		} else {
			t->rows_per_chunk = 1 + ((x >> 8) & 63);
			t->rows = t->rows_per_chunk * (1 + ((x >> 16) % 9)) - ((x >> 4) & 1);
			if (t->rows == 0)
				t->rows = 1;
		}
		t->nchunks = t->rows ? (uint32_t)((t->rows + t->rows_per_chunk - 1) /
						  t->rows_per_chunk)
				     : 0;
		t->matrix_rows = t->rows;  /* one matrix (2-D) */
		plan->total_chunks += t->nchunks;
	}
	plan->tensors = ts;
	plan->ntensors = n;
}

static void test_slices_cover_plan_once(void **state)
{
	(void)state;
	struct qs_plan plan;
	struct qs_plan_tensor ts[40];
	for (unsigned seed = 1; seed <= 5; seed++) {
		make_plan(&plan, ts, 40, seed);
		for (unsigned n = 1; n <= 9; n++) {
			/* the next (tensor, chunk) the parts must hold, in order */
			size_t next_t = 0;
			uint32_t next_c = 0;
			uint64_t max_unit = 0, total = 0, sum = 0;
			for (size_t i = 0; i < 40; i++)
				for (uint32_t c = 0; c < ts[i].nchunks; c++) {
					uint64_t u = qs_part_chunk_cost(&ts[i], c);
					max_unit = u > max_unit ? u : max_unit;
					total += u;
				}
			for (unsigned k = 1; k <= n; k++) {
				struct qs_part_slice s;
				assert_int_equal(qs_part_slice(&plan, k, n, &s), 0);
				assert_int_equal(s.total_cost, total);
				uint64_t cost = 0;
				/* a consumed scale never begins or ends a slice */
				if (s.tensor_begin < s.tensor_end) {
					assert_false(ts[s.tensor_begin].consumed);
					assert_false(ts[s.tensor_end - 1].consumed);
				}
				for (size_t ti = s.tensor_begin; ti < s.tensor_end; ti++) {
					uint32_t b, e, rf;
					if (ts[ti].consumed)
						continue;
					while (ts[next_t].consumed)
						next_t++;
					qs_part_tensor_chunks(&s, &plan, ti, &b, &e, &rf);
					assert_int_equal(ti, next_t);
					assert_int_equal(b, next_c);
					assert_true(e >= b && e <= ts[ti].nchunks);
					assert_true(e > b || ts[ti].nchunks == 0);
					/* only the piece ending a split tensor reads from 0 */
					if (e == ts[ti].nchunks)
						assert_int_equal(rf, 0);
					else
						assert_int_equal(rf, b);
					for (uint32_t c = b; c < e; c++)
						cost += qs_part_chunk_cost(&ts[ti], c);
					if (e == ts[ti].nchunks) {
						next_t = ti + 1;
						next_c = 0;
					} else {
						next_c = e;
					}
				}
				sum += cost;
				/* within one chunk of the ideal share each way */
				double ideal = (double)total / n;
				assert_true((double)cost <= ideal + 2.0 * (double)max_unit);
				assert_true((double)cost + 2.0 * (double)max_unit >= ideal);
			}
			while (next_t < 40 && ts[next_t].consumed)
				next_t++;
			assert_int_equal(next_t, 40);
			assert_int_equal(sum, total);
		}
	}
}

static void test_second_order_weighs_cols_squared(void **state)
{
	(void)state;
	struct qs_plan plan;
	struct qs_plan_tensor ts[2];
	make_plan(&plan, ts, 2, 9);
	/* the same bytes and chunks; the second is gptq on 4096 columns */
	for (int i = 0; i < 2; i++) {
		ts[i].cols = 4096;
		ts[i].row_bytes = 8192;
		ts[i].rows = ts[i].matrix_rows = 64;
		ts[i].rows_per_chunk = 8;
		ts[i].nchunks = 8;
	}
	ts[1].raw = false;
	ts[1].scheme.ops = &qs_scheme_gptq;
	assert_true(qs_part_second_order(&ts[1]));
	assert_false(qs_part_second_order(&ts[0]));
	assert_true(qs_part_chunk_cost(&ts[1], 0) > 100 * qs_part_chunk_cost(&ts[0], 0));
	struct qs_part_slice s;
	assert_int_equal(qs_part_slice(&plan, 1, 2, &s), 0);
	/* by bytes the cut would fall between the tensors; by work it falls
	 * inside the gptq tensor, near its middle */
	assert_int_equal(s.tensor_begin, 0);
	assert_int_equal(s.tensor_end, 2);
	assert_true(s.chunk_end >= 3 && s.chunk_end <= 4);
	assert_int_equal(qs_part_slice(&plan, 2, 2, &s), 0);
	assert_int_equal(s.tensor_begin, 1);
	/* the piece ending the split tensor reads its first rows for the checksum */
	uint32_t b, e, rf;
	qs_part_tensor_chunks(&s, &plan, 1, &b, &e, &rf);
	assert_int_equal(e, 8);
	assert_int_equal(rf, 0);
	assert_int_equal(s.hash_bytes, (uint64_t)b * 8 * 8192);
}

static void test_more_parts_than_chunks(void **state)
{
	(void)state;
	struct qs_plan plan;
	struct qs_plan_tensor ts[3];
	make_plan(&plan, ts, 3, 4);
	unsigned n = (unsigned)plan.total_chunks + 5, empty = 0;
	uint64_t chunks = 0;
	for (unsigned k = 1; k <= n; k++) {
		struct qs_part_slice s;
		assert_int_equal(qs_part_slice(&plan, k, n, &s), 0);
		empty += s.tensor_begin == s.tensor_end;
		chunks += s.chunks;
	}
	/* some parts are empty (and merge accepts them), none is lost */
	assert_true(empty >= 5);
	assert_int_equal(chunks, plan.total_chunks);
}

static void test_bad_part_numbers(void **state)
{
	(void)state;
	struct qs_plan plan;
	struct qs_plan_tensor ts[3];
	struct qs_part_slice s;
	make_plan(&plan, ts, 3, 4);
	assert_int_equal(qs_part_slice(&plan, 0, 3, &s), -QS_EUSAGE);
	assert_int_equal(qs_part_slice(&plan, 4, 3, &s), -QS_EUSAGE);
	assert_int_equal(qs_part_slice(&plan, 1, 0, &s), -QS_EUSAGE);
	assert_int_equal(qs_part_slice(&plan, 1, QS_PART_MAX + 1, &s), -QS_EUSAGE);
}

static void test_part_id(void **state)
{
	(void)state;
	unsigned k, n;
	size_t pl;
	const char *o = "format=1 --scheme rtn level=1 chunk=65536 part=2/7";
	assert_true(qs_part_id_parse(o, &k, &n, &pl));
	assert_int_equal(k, 2);
	assert_int_equal(n, 7);
	assert_int_equal(pl, strlen("format=1 --scheme rtn level=1 chunk=65536"));
	assert_false(qs_part_id_parse("format=1 level=1 chunk=65536", &k, &n, &pl));
	assert_false(qs_part_id_parse("x part=0/3", NULL, NULL, NULL));
	assert_false(qs_part_id_parse("x part=4/3", NULL, NULL, NULL));
	assert_false(qs_part_id_parse("x part=02/3", NULL, NULL, NULL));
	assert_false(qs_part_id_parse("x part=2/3x", NULL, NULL, NULL));
	assert_false(qs_part_id_parse("x part=2/", NULL, NULL, NULL));
	char *with = qs_part_id_options("format=1 chunk=9", 3, 4);
	assert_string_equal(with, "format=1 chunk=9 part=3/4");
	free(with);

	char buf[64];
	assert_int_equal(qs_part_path("dir/model.qshard", 2, 4, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "dir/model.part-2-of-4.qshard");
	assert_int_equal(qs_part_path("out", 10, 12, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "out.part-10-of-12.qshard");
	assert_int_equal(qs_part_path("out", 3, 2, buf, sizeof(buf)), -QS_EUSAGE);
	assert_int_equal(qs_part_path("a-very-long-output-name-indeed-.qshard", 1, 2, buf, 16),
			 -QS_ETOOBIG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_slices_cover_plan_once),
		cmocka_unit_test(test_second_order_weighs_cols_squared),
		cmocka_unit_test(test_more_parts_than_chunks),
		cmocka_unit_test(test_bad_part_numbers),
		cmocka_unit_test(test_part_id),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_hessian.c - the --hessian reader: full and diagonal entries under
 * their three key forms, missing entries, wrong dtype or shape; per-expert
 * Hessians of stacked MoE tensors, stacked or under per-expert names. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib.h"
#include "qshard.h"
#include "test_util.h"

static const char *path;

static void put_f32(uint8_t *p, float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(u >> (8 * i));
}

static int setup(void **state)
{
	(void)state;
	const char *json =
		"{\"a.weight.hessian\":{\"dtype\":\"F32\",\"shape\":[4,4],\"data_offsets\":[0,64]},"
		"\"b.weight.hessian_diag\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[64,76]},"
		"\"c.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[76,92]},"
		"\"d.weight\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[92,100]},"
		"\"e.weight.hessian\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[100,124]},"
		"\"__metadata__\":{\"tokens\":\"512\"}}";
	size_t jl = strlen(json), total = 8 + jl + 124;
	uint8_t *buf = calloc(1, total);
	for (int i = 0; i < 8; i++)
		buf[i] = (uint8_t)((uint64_t)jl >> (8 * i));
	memcpy(buf + 8, json, jl);
	uint8_t *d = buf + 8 + jl;
	for (int i = 0; i < 16; i++)
		put_f32(d + 4 * i, (float)(i + 1));
	for (int i = 0; i < 3; i++)
		put_f32(d + 64 + 4 * i, 10.0f * (float)(i + 1));
	for (int i = 0; i < 4; i++)
		put_f32(d + 76 + 4 * i, -(float)i);
	path = test_path("h.safetensors");
	test_write_file(path, buf, total);
	free(buf);
	return 0;
}

static void test_entries(void **state)
{
	(void)state;
	struct qs_hessian *h;
	struct qs_diag d = { 0 };
	assert_int_equal(qs_hessian_open(path, &h, &d), 0);
	float m[16];
	bool dg = true;

	assert_int_equal(qs_hessian_get(h, "a.weight", 4, m, &dg, &d), 1);
	assert_false(dg);
	for (int i = 0; i < 16; i++)
		assert_true(m[i] == (float)(i + 1));

	float md[9];
	memset(md, 0x7f, sizeof(md));
	assert_int_equal(qs_hessian_get(h, "b.weight", 3, md, &dg, &d), 1);
	assert_true(dg);
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++)
			assert_true(md[i * 3 + j] == (i == j ? 10.0f * (float)(i + 1) : 0.0f));

	assert_int_equal(qs_hessian_get(h, "c.weight", 2, m, &dg, &d), 1);
	assert_false(dg);
	assert_true(m[3] == -3.0f);

	/* missing: 0, and a prefix is not a match */
	assert_int_equal(qs_hessian_get(h, "x.weight", 4, m, &dg, &d), 0);
	assert_int_equal(qs_hessian_get(h, "a.weigh", 4, m, &dg, &d), 0);
	assert_int_equal(qs_hessian_get(h, "b.weight.hessian", 3, m, &dg, &d), 0);

	assert_int_equal(qs_hessian_get(h, "d.weight", 2, m, &dg, &d), -QS_EFORMAT);
	assert_non_null(strstr(d.msg, path));
	assert_non_null(strstr(d.msg, "tensor 'd.weight'"));
	assert_non_null(strstr(d.msg, "F16[2, 2]"));

	assert_int_equal(qs_hessian_get(h, "e.weight", 3, m, &dg, &d), -QS_EFORMAT);
	assert_non_null(strstr(d.msg, "tensor 'e.weight.hessian'"));
	assert_non_null(strstr(d.msg, "expected F32[3, 3] or F32[3]"));

	/* right entry, wrong cols for this tensor */
	assert_int_equal(qs_hessian_get(h, "a.weight", 3, m, &dg, &d), -QS_EFORMAT);
	qs_hessian_free(h);
}

static void test_open_errors(void **state)
{
	(void)state;
	struct qs_hessian *h = (void *)1;
	struct qs_diag d = { 0 };
	assert_true(qs_hessian_open(test_path("nope.safetensors"), &h, &d) < 0);
	assert_null(h);
	assert_non_null(strstr(d.msg, "nope.safetensors"));
	const char *bad = test_path("bad.safetensors");
	test_write_file(bad, "\x02\0\0\0\0\0\0\0{x", 10);
	assert_true(qs_hessian_open(bad, &h, &d) < 0);
	assert_null(h);
	qs_hessian_free(NULL);
}

static void test_experts(void **state)
{
	(void)state;
	const char *json =
		"{\"m.experts.up.weight\":{\"dtype\":\"F32\",\"shape\":[2,2,2],\"data_offsets\":[0,32]},"
		"\"n.experts.0.up.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[32,48]},"
		"\"n.experts.1.up.weight.hessian_diag\":{\"dtype\":\"F32\",\"shape\":[2],"
		"\"data_offsets\":[48,56]},"
		"\"q.experts.up.weight.hessian_diag\":{\"dtype\":\"F32\",\"shape\":[3,2],"
		"\"data_offsets\":[56,80]}}";
	size_t jl = strlen(json), total = 8 + jl + 80;
	uint8_t *buf = calloc(1, total);
	for (int i = 0; i < 8; i++)
		buf[i] = (uint8_t)((uint64_t)jl >> (8 * i));
	memcpy(buf + 8, json, jl);
	for (int i = 0; i < 20; i++)
		put_f32(buf + 8 + jl + 4 * i, (float)(i + 1));
	const char *ep = test_path("experts.safetensors");
	test_write_file(ep, buf, total);
	free(buf);

	struct qs_hessian *h;
	struct qs_diag d = { 0 };
	float m[4];
	bool dg;
	assert_int_equal(qs_hessian_open(ep, &h, &d), 0);
	assert_true(qs_hessian_has_experts(h, "m.experts.up.weight"));
	assert_true(qs_hessian_has_experts(h, "n.experts.up.weight"));
	assert_true(qs_hessian_has_experts(h, "q.experts.up.weight"));
	assert_false(qs_hessian_has_experts(h, "r.experts.up.weight"));
	assert_false(qs_hessian_has_experts(h, "m.up.weight"));
	/* stacked: expert 1 is the second matrix */
	assert_int_equal(qs_hessian_get_expert(h, "m.experts.up.weight", 1, 2, 2, m, &dg, &d), 1);
	assert_false(dg);
	assert_true(m[0] == 5.0f && m[1] == 6.0f && m[2] == 7.0f && m[3] == 8.0f);
	/* stacked for another expert count: an error naming file and tensor */
	assert_int_equal(qs_hessian_get_expert(h, "m.experts.up.weight", 0, 3, 2, m, &dg, &d),
			 -QS_EFORMAT);
	assert_non_null(strstr(d.msg, "experts.safetensors"));
	assert_non_null(strstr(d.msg, "m.experts.up.weight"));
	/* per-expert names: full, diagonal, missing */
	assert_int_equal(qs_hessian_get_expert(h, "n.experts.up.weight", 0, 3, 2, m, &dg, &d), 1);
	assert_true(!dg && m[0] == 9.0f && m[3] == 12.0f);
	assert_int_equal(qs_hessian_get_expert(h, "n.experts.up.weight", 1, 3, 2, m, &dg, &d), 1);
	assert_true(dg && m[0] == 13.0f && m[1] == 0.0f && m[2] == 0.0f && m[3] == 14.0f);
	assert_int_equal(qs_hessian_get_expert(h, "n.experts.up.weight", 2, 3, 2, m, &dg, &d), 0);
	/* stacked diagonals: expert 2's row */
	assert_int_equal(qs_hessian_get_expert(h, "q.experts.up.weight", 2, 3, 2, m, &dg, &d), 1);
	assert_true(dg && m[0] == 19.0f && m[1] == 0.0f && m[3] == 20.0f);
	qs_hessian_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_entries),
		cmocka_unit_test(test_experts),
		cmocka_unit_test(test_open_errors),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}

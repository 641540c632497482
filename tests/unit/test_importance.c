/* test_importance.c - importance files: llama.cpp imatrix GGUF and legacy
 * .dat (built byte by byte here) and safetensors; name mapping, expert
 * merging, missing entries, size errors and malformed files. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib.h"
#include "test_util.h"
#include "util.h"

/* ---- a growing byte buffer ---- */
struct buf {
	uint8_t *p;
	size_t n, cap;
};
static void put(struct buf *b, const void *d, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
		assert_non_null(b->p);
	}
	memcpy(b->p + b->n, d, n);
	b->n += n;
}
static void u32(struct buf *b, uint32_t v)
{
	uint8_t t[4];
	qs_put_le32(t, v);
	put(b, t, 4);
}
static void u64(struct buf *b, uint64_t v)
{
	uint8_t t[8];
	qs_put_le64(t, v);
	put(b, t, 8);
}
static void f32(struct buf *b, float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	u32(b, u);
}
static void gstr(struct buf *b, const char *s)
{
	u64(b, strlen(s));
	put(b, s, strlen(s));
}

struct gt {
	const char *name;
	uint64_t ne0, ne1;
	const float *data;
};

/* A GGUF v3 file: some metadata of every kind to skip (string, array of
 * strings, u32 array, f64, bool) and alignment `align` (0 = default 32). */
static struct buf make_gguf(const struct gt *t, size_t nt, uint32_t align)
{
	struct buf b = {0};
	put(&b, "GGUF", 4);
	u32(&b, 3);
	u64(&b, nt);
	u64(&b, align ? 5 : 4);
	gstr(&b, "general.type");
	u32(&b, 8);
	gstr(&b, "imatrix");
	gstr(&b, "imatrix.datasets");
	u32(&b, 9);
	u32(&b, 8);
	u64(&b, 2);
	gstr(&b, "wiki.train.raw");
	gstr(&b, "x");
	gstr(&b, "imatrix.chunk_size");
	u32(&b, 9);
	u32(&b, 4);
	u64(&b, 3);
	u32(&b, 1);
	u32(&b, 2);
	u32(&b, 3);
	gstr(&b, "x.f64");
	u32(&b, 12);
	u64(&b, 0);
	if (align) {
		gstr(&b, "general.alignment");
		u32(&b, 4);
		u32(&b, align);
	}
	uint32_t a = align ? align : 32;
	uint64_t off = 0;
	for (size_t i = 0; i < nt; i++) {
		gstr(&b, t[i].name);
		u32(&b, 2);
		u64(&b, t[i].ne0);
		u64(&b, t[i].ne1);
		u32(&b, 0);
		u64(&b, off);
		off += 4 * t[i].ne0 * t[i].ne1;
		off = (off + a - 1) / a * a;
	}
	while (b.n % a)
		put(&b, "", 1);
	for (size_t i = 0; i < nt; i++) {
		for (uint64_t j = 0; j < t[i].ne0 * t[i].ne1; j++)
			f32(&b, t[i].data[j]);
		while (b.n % a)
			put(&b, "", 1);
	}
	return b;
}

struct dt {
	const char *name;
	int32_t ncall;
	int32_t nval;
	const float *data;
};

static struct buf make_dat(const struct dt *t, size_t nt, bool trailer)
{
	struct buf b = {0};
	u32(&b, (uint32_t)nt);
	for (size_t i = 0; i < nt; i++) {
		u32(&b, (uint32_t)strlen(t[i].name));
		put(&b, t[i].name, strlen(t[i].name));
		u32(&b, (uint32_t)t[i].ncall);
		u32(&b, (uint32_t)t[i].nval);
		for (int32_t j = 0; j < t[i].nval; j++)
			f32(&b, t[i].data[j]);
	}
	if (trailer) {
		u32(&b, 100);
		u32(&b, 4);
		put(&b, "wiki", 4);
	}
	return b;
}

static struct qs_importance *open_buf(const char *name, const struct buf *b,
				      struct qs_diag *d)
{
	struct qs_importance *imp = NULL;
	test_write_file(test_path(name), b->p, b->n);
	memset(d, 0, sizeof(*d));
	int rc = qs_importance_open(test_path(name), &imp, d);
	if (rc == 0)
		assert_non_null(imp);
	return rc ? NULL : imp;
}

static const float s2[4] = {4, 8, 12, 16};
static const float cnt[1] = {4};

static void test_gguf(void **state)
{
	(void)state;
	/* two experts: sums {1,2,3,4} and {3,6,9,12}, counts 1 and 3 */
	static const float s2e[8] = {1, 2, 3, 4, 3, 6, 9, 12};
	static const float ce[2] = {1, 3};
	struct gt t[] = {
		{"blk.0.attn_q.weight.in_sum2", 4, 1, s2},
		{"blk.0.attn_q.weight.counts", 1, 1, cnt},
		{"model.layers.3.mlp.experts.weight.in_sum2", 4, 2, s2e},
		{"model.layers.3.mlp.experts.weight.counts", 1, 2, ce},
		{"unrelated", 3, 1, s2},
	};
	for (uint32_t align = 0; align <= 64; align += 64) {
		struct buf b = make_gguf(t, 5, align);
		struct qs_diag d;
		struct qs_importance *imp = open_buf("a.gguf", &b, &d);
		assert_non_null(imp);
		float v[4];
		/* the Hugging Face name maps to blk.0.attn_q.weight */
		assert_int_equal(qs_importance_get(imp, "model.layers.0.self_attn.q_proj.weight",
						   4, v, &d), 1);
		assert_true(v[0] == 1 && v[1] == 2 && v[2] == 3 && v[3] == 4);
		assert_int_equal(qs_importance_get(imp, "blk.0.attn_q.weight", 4, v, &d), 1);
		assert_int_equal(qs_importance_get(imp, "model.layers.3.mlp.experts.weight", 4,
						   v, &d), 1);
		assert_true(v[0] == 1 && v[1] == 2 && v[2] == 3 && v[3] == 4);
		assert_int_equal(qs_importance_get(imp, "model.layers.0.self_attn.k_proj.weight",
						   4, v, &d), 0);
		assert_int_equal(qs_importance_get(imp, "model.layers.0.self_attn.q_proj.weight",
						   5, v, &d), -QS_EFORMAT);
		assert_non_null(strstr(d.msg, "'a.gguf'"));
		assert_non_null(strstr(d.msg, "'model.layers.0.self_attn.q_proj.weight'"));
		qs_importance_free(imp);
		free(b.p);
	}
}

/* llama.cpp's stacked expert entries serve the Hugging Face per-expert
 * names (one matrix each, DeepSeek/Qwen and Mixtral spellings) and the
 * stacked 3-D name (merged over experts). */
static void test_gguf_experts(void **state)
{
	(void)state;
	/* three experts: sums {1,2}, {6,8}, {30,40}; counts 1, 2, 10 */
	static const float s2e[6] = {1, 2, 6, 8, 30, 40};
	static const float ce[3] = {1, 2, 10};
	struct gt t[] = {
		{"blk.2.ffn_up_exps.weight.in_sum2", 2, 3, s2e},
		{"blk.2.ffn_up_exps.weight.counts", 1, 3, ce},
	};
	struct buf b = make_gguf(t, 2, 0);
	struct qs_diag d;
	struct qs_importance *imp = open_buf("e.gguf", &b, &d);
	assert_non_null(imp);
	float v[2];
	assert_int_equal(qs_importance_get(imp, "model.layers.2.mlp.experts.0.up_proj.weight", 2,
					   v, &d), 1);
	assert_true(v[0] == 1 && v[1] == 2);
	assert_int_equal(qs_importance_get(imp, "model.layers.2.mlp.experts.1.up_proj.weight", 2,
					   v, &d), 1);
	assert_true(v[0] == 3 && v[1] == 4);
	assert_int_equal(qs_importance_get(imp,
					   "model.layers.2.block_sparse_moe.experts.2.w3.weight", 2,
					   v, &d), 1);
	assert_true(v[0] == 3 && v[1] == 4);
	/* stacked: (1 + 6 + 30) / 13, (2 + 8 + 40) / 13 */
	assert_int_equal(qs_importance_get(imp, "model.layers.2.mlp.experts.up_proj.weight", 2,
					   v, &d), 1);
	assert_true(fabsf(v[0] - 37.0f / 13) < 1e-6f && fabsf(v[1] - 50.0f / 13) < 1e-6f);
	/* an expert the entry does not hold */
	assert_int_equal(qs_importance_get(imp, "model.layers.2.mlp.experts.3.up_proj.weight", 2,
					   v, &d), -QS_EFORMAT);
	assert_non_null(strstr(d.msg, "expert 3"));
	assert_int_equal(qs_importance_get(imp, "model.layers.2.mlp.experts.0.gate_proj.weight",
					   2, v, &d), 0);
	qs_importance_free(imp);
	free(b.p);
}

/* Every truncation and many single-byte corruptions of a valid file are
 * rejected or read without crashing (ASan watches). */
static void test_gguf_hostile(void **state)
{
	(void)state;
	struct gt t[] = {
		{"blk.0.attn_q.weight.in_sum2", 4, 1, s2},
		{"blk.0.attn_q.weight.counts", 1, 1, cnt},
	};
	struct buf b = make_gguf(t, 2, 0);
	struct qs_diag d;
	for (size_t cut = 0; cut < b.n; cut++) {
		struct buf c = {b.p, cut, cut};
		struct qs_importance *imp = open_buf("cut.gguf", &c, &d);
		if (cut >= 4 && imp == NULL && cut < b.n - 16)
			assert_true(d.msg[0] != '\0');
		qs_importance_free(imp);
	}
	uint8_t *copy = malloc(b.n);
	uint64_t x = 88172645463325252ull;
	for (int rep = 0; rep < 2000; rep++) {
		memcpy(copy, b.p, b.n);
		for (int k = 0; k < 3; k++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			copy[4 + x % (b.n - 4)] = (uint8_t)(x >> 32);
		}
		struct buf c = {copy, b.n, b.n};
		struct qs_importance *imp = open_buf("bad.gguf", &c, &d);
		if (imp) {
			float v[4];
			qs_importance_get(imp, "blk.0.attn_q.weight", 4, v, &d);
			qs_importance_free(imp);
		}
	}
	free(copy);
	/* a missing counts tensor and a wrong version */
	struct buf m = make_gguf(t, 1, 0);
	assert_null(open_buf("m.gguf", &m, &d));
	assert_non_null(strstr(d.msg, "has no counts"));
	b.p[4] = 1;
	assert_null(open_buf("v.gguf", &b, &d));
	assert_non_null(strstr(d.msg, "unsupported GGUF version 1"));
	free(m.p);
	free(b.p);
}

static void test_dat(void **state)
{
	(void)state;
	static const float d8[8] = {2, 4, 6, 8, 2, 4, 6, 8};
	struct dt t[] = {
		{"blk.1.ffn_down.weight", 2, 4, s2},
		{"output.weight", 4, 8, d8},
		{"blk.1.ffn_up.weight", 0, 4, s2},
	};
	for (int tr = 0; tr < 2; tr++) {
		struct buf b = make_dat(t, 3, tr);
		struct qs_diag d;
		struct qs_importance *imp = open_buf("i.dat", &b, &d);
		assert_non_null(imp);
		float v[4];
		assert_int_equal(qs_importance_get(imp, "model.layers.1.mlp.down_proj.weight", 4,
						   v, &d), 1);
		assert_true(v[0] == 2 && v[1] == 4 && v[2] == 6 && v[3] == 8);
		/* two experts of 4 values, 4 calls each: (2+2)/8 ... */
		assert_int_equal(qs_importance_get(imp, "lm_head.weight", 4, v, &d), 1);
		assert_true(v[0] == 0.5f && v[3] == 2.0f);
		/* no calls recorded: as good as missing */
		assert_int_equal(qs_importance_get(imp, "model.layers.1.mlp.up_proj.weight", 4, v,
						   &d), 0);
		assert_int_equal(qs_importance_get(imp, "lm_head.weight", 3, v, &d), -QS_EFORMAT);
		assert_non_null(strstr(d.msg, "'lm_head.weight'"));
		qs_importance_free(imp);

		/* truncations never crash */
		for (size_t cut = 0; cut < b.n; cut++) {
			struct buf c = {b.p, cut, cut};
			qs_importance_free(open_buf("c.dat", &c, &d));
		}
		free(b.p);
	}
	/* duplicate names and a negative value */
	static const float neg[2] = {1, -1};
	struct dt dup[] = {{"a", 1, 2, s2}, {"a", 1, 2, s2}, {"b", 1, 2, neg}};
	struct buf b = make_dat(dup, 2, false);
	struct qs_diag d;
	assert_null(open_buf("d.dat", &b, &d));
	assert_non_null(strstr(d.msg, "'a' appears twice"));
	free(b.p);
	b = make_dat(dup + 2, 1, false);
	struct qs_importance *imp = open_buf("n.dat", &b, &d);
	float v[2];
	assert_int_equal(qs_importance_get(imp, "b", 2, v, &d), -QS_EFORMAT);
	qs_importance_free(imp);
	free(b.p);
}

static void test_safetensors(void **state)
{
	(void)state;
	const char *hdr = "{\"model.layers.0.mlp.up_proj.weight\":{\"dtype\":\"F32\",\"shape\":[4],"
			  "\"data_offsets\":[0,16]},\"x\":{\"dtype\":\"F32\",\"shape\":[2],"
			  "\"data_offsets\":[16,24]}}";
	struct buf b = {0};
	u64(&b, strlen(hdr));
	put(&b, hdr, strlen(hdr));
	for (int i = 0; i < 4; i++)
		f32(&b, s2[i]);
	f32(&b, 1);
	f32(&b, 2);
	struct qs_diag d;
	struct qs_importance *imp = open_buf("i.safetensors", &b, &d);
	assert_non_null(imp);
	float v[4];
	assert_int_equal(qs_importance_get(imp, "model.layers.0.mlp.up_proj.weight", 4, v, &d), 1);
	assert_true(v[0] == 4 && v[3] == 16);
	assert_int_equal(qs_importance_get(imp, "x", 4, v, &d), -QS_EFORMAT);
	assert_non_null(strstr(d.msg, "'i.safetensors': tensor 'x'"));
	assert_int_equal(qs_importance_get(imp, "y", 4, v, &d), 0);
	qs_importance_free(imp);
	free(b.p);

	assert_int_equal(qs_importance_open(test_path("nope"), &imp, &d), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gguf),
		cmocka_unit_test(test_gguf_hostile),
		cmocka_unit_test(test_gguf_experts),
		cmocka_unit_test(test_dat),
		cmocka_unit_test(test_safetensors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

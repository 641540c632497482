/* test_gguf_export.c - export's building blocks: rtn g32 codes repacked to Q4_1
 * read back (as ggml defines Q4_1) to exactly rtn's dequantization, the
 * q8_0 quantizer's definition, the GGUF writer read back by the bounded
 * metadata reader (and that reader on every truncation of a file), the
 * config.json parser and the tensor names. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gguf.h"
#include "kernels.h"
#include "scheme.h"
#include "test_util.h"
#include "util.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float urand(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return (float)((rng * 0x2545f4914f6cdd1dull) >> 40) / (float)(1 << 24) * 2.0f - 1.0f;
}

/* ggml's Q4_1 reading: x = d * q + m, each operation in f32 */
static float q4_1_value(const uint8_t *blk, int j)
{
	volatile float d = qs_f16_to_f32(qs_get_le16(blk));
	volatile float m = qs_f16_to_f32(qs_get_le16(blk + 2));
	int q = j < 16 ? blk[4 + j] & 15 : blk[4 + j - 16] >> 4;
	volatile float p = (float)q * d;
	return p + m;
}

static void test_q4_1_is_rtn(void **state)
{
	(void)state;
	struct qs_scheme s;
	struct qs_diag d;
	assert_int_equal(qs_scheme_parse("rtn:bits=4,group=32", &s, &d), 0);
	enum { R = 5, C = 96 };
	static float w[R * C], ref[R * C];
	for (int i = 0; i < R * C; i++)
		w[i] = urand() * (i % 7 == 0 ? 8.0f : 1.0f);
	w[3] = 0;  /* a zero and a constant group */
	for (int i = C; i < C + 32; i++)
		w[i] = 0.25f;
	size_t psz = (size_t)s.ops->payload_size(&s, R, C);
	uint8_t *payload = malloc(psz);
	void *scratch = malloc((size_t)s.ops->scratch_size(&s, R, C) + 64);
	assert_int_equal(s.ops->quantize(&s, w, R, C, payload, scratch), 0);
	assert_int_equal(s.ops->dequantize(&s, payload, R, C, ref, scratch), 0);
	uint8_t blocks[R * C / 32 * 20];
	qs_ggml_q4_1_from_rtn(payload, R, C, blocks);
	for (int r = 0; r < R; r++)
		for (int c = 0; c < C; c++) {
			const uint8_t *blk = blocks + (r * (C / 32) + c / 32) * 20;
			float v = q4_1_value(blk, c % 32);
			assert_memory_equal(&v, &ref[r * C + c], sizeof(float));
		}
	free(payload);
	free(scratch);
}

static void test_q8_0(void **state)
{
	(void)state;
	const struct qs_ggml_type *t = qs_ggml_type_find("Q8_0");
	assert_non_null(t);
	assert_int_equal(t->block, 32);
	assert_int_equal(t->block_bytes, 34);
	float x[64];
	for (int i = 0; i < 32; i++)
		x[i] = (float)(i - 16);      /* max |x| 16: d = 16/127 */
	for (int i = 32; i < 64; i++)
		x[i] = 0;                    /* d = 0, codes 0 */
	uint8_t y[68];
	assert_int_equal(t->from_f32(x, 1, 64, y), 0);
	assert_int_equal(qs_get_le16(y), qs_f32_to_f16(16.0f / 127.0f));
	assert_int_equal((int8_t)y[2 + 0], -127);   /* -16 * 127/16 */
	assert_int_equal((int8_t)y[2 + 16], 0);
	assert_int_equal((int8_t)y[2 + 24], (int)roundf(8.0f * (127.0f / 16.0f)));
	assert_int_equal(qs_get_le16(y + 34), 0);
	for (int i = 0; i < 32; i++)
		assert_int_equal(y[36 + i], 0);
	assert_int_equal(qs_ggml_row_bytes(t, 64), 68);
	assert_int_equal(qs_ggml_row_bytes(t, 65), 0);
	assert_null(qs_ggml_type_find("q9_9"));
	assert_int_equal(qs_ggml_type_by_id(QS_GGML_Q4_K)->block_bytes, 144);
	assert_int_equal(qs_ggml_type_by_id(QS_GGML_Q6_K)->block_bytes, 210);
}

static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	*len = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *b = malloc(*len);
	assert_int_equal(fread(b, 1, *len, f), *len);
	fclose(f);
	return b;
}

static void test_writer_and_reader(void **state)
{
	(void)state;
	struct qs_gguf_kv kv = {0};
	const char *toks[3] = {"a", "bb", "<s>"};
	int32_t types[3] = {1, 1, 3};
	qs_gguf_kv_str(&kv, "general.architecture", "llama");
	qs_gguf_kv_str_array(&kv, "tokenizer.ggml.tokens", toks, 3);
	qs_gguf_kv_i32_array(&kv, "tokenizer.ggml.token_type", types, 3);
	qs_gguf_kv_u32(&kv, "tokenizer.ggml.bos_token_id", 2);
	struct qs_gguf_tensor t[2] = {0};
	snprintf(t[0].name, sizeof(t[0].name), "a.weight");
	t[0].ndim = 2;
	t[0].ne[0] = 3;
	t[0].ne[1] = 1;
	t[0].type = qs_ggml_type_find("f32");
	t[0].bytes = 12;
	snprintf(t[1].name, sizeof(t[1].name), "b.weight");
	t[1].ndim = 1;
	t[1].ne[0] = 32;
	t[1].type = qs_ggml_type_find("q8_0");
	t[1].bytes = 34;
	const char *path = test_path("w.gguf");
	struct qs_gguf_writer *w;
	struct qs_diag d;
	assert_int_equal(qs_gguf_writer_open(path, &kv, t, 2, 4096, &w, &d), 0);
	float v[3] = {1, 2, 3};
	uint8_t q[34] = {0};
	assert_int_equal(qs_gguf_writer_data(w, v, sizeof(v), &d), 0);
	/* more than declared is refused */
	assert_int_equal(qs_gguf_writer_data(w, v, 4, &d), -QS_EUSAGE);
	assert_int_equal(qs_gguf_writer_end_tensor(w, &d), 0);
	assert_int_equal(qs_gguf_writer_data(w, q, sizeof(q), &d), 0);
	assert_int_equal(qs_gguf_writer_end_tensor(w, &d), 0);
	struct stat st;
	assert_int_not_equal(stat(path, &st), 0);  /* only the .partial so far */
	assert_int_equal(qs_gguf_writer_finish(w, &d), 0);
	qs_gguf_kv_release(&kv);
	assert_int_equal(t[0].offset, 0);
	assert_int_equal(t[1].offset, 32);  /* 12 bytes, aligned to 32 */

	size_t len;
	uint8_t *file = slurp(path, &len);
	assert_memory_equal(file, "GGUF\3\0\0\0", 8);
	assert_int_equal(qs_get_le64(file + 8), 2);
	assert_int_equal(qs_get_le64(file + 16), 4);
	/* data section: aligned, last tensor unpadded */
	assert_int_equal((len - 34 - 32) % 32, 0);

	static const char *const pre[] = {"tokenizer.ggml.", NULL};
	struct qs_gguf_kv got = {0};
	uint64_t found, ntok;
	assert_int_equal(qs_gguf_copy_keys(path, pre, &got, &found, &ntok, &d), 0);
	assert_int_equal(found, 3);
	assert_int_equal(ntok, 3);
	assert_int_equal(got.count, 3);
	qs_gguf_kv_release(&got);

	/* every truncation: an error or a success with what fits, never a
	 * read past the end (ASan builds check) */
	const char *cut = test_path("cut.gguf");
	for (size_t n = 0; n < len; n++) {
		FILE *f = fopen(cut, "wb");
		fwrite(file, 1, n, f);
		fclose(f);
		struct qs_gguf_kv k2 = {0};
		int rc = qs_gguf_copy_keys(cut, pre, &k2, &found, &ntok, &d);
		if (n < 24 + 8)
			assert_int_equal(rc, -QS_EFORMAT);
		qs_gguf_kv_release(&k2);
	}
	/* a lying array count */
	uint8_t *bad = malloc(len);
	memcpy(bad, file, len);
	size_t at = 24 + 8 + strlen("general.architecture") + 4 + 8 + 5 + 8 +
		    strlen("tokenizer.ggml.tokens") + 4 + 4;
	qs_put_le64(bad + at, 1ull << 60);
	FILE *f = fopen(cut, "wb");
	fwrite(bad, 1, len, f);
	fclose(f);
	struct qs_gguf_kv k3 = {0};
	assert_int_equal(qs_gguf_copy_keys(cut, pre, &k3, &found, &ntok, &d), -QS_EFORMAT);
	qs_gguf_kv_release(&k3);
	free(bad);
	free(file);
}

static int parse(const char *json, struct qs_gguf_arch *a, struct qs_diag *d)
{
	static char buf[64];
	return qs_gguf_arch_parse("m.qshard", json, a, buf, sizeof(buf), d);
}

#define BASE "\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"num_hidden_layers\":2," \
	     "\"num_attention_heads\":4,\"intermediate_size\":128,\"max_position_embeddings\":256," \
	     "\"rms_norm_eps\":1e-6"

static void test_arch(void **state)
{
	(void)state;
	struct qs_gguf_arch a;
	struct qs_diag d;
	assert_int_equal(parse("{" BASE "}", &a, &d), 0);
	assert_string_equal(a.arch, "llama");
	assert_int_equal(a.kv_heads, 4);       /* defaults to heads */
	assert_int_equal(a.head_dim, 16);
	assert_true(a.rope_theta == 10000.0f); /* default */
	assert_null(a.rope_type);
	assert_int_equal(parse("{" BASE ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0,"
			       "\"original_max_position_embeddings\":8192}}", &a, &d), 0);
	assert_string_equal(a.rope_type, "llama3");
	float f[8];
	qs_gguf_rope_llama3_factors(&a, f);
	assert_true(f[0] == 1.0f);             /* shortest wavelength: unscaled */
	assert_true(f[7] > 1.0f && f[7] <= 8.0f);
	assert_int_equal(parse("{" BASE ",\"num_key_value_heads\":3}", &a, &d), -QS_EFORMAT);
	assert_int_equal(parse("{" BASE ",\"head_dim\":15}", &a, &d), -QS_EFORMAT);
	assert_int_equal(parse("{\"architectures\":[\"Qwen3ForCausalLM\"]}", &a, &d), -QS_EDTYPE);
	assert_non_null(strstr(d.msg, "'Qwen3ForCausalLM'"));
	assert_int_equal(parse("[1]", &a, &d), -QS_EFORMAT);
	assert_int_equal(parse(NULL, &a, &d), -QS_EFORMAT);

	char n[80];
	int layer;
	uint32_t perm;
	assert_int_equal(parse("{" BASE ",\"num_key_value_heads\":2}", &a, &d), 0);
	assert_int_equal(qs_gguf_tensor_name(&a, "model.layers.1.self_attn.k_proj.weight", n,
					     sizeof(n), &layer, &perm), 0);
	assert_string_equal(n, "blk.1.attn_k.weight");
	assert_int_equal(layer, 1);
	assert_int_equal(perm, 2);
	assert_int_equal(qs_gguf_tensor_name(&a, "model.layers.0.self_attn.q_proj.weight", n,
					     sizeof(n), &layer, &perm), 0);
	assert_int_equal(perm, 4);
	assert_int_equal(qs_gguf_tensor_name(&a, "model.layers.0.mlp.down_proj.weight", n,
					     sizeof(n), &layer, &perm), 0);
	assert_int_equal(perm, 0);
	assert_int_equal(qs_gguf_tensor_name(&a, "model.layers.2.mlp.up_proj.weight", n, sizeof(n),
					     &layer, &perm), -1);  /* past block_count */
	assert_int_equal(qs_gguf_tensor_name(&a, "model.layers.01.mlp.up_proj.weight", n,
					     sizeof(n), &layer, &perm), -1);
	assert_int_equal(qs_gguf_tensor_name(&a, "model.layers.0.self_attn.rotary_emb.inv_freq",
					     n, sizeof(n), &layer, &perm), 1);
	assert_int_equal(qs_gguf_tensor_name(&a, "lm_head.weight", n, sizeof(n), &layer, &perm),
			 0);
	assert_string_equal(n, "output.weight");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_q4_1_is_rtn),
		cmocka_unit_test(test_q8_0),
		cmocka_unit_test(test_writer_and_reader),
		cmocka_unit_test(test_arch),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

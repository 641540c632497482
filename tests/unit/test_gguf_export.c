/* test_gguf_export.c - export's building blocks: rtn g32 codes repacked to Q4_1
 * read back (as ggml defines Q4_1) to exactly rtn's dequantization, the
 * q8_0 quantizer's definition, the GGUF writer read back by the bounded
 * metadata reader (and that reader on every truncation of a file), the
 * config.json parser and the tensor names, Mixtral's expert names,
 * llama-quantize's fallback types, and the SentencePiece model reader on a
 * hand-encoded protobuf and every truncation of it. */
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

static void test_experts(void **state)
{
	(void)state;
	struct qs_gguf_arch a;
	struct qs_diag d;
	char n[80];
	int layer;
	uint32_t e, perm;
#define MIX "{\"architectures\":[\"MixtralForCausalLM\"],\"hidden_size\":64," \
	"\"num_hidden_layers\":2,\"num_attention_heads\":4,\"intermediate_size\":128," \
	"\"max_position_embeddings\":256,\"rms_norm_eps\":1e-6,\"num_local_experts\":8"
	assert_int_equal(parse(MIX ",\"num_experts_per_tok\":2}", &a, &d), 0);
	assert_string_equal(a.arch, "llama");
	assert_int_equal(a.n_expert, 8);
	assert_int_equal(a.n_expert_used, 2);
	assert_int_equal(qs_gguf_expert_name(&a, "model.layers.1.block_sparse_moe.experts.7.w1.weight",
					     n, sizeof(n), &layer, &e), 0);
	assert_string_equal(n, "blk.1.ffn_gate_exps.weight");
	assert_int_equal(layer, 1);
	assert_int_equal(e, 7);
	assert_int_equal(qs_gguf_expert_name(&a, "model.layers.0.block_sparse_moe.experts.0.w2.weight",
					     n, sizeof(n), &layer, &e), 0);
	assert_string_equal(n, "blk.0.ffn_down_exps.weight");
	assert_int_equal(qs_gguf_expert_name(&a, "model.layers.0.block_sparse_moe.experts.3.w3.weight",
					     n, sizeof(n), &layer, &e), 0);
	assert_string_equal(n, "blk.0.ffn_up_exps.weight");
	static const char *const bad[] = {
		"model.layers.0.block_sparse_moe.experts.8.w1.weight",   /* past num_local_experts */
		"model.layers.2.block_sparse_moe.experts.0.w1.weight",   /* past block_count */
		"model.layers.0.block_sparse_moe.experts.01.w1.weight",  /* leading zero */
		"model.layers.0.block_sparse_moe.experts.0.w4.weight",
		"model.layers.0.block_sparse_moe.experts.0.w1.bias",
		"model.layers.0.block_sparse_moe.experts.0.w1.weightx",
		"model.layers.0.mlp.experts.0.gate_proj.weight",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(qs_gguf_expert_name(&a, bad[i], n, sizeof(n), &layer, &e), -1);
	assert_int_equal(qs_gguf_tensor_name(&a, "model.layers.1.block_sparse_moe.gate.weight", n,
					     sizeof(n), &layer, &perm), 0);
	assert_string_equal(n, "blk.1.ffn_gate_inp.weight");
	assert_int_equal(parse(MIX ",\"num_experts_per_tok\":9}", &a, &d), -QS_EFORMAT);
	assert_non_null(strstr(d.msg, "num_experts_per_tok"));
	assert_int_equal(parse(MIX "}", &a, &d), -QS_EFORMAT);
	/* a dense Llama has neither experts nor a router */
	assert_int_equal(parse("{" BASE "}", &a, &d), 0);
	assert_int_equal(qs_gguf_expert_name(&a, "model.layers.0.block_sparse_moe.experts.0.w1.weight",
					     n, sizeof(n), &layer, &e), -1);
	assert_int_equal(qs_gguf_tensor_name(&a, "model.layers.0.block_sparse_moe.gate.weight", n,
					     sizeof(n), &layer, &perm), -1);
#undef MIX
}

static void test_fallback(void **state)
{
	(void)state;
	static const struct {
		const char *type;
		uint64_t cols;
		const char *want;
	} cases[] = {
		{"q4_K", 4096, "q4_K"}, {"q4_K", 4128, "q5_0"}, {"q5_K", 4128, "q5_1"},
		{"q6_K", 4128, "q8_0"}, {"q3_K", 4128, "q4_0"}, {"q2_K", 4128, "q4_0"},
		{"q4_K", 4100, "f16"},  {"q8_0", 4100, "f16"},  {"q4_0", 100, "f16"},
		{"q8_0", 64, "q8_0"},   {"f32", 7, "f32"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct qs_ggml_type *t = qs_ggml_fallback(qs_ggml_type_find(cases[i].type),
								cases[i].cols);
		assert_string_equal(t->name, cases[i].want);
	}
}

/* A tiny protobuf encoder for the SentencePiece model test. */
struct enc {
	uint8_t b[512];
	size_t n;
};

static void e_varint(struct enc *e, uint64_t v)
{
	do {
		e->b[e->n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
}

static void e_bytes(struct enc *e, uint32_t field, const void *p, size_t len)
{
	e_varint(e, (uint64_t)field << 3 | 2);
	e_varint(e, len);
	memcpy(e->b + e->n, p, len);
	e->n += len;
}

static void e_piece(struct enc *out, const char *text, float score, int type)
{
	struct enc p = {.n = 0};
	e_bytes(&p, 1, text, strlen(text));
	uint32_t bits;
	memcpy(&bits, &score, 4);
	e_varint(&p, 2 << 3 | 5);
	qs_put_le32(p.b + p.n, bits);
	p.n += 4;
	if (type) {
		e_varint(&p, 3 << 3 | 0);
		e_varint(&p, (uint64_t)type);
	}
	e_bytes(out, 1, p.b, p.n);
}

/* The GGUF value bytes after key k in kv (NULL when absent). */
static const uint8_t *kv_find(const struct qs_gguf_kv *kv, const char *k)
{
	size_t kl = strlen(k);
	for (size_t i = 0; i + 8 + kl <= kv->len; i++)
		if (qs_get_le64(kv->buf + i) == kl && memcmp(kv->buf + i + 8, k, kl) == 0)
			return kv->buf + i + 8 + kl;
	return NULL;
}

static void test_spm(void **state)
{
	(void)state;
	struct enc m = {.n = 0}, t = {.n = 0}, nz = {.n = 0};
	e_piece(&m, "<unk>", 0, 2);
	e_piece(&m, "<s>", 0, 3);
	e_piece(&m, "</s>", 0, 3);
	e_piece(&m, "<0x41>", 0, 6);
	e_piece(&m, "\xe2\x96\x81" "a", -1.5f, 0);  /* type absent: NORMAL */
	/* trainer spec: BPE, pad_id -1 as a ten-byte varint, bos 1, and an
	 * unknown fixed64 field skipped */
	e_varint(&t, 3 << 3);
	e_varint(&t, 2);
	e_varint(&t, 43 << 3);
	e_varint(&t, UINT64_MAX);
	e_varint(&t, 41 << 3);
	e_varint(&t, 1);
	e_varint(&t, 99 << 3 | 1);
	memset(t.b + t.n, 0xee, 8);
	t.n += 8;
	e_bytes(&m, 2, t.b, t.n);
	e_varint(&nz, 3 << 3);  /* add_dummy_prefix false */
	e_varint(&nz, 0);
	e_bytes(&m, 3, nz.b, nz.n);

	struct qs_gguf_kv kv = {0};
	struct qs_diag d;
	assert_int_equal(qs_gguf_vocab_from_spm("m.qshard", m.b, m.n, NULL, 0, NULL, 6, &kv, &d), 0);
	const uint8_t *v = kv_find(&kv, "tokenizer.ggml.model");
	assert_non_null(v);
	assert_int_equal(qs_get_le32(v), QS_GGUF_STRING);
	assert_memory_equal(v + 12, "llama", 5);
	v = kv_find(&kv, "tokenizer.ggml.token_type");
	assert_non_null(v);
	assert_int_equal(qs_get_le64(v + 8), 6);  /* 5 pieces + one [PAD5] row */
	static const int32_t types[] = {2, 3, 3, 6, 1, 5};
	for (int i = 0; i < 6; i++)
		assert_int_equal((int32_t)qs_get_le32(v + 16 + 4 * i), types[i]);
	v = kv_find(&kv, "tokenizer.ggml.scores");
	uint32_t bits = qs_get_le32(v + 16 + 4 * 4);
	float f;
	memcpy(&f, &bits, 4);
	assert_true(f == -1.5f);
	assert_null(kv_find(&kv, "tokenizer.ggml.padding_token_id"));  /* pad_id -1 */
	assert_int_equal(qs_get_le32(kv_find(&kv, "tokenizer.ggml.bos_token_id") + 4), 1);
	v = kv_find(&kv, "tokenizer.ggml.add_space_prefix");
	assert_int_equal(v[4], 0);
	qs_gguf_kv_release(&kv);

	/* tokenizer_config.json names the special tokens by text */
	memset(&kv, 0, sizeof(kv));
	assert_int_equal(qs_gguf_vocab_from_spm("m.qshard", m.b, m.n, NULL, 0,
						"{\"eos_token\": {\"content\": \"<s>\"}}", 6, &kv, &d), 0);
	assert_int_equal(qs_get_le32(kv_find(&kv, "tokenizer.ggml.eos_token_id") + 4), 1);
	qs_gguf_kv_release(&kv);
	memset(&kv, 0, sizeof(kv));
	assert_int_equal(qs_gguf_vocab_from_spm("m.qshard", m.b, m.n, NULL, 0, "{\"bos_token\": \"<B>\"}",
						6, &kv, &d), -QS_EFORMAT);
	assert_non_null(strstr(d.msg, "bos_token is not a piece of tokenizer.model"));
	qs_gguf_kv_release(&kv);

	/* tokenizer.json's added tokens past the pieces; one that renames a
	 * piece is an error */
	static const char added[] = "{\"added_tokens\": [{\"id\": 1, \"content\": \"<s>\"},"
				    "{\"id\": 5, \"content\": \"<pad>\", \"special\": true}]}";
	memset(&kv, 0, sizeof(kv));
	assert_int_equal(qs_gguf_vocab_from_spm("m.qshard", m.b, m.n, added, strlen(added), NULL, 6,
						&kv, &d), 0);
	v = kv_find(&kv, "tokenizer.ggml.token_type");
	assert_int_equal((int32_t)qs_get_le32(v + 16 + 4 * 5), 3);  /* control, not [PAD5] */
	assert_null(kv_find(&kv, "[PAD5]"));
	qs_gguf_kv_release(&kv);
	static const char renames[] = "{\"added_tokens\": [{\"id\": 1, \"content\": \"<bos>\"}]}";
	memset(&kv, 0, sizeof(kv));
	assert_int_equal(qs_gguf_vocab_from_spm("m.qshard", m.b, m.n, renames, strlen(renames), NULL,
						6, &kv, &d), -QS_EFORMAT);
	assert_non_null(strstr(d.msg, "which tokenizer.model's piece '<s>' holds"));
	qs_gguf_kv_release(&kv);

	/* every truncation: a clean error naming the file, never a crash; a
	 * cut between top-level fields is still a (shorter) model */
	for (size_t n = 0; n < m.n; n++) {
		memset(&kv, 0, sizeof(kv));
		int rc = qs_gguf_vocab_from_spm("m.qshard", m.b, n, NULL, 0, NULL, 6, &kv, &d);
		if (rc < 0) {
			assert_int_equal(rc, -QS_EFORMAT);
			assert_non_null(strstr(d.msg, "'m.qshard': tokenizer.model"));
		}
		qs_gguf_kv_release(&kv);
	}
	/* fewer rows than pieces; a group wire type; an eleven-byte varint;
	 * a NUL in a piece; a type outside 1..6 */
	memset(&kv, 0, sizeof(kv));
	assert_int_equal(qs_gguf_vocab_from_spm("m.qshard", m.b, m.n, NULL, 0, NULL, 4, &kv, &d),
			 -QS_EFORMAT);
	assert_non_null(strstr(d.msg, "more pieces than the model's 4 embedding rows"));
	static const uint8_t group[] = {0x0b, 0x0c}, longv[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff,
								0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
	assert_int_equal(qs_gguf_vocab_from_spm("m.qshard", group, sizeof(group), NULL, 0, NULL, 6, &kv, &d),
			 -QS_EFORMAT);
	assert_int_equal(qs_gguf_vocab_from_spm("m.qshard", longv, sizeof(longv), NULL, 0, NULL, 6, &kv, &d),
			 -QS_EFORMAT);
	struct enc nul = {.n = 0}, pp = {.n = 0};
	e_bytes(&pp, 1, "a\0b", 3);
	e_bytes(&nul, 1, pp.b, pp.n);
	assert_int_equal(qs_gguf_vocab_from_spm("m.qshard", nul.b, nul.n, NULL, 0, NULL, 6, &kv, &d),
			 -QS_EFORMAT);
	assert_non_null(strstr(d.msg, "holds a NUL"));
	struct enc ty = {.n = 0};
	e_piece(&ty, "x", 0, 7);
	assert_int_equal(qs_gguf_vocab_from_spm("m.qshard", ty.b, ty.n, NULL, 0, NULL, 6, &kv, &d),
			 -QS_EFORMAT);
	assert_int_equal(qs_gguf_vocab_from_spm("m.qshard", (const uint8_t *)"", 0, NULL, 0, NULL, 6, &kv, &d),
			 -QS_EFORMAT);
	assert_non_null(strstr(d.msg, "holds no pieces"));
	qs_gguf_kv_release(&kv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_q4_1_is_rtn),
		cmocka_unit_test(test_q8_0),
		cmocka_unit_test(test_writer_and_reader),
		cmocka_unit_test(test_arch),
		cmocka_unit_test(test_experts),
		cmocka_unit_test(test_fallback),
		cmocka_unit_test(test_spm),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

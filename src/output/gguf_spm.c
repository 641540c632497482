/* gguf_spm.c - llama.cpp's tokenizer keys for a SentencePiece model
 * (tokenizer.model of Llama 1/2 and Mistral 7B v0.1): tokenizer.ggml.model
 * "llama" (llama.cpp's SPM tokenizer), tokens, scores and token_type from
 * the model's pieces, as convert_hf_to_gguf.py's _set_vocab_sentencepiece
 * writes them.
 *
 * tokenizer.model is a serialized protobuf ModelProto
 * (sentencepiece_model.proto).  The fields read, by field number:
 *
 *   ModelProto      1 pieces (repeated SentencePiece), 2 trainer_spec,
 *                   3 normalizer_spec
 *   SentencePiece   1 piece (string), 2 score (float), 3 type (enum, default
 *                   NORMAL: NORMAL=1 UNKNOWN=2 CONTROL=3 USER_DEFINED=4
 *                   UNUSED=5 BYTE=6 -- llama.cpp's llama_token_type uses the
 *                   same numbers)
 *   TrainerSpec     3 model_type (UNIGRAM=1 BPE=2 WORD=3 CHAR=4),
 *                   40 unk_id (default 0), 41 bos_id (1), 42 eos_id (2),
 *                   43 pad_id (-1); a negative id means none
 *   NormalizerSpec  3 add_dummy_prefix (default true)
 *
 * everything else is skipped by its wire type (protobuf encoding: a key
 * varint field << 3 | wire type; 0 varint, 1 fixed 64 bits, 2 length-
 * delimited, 5 fixed 32 bits; the group types 3 and 4 are not in this
 * proto and are refused).  The file is untrusted: every length is checked
 * against what is left, and a truncated or garbled model is an error
 * naming the file and the byte where it went wrong.
 *
 * A tokenizer.json next to it (a Hugging Face fast tokenizer derived from
 * the model) may add tokens past the pieces, such as a <pad> at 32000:
 * those become tokens of their own (control when special, else
 * user-defined), as convert_hf_to_gguf.py takes added tokens; one that
 * gives a piece's id another text is an error.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "util.h"

enum { SPM_NORMAL = 1, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5 };

/* A view of the bytes left of one message. */
struct pb {
	const uint8_t *p, *end, *base;  /* base: the file's first byte */
};

static int varint(struct pb *b, uint64_t *out)
{
	uint64_t v = 0;
	for (unsigned shift = 0; shift < 64; shift += 7) {
		if (b->p >= b->end)
			return -1;
		uint8_t c = *b->p++;
		v |= (uint64_t)(c & 0x7f) << shift;
		if (!(c & 0x80)) {
			*out = v;
			return 0;
		}
	}
	return -1;  /* more than 10 bytes */
}

/* Reads the next field's key; for a length-delimited field sets *sub to
 * its bytes; for a fixed 32-bit one *fixed32.  0, 1 at the end, -1 bad. */
static int field(struct pb *b, uint32_t *num, uint32_t *wire, uint64_t *val, struct pb *sub,
		 uint32_t *fixed32)
{
	uint64_t key, len;
	if (b->p == b->end)
		return 1;
	if (varint(b, &key) < 0 || (key >> 3) == 0 || (key >> 3) > 0x1fffffff)
		return -1;
	*num = (uint32_t)(key >> 3);
	*wire = (uint32_t)(key & 7);
	switch (*wire) {
	case 0:
		return varint(b, val);
	case 1:
		if (b->end - b->p < 8)
			return -1;
		b->p += 8;
		return 0;
	case 2:
		if (varint(b, &len) < 0 || len > (uint64_t)(b->end - b->p))
			return -1;
		*sub = (struct pb){b->p, b->p + len, b->base};
		b->p += len;
		return 0;
	case 5:
		if (b->end - b->p < 4)
			return -1;
		*fixed32 = qs_get_le32(b->p);
		b->p += 4;
		return 0;
	default:
		return -1;
	}
}

struct spm {
	const char *fname;
	struct qs_diag *diag;
	char **tokens;
	float *scores;
	int32_t *types;
	uint64_t n, cap;            /* pieces read; n_rows */
	int64_t unk, bos, eos, pad;
	int model_type;
	bool add_prefix;
};

static int garbled(struct spm *m, const struct pb *b, const char *what)
{
	return qs_diag_set(m->diag, -QS_EFORMAT,
			   "'%s': tokenizer.model: %s at byte %zu (truncated, or not a "
			   "SentencePiece model)", m->fname, what, (size_t)(b->p - b->base));
}

static int piece(struct spm *m, struct pb b)
{
	struct pb sub = {0};
	uint32_t num, wire, f32 = 0;
	uint64_t val = 0;
	const uint8_t *text = NULL;
	size_t len = 0;
	float score = 0;
	uint64_t type = SPM_NORMAL;
	int rc;
	while ((rc = field(&b, &num, &wire, &val, &sub, &f32)) == 0) {
		if (num == 1 && wire == 2) {
			text = sub.p;
			len = (size_t)(sub.end - sub.p);
		} else if (num == 2 && wire == 5) {
			memcpy(&score, &f32, 4);
		} else if (num == 3 && wire == 0) {
			type = val;
		}
	}
	if (rc < 0)
		return garbled(m, &b, "a piece does not decode");
	if (m->n >= m->cap)
		return qs_diag_set(m->diag, -QS_EFORMAT,
				   "'%s': tokenizer.model has more pieces than the model's %llu "
				   "embedding rows", m->fname, (unsigned long long)m->cap);
	if (!text || len == 0 || memchr(text, 0, len))
		return qs_diag_set(m->diag, -QS_EFORMAT,
				   "'%s': tokenizer.model: piece %llu has no text or holds a NUL",
				   m->fname, (unsigned long long)m->n);
	if (type < 1 || type > 6 || !isfinite(score))
		return qs_diag_set(m->diag, -QS_EFORMAT,
				   "'%s': tokenizer.model: piece %llu has type %llu or score %g "
				   "(types are 1..6, scores finite)", m->fname,
				   (unsigned long long)m->n, (unsigned long long)type, (double)score);
	char *t = malloc(len + 1);
	if (!t)
		return qs_diag_set(m->diag, -ENOMEM, "out of memory");
	memcpy(t, text, len);
	t[len] = 0;
	m->tokens[m->n] = t;
	m->scores[m->n] = score;
	m->types[m->n] = (int32_t)type;
	m->n++;
	return 0;
}

/* int32 fields are varints of the value sign-extended to 64 bits. */
static int64_t as_int32(uint64_t v)
{
	return (int64_t)(int32_t)(uint32_t)v;
}

static int trainer(struct spm *m, struct pb b)
{
	struct pb sub;
	uint32_t num, wire, f32;
	uint64_t val = 0;
	int rc;
	while ((rc = field(&b, &num, &wire, &val, &sub, &f32)) == 0) {
		if (wire != 0)
			continue;
		switch (num) {
		case 3: m->model_type = (int)as_int32(val); break;
		case 40: m->unk = as_int32(val); break;
		case 41: m->bos = as_int32(val); break;
		case 42: m->eos = as_int32(val); break;
		case 43: m->pad = as_int32(val); break;
		default: break;
		}
	}
	return rc < 0 ? garbled(m, &b, "the trainer spec does not decode") : 0;
}

static int normalizer(struct spm *m, struct pb b)
{
	struct pb sub;
	uint32_t num, wire, f32;
	uint64_t val = 0;
	int rc;
	while ((rc = field(&b, &num, &wire, &val, &sub, &f32)) == 0)
		if (num == 3 && wire == 0)
			m->add_prefix = val != 0;
	return rc < 0 ? garbled(m, &b, "the normalizer spec does not decode") : 0;
}

/* tokenizer_config.json's "<kind>_token" (a string or {"content": ...})
 * as a piece id: -2 when not named, -1 when named but not a piece. */
static int64_t named(const struct spm *m, const char *tokenizer_config, const char *kind)
{
	/* the config is JSON; its special tokens are looked up through the
	 * shared helper so the two vocabulary paths agree */
	char text[256];
	if (qs_gguf_config_token(tokenizer_config, kind, text, sizeof(text)) < 0)
		return -2;
	for (uint64_t i = 0; i < m->n; i++)
		if (strcmp(m->tokens[i], text) == 0)
			return (int64_t)i;
	return -1;
}

/* tokenizer.json's added_tokens past the pieces (see the top). */
static int added_tokens(struct spm *m, const char *tokenizer_json, size_t len, uint64_t n_rows)
{
	json_error_t jerr;
	json_t *root = json_loadb(tokenizer_json, len, 0, &jerr);
	json_t *list = json_object_get(root, "added_tokens");
	size_t i;
	json_t *at;
	int rc = 0;
	json_array_foreach(list, i, at) {
		json_t *idv = json_object_get(at, "id");
		const char *content = json_string_value(json_object_get(at, "content"));
		json_int_t id = json_is_integer(idv) ? json_integer_value(idv) : -1;
		if (!content || id < 0 || (uint64_t)id >= n_rows) {
			rc = qs_diag_set(m->diag, -QS_EFORMAT,
					 "'%s': tokenizer.json: added token %zu has no content or an "
					 "id outside the model's %llu embedding rows", m->fname, i,
					 (unsigned long long)n_rows);
			break;
		}
		if ((uint64_t)id < m->n) {
			if (strcmp(m->tokens[id], content) != 0) {
				rc = qs_diag_set(m->diag, -QS_EFORMAT,
						 "'%s': tokenizer.json: added token '%.80s' has id %lld, "
						 "which tokenizer.model's piece '%.80s' holds",
						 m->fname, content, (long long)id, m->tokens[id]);
				break;
			}
			continue;
		}
		free(m->tokens[id]);
		if (!(m->tokens[id] = strdup(content))) {
			rc = qs_diag_set(m->diag, -ENOMEM, "out of memory");
			break;
		}
		m->scores[id] = 0;
		m->types[id] = json_is_true(json_object_get(at, "special")) ? TT_CONTROL : TT_USER;
	}
	json_decref(root);
	return rc;
}

int qs_gguf_vocab_from_spm(const char *fname, const uint8_t *model, size_t len,
			   const char *tokenizer_json, size_t tj_len, const char *tokenizer_config,
			   uint64_t n_rows, struct qs_gguf_kv *kv, struct qs_diag *diag)
{
	struct spm m = {.fname = fname, .diag = diag, .cap = n_rows, .unk = 0, .bos = 1,
			.eos = 2, .pad = -1, .add_prefix = true};
	struct pb b = {model, model + len, model}, sub;
	uint32_t num, wire, f32;
	uint64_t val = 0;
	int rc = 0, frc;
	m.tokens = calloc(n_rows ? n_rows : 1, sizeof(*m.tokens));
	m.scores = calloc(n_rows ? n_rows : 1, sizeof(*m.scores));
	m.types = calloc(n_rows ? n_rows : 1, sizeof(*m.types));
	if (!m.tokens || !m.scores || !m.types) {
		rc = qs_diag_set(diag, -ENOMEM, "out of memory");
		goto out;
	}
	while ((frc = field(&b, &num, &wire, &val, &sub, &f32)) == 0) {
		if (wire != 2)
			continue;
		if (num == 1)
			rc = piece(&m, sub);
		else if (num == 2)
			rc = trainer(&m, sub);
		else if (num == 3)
			rc = normalizer(&m, sub);
		if (rc < 0)
			goto out;
	}
	if (frc < 0) {
		rc = garbled(&m, &b, "a field does not decode");
		goto out;
	}
	if (m.n == 0) {
		rc = qs_diag_set(diag, -QS_EFORMAT,
				 "'%s': tokenizer.model holds no pieces (not a SentencePiece model)",
				 fname);
		goto out;
	}
	/* llama.cpp's SPM tokenizer merges by score, which is how both
	 * SentencePiece BPE and (approximately) Unigram models encode */
	if (m.model_type != 0 && m.model_type != 1 && m.model_type != 2) {
		rc = qs_diag_set(diag, -QS_EDTYPE,
				 "'%s': tokenizer.model is a SentencePiece %s model; llama.cpp's "
				 "tokenizer handles BPE and Unigram ones",
				 fname, m.model_type == 3 ? "WORD" : m.model_type == 4 ? "CHAR" : "unknown");
		goto out;
	}
	int64_t *ids[] = {&m.unk, &m.bos, &m.eos, &m.pad};
	static const char *const kinds[] = {"unk", "bos", "eos", "pad"};
	for (int i = 0; i < 4; i++) {
		int64_t id = named(&m, tokenizer_config, kinds[i]);
		if (id == -1) {
			rc = qs_diag_set(diag, -QS_EFORMAT,
					 "'%s': tokenizer_config.json: %s_token is not a piece of "
					 "tokenizer.model", fname, kinds[i]);
			goto out;
		}
		if (id >= 0)
			*ids[i] = id;
		if (*ids[i] >= (int64_t)m.n) {
			rc = qs_diag_set(diag, -QS_EFORMAT,
					 "'%s': tokenizer.model: %s_id %lld is not one of its %llu "
					 "pieces", fname, kinds[i], (long long)*ids[i],
					 (unsigned long long)m.n);
			goto out;
		}
	}
	/* embedding rows past the pieces: placeholders, as convert_hf_to_gguf.py
	 * pads a vocabulary to vocab_size */
	for (uint64_t k = m.n; k < n_rows; k++) {
		char pad[32];
		snprintf(pad, sizeof(pad), "[PAD%llu]", (unsigned long long)k);
		if (!(m.tokens[k] = strdup(pad))) {
			rc = qs_diag_set(diag, -ENOMEM, "out of memory");
			goto out;
		}
		m.scores[k] = -1000.0f;
		m.types[k] = TT_UNUSED;
	}
	if (tokenizer_json && (rc = added_tokens(&m, tokenizer_json, tj_len, n_rows)) < 0)
		goto out;
	qs_gguf_kv_str(kv, "tokenizer.ggml.model", "llama");
	qs_gguf_kv_str(kv, "tokenizer.ggml.pre", "default");
	qs_gguf_kv_str_array(kv, "tokenizer.ggml.tokens", (const char *const *)m.tokens, n_rows);
	qs_gguf_kv_f32_array(kv, "tokenizer.ggml.scores", m.scores, n_rows);
	qs_gguf_kv_i32_array(kv, "tokenizer.ggml.token_type", m.types, n_rows);
	static const char *const keys[] = {
		"tokenizer.ggml.unknown_token_id", "tokenizer.ggml.bos_token_id",
		"tokenizer.ggml.eos_token_id", "tokenizer.ggml.padding_token_id",
	};
	for (int i = 0; i < 4; i++)
		if (*ids[i] >= 0)
			qs_gguf_kv_u32(kv, keys[i], (uint32_t)*ids[i]);
	qs_gguf_kv_bool(kv, "tokenizer.ggml.add_space_prefix", m.add_prefix);
	qs_gguf_vocab_config_keys(tokenizer_config, kv);
out:
	for (uint64_t k = 0; m.tokens && k < n_rows; k++)
		free(m.tokens[k]);
	free(m.tokens);
	free(m.scores);
	free(m.types);
	return rc;
}

/* gguf_vocab.c - llama.cpp's tokenizer keys (docs/gguf.md "Tokenizer")
 * from a Hugging Face tokenizer.json with a byte-level BPE model (GPT-2,
 * Llama 3, Mistral Nemo, Qwen): tokenizer.ggml.model "gpt2", tokens,
 * token_type, merges, the pre-tokenizer name llama.cpp implements, the
 * special token ids, add_bos/add_eos and the chat template.
 *
 * tokenizer.json is untrusted: every id must be in range and unique, every
 * merge must join two known tokens into a known token, every special token
 * named must exist; anything else is an error naming what lies.
 */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "util.h"

/* llama.cpp's token types (llama_token_type). */
enum { TT_NORMAL = 1, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5 };

/* Pre-tokenizer regexes as tokenizer.json spells them (Split pattern),
 * and the tokenizer.ggml.pre name llama.cpp's llama-vocab.cpp gives the
 * same splitting rules. */
static const struct {
	const char *name, *regex;
} pre_regex[] = {
	{"llama-bpe", "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
		      "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
	{"qwen2", "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
		  "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
	{"tekken", "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}"
		   "\\p{M}]+|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}"
		   "\\p{Lo}\\p{M}]*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
};

/* Names --pre accepts: the pre-tokenizers of llama.cpp's BPE vocabularies
 * (llama-vocab.cpp).  Only those above and gpt-2 are recognised from
 * tokenizer.json; the rest need --pre. */
static const char *const pre_names[] = {
	"default", "llama-bpe", "gpt-2", "qwen2", "tekken", "deepseek-llm", "deepseek-coder",
	"falcon", "mpt", "starcoder", "refact", "command-r", "olmo", "dbrx", "smaug-bpe",
	"stablelm2", "smollm", "gpt-4o", "llama4", "pixtral", NULL,
};

bool qs_gguf_pre_known(const char *name)
{
	for (size_t i = 0; pre_names[i]; i++)
		if (strcmp(pre_names[i], name) == 0)
			return true;
	return false;
}

void qs_gguf_pre_names(char *buf, size_t len)
{
	size_t used = 0;
	buf[0] = 0;
	for (size_t i = 0; pre_names[i]; i++) {
		int k = snprintf(buf + used, len - used, "%s%s", i ? ", " : "", pre_names[i]);
		if (k < 0 || (size_t)k >= len - used)
			break;
		used += (size_t)k;
	}
}

struct vocab {
	const char *fname;
	char **tokens;       /* n_rows entries, NULL until filled */
	int32_t *types;
	uint64_t n;
	json_t *index;       /* token text -> id (borrowed from model.vocab) */
	struct qs_diag *diag;
};

static int lie(struct vocab *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int lie(struct vocab *v, const char *fmt, ...)
{
	char what[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return qs_diag_set(v->diag, -QS_EFORMAT, "'%s': tokenizer.json: %s", v->fname, what);
}

static int set_token(struct vocab *v, json_int_t id, const char *text, int type)
{
	if (id < 0 || (uint64_t)id >= v->n)
		return lie(v, "token '%.80s' has id %lld, outside the model's vocabulary", text,
			   (long long)id);
	if (v->tokens[id]) {
		if (strcmp(v->tokens[id], text) != 0)
			return lie(v, "tokens '%.80s' and '%.80s' share id %lld", v->tokens[id], text,
				   (long long)id);
		if (type != TT_NORMAL)
			v->types[id] = type;
		return 0;
	}
	v->tokens[id] = strdup(text);
	if (!v->tokens[id])
		return qs_diag_set(v->diag, -ENOMEM, "out of memory");
	v->types[id] = type;
	return 0;
}

/* Detects the pre-tokenizer llama.cpp needs from tokenizer.json's
 * pre_tokenizer; NULL when it is none of the known ones. */
static const char *detect_pre(json_t *pt)
{
	if (!json_is_object(pt))
		return NULL;
	const char *type = json_string_value(json_object_get(pt, "type"));
	if (!type)
		return NULL;
	if (strcmp(type, "ByteLevel") == 0)
		return json_is_false(json_object_get(pt, "use_regex")) ? NULL : "gpt-2";
	if (strcmp(type, "Sequence") != 0)
		return NULL;
	json_t *list = json_object_get(pt, "pretokenizers");
	const char *found = NULL;
	bool bytelevel = false;
	size_t i;
	json_t *e;
	json_array_foreach(list, i, e) {
		const char *t = json_string_value(json_object_get(e, "type"));
		if (t && strcmp(t, "ByteLevel") == 0) {
			bytelevel = true;
			continue;
		}
		if (!t || strcmp(t, "Split") != 0 || found)
			return NULL;
		const char *re = json_string_value(
			json_object_get(json_object_get(e, "pattern"), "Regex"));
		for (size_t k = 0; re && k < sizeof(pre_regex) / sizeof(pre_regex[0]); k++)
			if (strcmp(re, pre_regex[k].regex) == 0)
				found = pre_regex[k].name;
		if (!found)
			return NULL;
	}
	return bytelevel ? found : NULL;
}

/* A special token named in tokenizer_config.json ("bos_token": "<s>" or
 * {"content": "<s>"}), else config.json's "<kind>_token_id".  -1: none. */
static int special_id(struct vocab *v, json_t *tcfg, json_t *cfg, const char *kind,
		      long long *out)
{
	char k[32];
	*out = -1;
	snprintf(k, sizeof(k), "%s_token", kind);
	json_t *t = tcfg ? json_object_get(tcfg, k) : NULL;
	if (json_is_object(t))
		t = json_object_get(t, "content");
	if (json_is_string(t)) {
		const char *text = json_string_value(t);
		for (uint64_t i = 0; i < v->n; i++)
			if (v->tokens[i] && strcmp(v->tokens[i], text) == 0) {
				*out = (long long)i;
				return 0;
			}
		return qs_diag_set(v->diag, -QS_EFORMAT,
				   "'%s': tokenizer_config.json: %s '%.80s' is not a token of "
				   "tokenizer.json", v->fname, k, text);
	}
	snprintf(k, sizeof(k), "%s_token_id", kind);
	t = cfg ? json_object_get(cfg, k) : NULL;
	if (json_is_array(t))  /* eos_token_id may list several: the first is the eos */
		t = json_array_get(t, 0);
	if (!t || json_is_null(t))
		return 0;
	if (!json_is_integer(t) || json_integer_value(t) < 0 ||
	    (uint64_t)json_integer_value(t) >= v->n)
		return qs_diag_set(v->diag, -QS_EFORMAT,
				   "'%s': config.json: %s is not a token id of the vocabulary",
				   v->fname, k);
	*out = json_integer_value(t);
	return 0;
}

static json_t *load(const char *text, size_t len)
{
	json_error_t e;
	return text ? json_loadb(text, len, 0, &e) : NULL;
}

void qs_gguf_vocab_config_keys(const char *tokenizer_config, struct qs_gguf_kv *kv)
{
	json_t *tcfg = tokenizer_config ? load(tokenizer_config, strlen(tokenizer_config)) : NULL;
	if (!json_is_object(tcfg)) {
		json_decref(tcfg);
		return;
	}
	json_t *ab = json_object_get(tcfg, "add_bos_token");
	if (json_is_boolean(ab))
		qs_gguf_kv_bool(kv, "tokenizer.ggml.add_bos_token", json_is_true(ab));
	json_t *ae = json_object_get(tcfg, "add_eos_token");
	if (json_is_boolean(ae))
		qs_gguf_kv_bool(kv, "tokenizer.ggml.add_eos_token", json_is_true(ae));
	json_t *ct = json_object_get(tcfg, "chat_template");
	if (json_is_array(ct)) {  /* [{"name": "default", "template": ...}, ...] */
		size_t i;
		json_t *e, *pick = NULL;
		json_array_foreach(ct, i, e) {
			const char *nm2 = json_string_value(json_object_get(e, "name"));
			if (nm2 && strcmp(nm2, "default") == 0)
				pick = json_object_get(e, "template");
		}
		ct = pick;
	}
	if (json_is_string(ct))
		qs_gguf_kv_str(kv, "tokenizer.chat_template", json_string_value(ct));
	json_decref(tcfg);
}

int qs_gguf_config_token(const char *tokenizer_config, const char *kind, char *buf,
			 size_t len)
{
	char k[32];
	snprintf(k, sizeof(k), "%s_token", kind);
	json_t *tcfg = tokenizer_config ? load(tokenizer_config, strlen(tokenizer_config)) : NULL;
	json_t *t = json_object_get(tcfg, k);
	if (json_is_object(t))
		t = json_object_get(t, "content");
	int rc = -1;
	if (json_is_string(t) && strlen(json_string_value(t)) < len) {
		snprintf(buf, len, "%s", json_string_value(t));
		rc = 0;
	}
	json_decref(tcfg);
	return rc;
}

bool qs_gguf_tokenizer_json_is_spm(const char *tokenizer_json, size_t len)
{
	json_t *root = load(tokenizer_json, len);
	json_t *model = json_object_get(root, "model");
	const char *type = json_string_value(json_object_get(model, "type"));
	bool spm = type && (strcmp(type, "Unigram") == 0 ||
			    (strcmp(type, "BPE") == 0 &&
			     json_is_true(json_object_get(model, "byte_fallback"))));
	json_decref(root);
	return spm;
}

int qs_gguf_vocab_from_hf(const char *fname, const char *tokenizer_json, size_t tj_len,
			  const char *tokenizer_config, const char *config_json,
			  const char *pre, uint64_t n_rows, struct qs_gguf_kv *kv,
			  struct qs_diag *diag)
{
	struct vocab v = {.fname = fname, .n = n_rows, .diag = diag};
	json_t *root = load(tokenizer_json, tj_len);
	json_t *tcfg = tokenizer_config ? load(tokenizer_config, strlen(tokenizer_config)) : NULL;
	json_t *cfg = config_json ? load(config_json, strlen(config_json)) : NULL;
	const char **merges = NULL;
	char **merge_buf = NULL;
	size_t nmerges = 0;
	int rc = 0;
	if (!json_is_object(root)) {
		rc = qs_diag_set(diag, -QS_EFORMAT, "'%s': tokenizer.json is not a JSON object",
				 fname);
		goto out;
	}
	if (tokenizer_config && !json_is_object(tcfg)) {
		rc = qs_diag_set(diag, -QS_EFORMAT,
				 "'%s': tokenizer_config.json is not a JSON object", fname);
		goto out;
	}
	json_t *model = json_object_get(root, "model");
	const char *mtype = json_string_value(json_object_get(model, "type"));
	if (!mtype || strcmp(mtype, "BPE") != 0) {
		rc = qs_diag_set(diag, -QS_EDTYPE,
				 "'%s': tokenizer.json model type '%s' is not supported (byte-level "
				 "BPE, or SentencePiece from a tokenizer.model, which the file "
				 "lacks); use --vocab-from FILE.gguf or --no-vocab",
				 fname, mtype ? mtype : "(none)");
		goto out;
	}
	if (json_is_true(json_object_get(model, "byte_fallback"))) {
		rc = qs_diag_set(diag, -QS_EDTYPE,
				 "'%s': tokenizer.json is a SentencePiece-style BPE (byte_fallback), "
				 "not byte-level, and the file holds no tokenizer.model to read "
				 "instead; use --vocab-from FILE.gguf or --no-vocab", fname);
		goto out;
	}
	if (!pre) {
		pre = detect_pre(json_object_get(root, "pre_tokenizer"));
		if (!pre) {
			char names[512];
			qs_gguf_pre_names(names, sizeof(names));
			rc = qs_diag_set(diag, -QS_EUSAGE,
					 "'%s': cannot tell the pre-tokenizer from tokenizer.json; "
					 "give --pre NAME (known: %s)", fname, names);
			goto out;
		}
	}
	json_t *vmap = json_object_get(model, "vocab");
	if (!json_is_object(vmap) || json_object_size(vmap) == 0) {
		rc = qs_diag_set(diag, -QS_EFORMAT, "'%s': tokenizer.json: model.vocab is missing",
				 fname);
		goto out;
	}
	v.index = vmap;
	v.tokens = calloc(n_rows ? n_rows : 1, sizeof(*v.tokens));
	v.types = calloc(n_rows ? n_rows : 1, sizeof(*v.types));
	if (!v.tokens || !v.types) {
		rc = qs_diag_set(diag, -ENOMEM, "out of memory");
		goto out;
	}
	const char *tok;
	json_t *idv;
	json_object_foreach(vmap, tok, idv) {
		if (!json_is_integer(idv)) {
			rc = lie(&v, "token '%.80s' has no integer id", tok);
			goto out;
		}
		if ((rc = set_token(&v, json_integer_value(idv), tok, TT_NORMAL)) < 0)
			goto out;
	}
	size_t i;
	json_t *at;
	json_array_foreach(json_object_get(root, "added_tokens"), i, at) {
		json_t *id = json_object_get(at, "id");
		const char *content = json_string_value(json_object_get(at, "content"));
		if (!json_is_integer(id) || !content) {
			rc = lie(&v, "added token %zu has no id or content", i);
			goto out;
		}
		int type = json_is_true(json_object_get(at, "special")) ? TT_CONTROL : TT_USER;
		if ((rc = set_token(&v, json_integer_value(id), content, type)) < 0)
			goto out;
	}
	/* rows of the embedding the tokenizer does not name (vocab_size rounded
	 * up for the hardware): placeholders, as convert_hf_to_gguf.py writes */
	for (uint64_t k = 0; k < n_rows; k++) {
		if (v.tokens[k])
			continue;
		char pad[32];
		snprintf(pad, sizeof(pad), "[PAD%llu]", (unsigned long long)k);
		if (!(v.tokens[k] = strdup(pad))) {
			rc = qs_diag_set(diag, -ENOMEM, "out of memory");
			goto out;
		}
		v.types[k] = TT_UNUSED;
	}

	json_t *jm = json_object_get(model, "merges");
	size_t nm = json_is_array(jm) ? json_array_size(jm) : 0;
	merges = calloc(nm ? nm : 1, sizeof(*merges));
	merge_buf = calloc(nm ? nm : 1, sizeof(*merge_buf));
	if (!merges || !merge_buf) {
		rc = qs_diag_set(diag, -ENOMEM, "out of memory");
		goto out;
	}
	json_t *m;
	json_array_foreach(jm, i, m) {
		/* "a b" (older files) or ["a", "b"] (tokenizers >= 0.20) */
		const char *a = NULL, *b = NULL;
		char *both = NULL;
		if (json_is_string(m)) {
			const char *s = json_string_value(m);
			const char *sp = strchr(s, ' ');
			if (!sp || strchr(sp + 1, ' ')) {
				rc = lie(&v, "merge %zu is not two tokens", i);
				goto out;
			}
			both = strdup(s);
			if (both) {
				both[sp - s] = 0;
				a = both;
				b = both + (sp - s) + 1;
			}
		} else if (json_is_array(m) && json_array_size(m) == 2) {
			a = json_string_value(json_array_get(m, 0));
			b = json_string_value(json_array_get(m, 1));
			if (!a || !b || strchr(a, ' ') || strchr(b, ' ')) {
				rc = lie(&v, "merge %zu is not two tokens without spaces", i);
				goto out;
			}
			size_t la = strlen(a), lb = strlen(b);
			both = malloc(la + lb + 2);
			if (both) {
				memcpy(both, a, la);
				both[la] = 0;
				memcpy(both + la + 1, b, lb + 1);
				a = both;
				b = both + la + 1;
			}
		} else {
			rc = lie(&v, "merge %zu is not two tokens", i);
			goto out;
		}
		if (!both) {
			rc = qs_diag_set(diag, -ENOMEM, "out of memory");
			goto out;
		}
		size_t la = strlen(a), lb = strlen(b);
		char *joined = malloc(la + lb + 1);
		if (!joined) {
			free(both);
			rc = qs_diag_set(diag, -ENOMEM, "out of memory");
			goto out;
		}
		memcpy(joined, a, la);
		memcpy(joined + la, b, lb + 1);
		bool ok = json_object_get(vmap, a) && json_object_get(vmap, b) &&
			  json_object_get(vmap, joined);
		free(joined);
		if (!ok) {
			rc = lie(&v, "merge %zu ('%.80s' + '%.80s') joins tokens the vocabulary lacks",
				 i, a, b);
			free(both);
			goto out;
		}
		/* llama.cpp wants "a b": the two halves, one space */
		both[la] = ' ';
		merge_buf[nmerges] = both;
		merges[nmerges++] = both;
	}

	long long bos, eos, unk, pad;
	if ((rc = special_id(&v, tcfg, cfg, "bos", &bos)) < 0 ||
	    (rc = special_id(&v, tcfg, cfg, "eos", &eos)) < 0 ||
	    (rc = special_id(&v, tcfg, cfg, "unk", &unk)) < 0 ||
	    (rc = special_id(&v, tcfg, cfg, "pad", &pad)) < 0)
		goto out;

	qs_gguf_kv_str(kv, "tokenizer.ggml.model", "gpt2");
	qs_gguf_kv_str(kv, "tokenizer.ggml.pre", pre);
	qs_gguf_kv_str_array(kv, "tokenizer.ggml.tokens", (const char *const *)v.tokens, v.n);
	qs_gguf_kv_i32_array(kv, "tokenizer.ggml.token_type", v.types, v.n);
	qs_gguf_kv_str_array(kv, "tokenizer.ggml.merges", merges, nmerges);
	if (bos >= 0)
		qs_gguf_kv_u32(kv, "tokenizer.ggml.bos_token_id", (uint32_t)bos);
	if (eos >= 0)
		qs_gguf_kv_u32(kv, "tokenizer.ggml.eos_token_id", (uint32_t)eos);
	if (unk >= 0)
		qs_gguf_kv_u32(kv, "tokenizer.ggml.unknown_token_id", (uint32_t)unk);
	if (pad >= 0)
		qs_gguf_kv_u32(kv, "tokenizer.ggml.padding_token_id", (uint32_t)pad);
	qs_gguf_vocab_config_keys(tokenizer_config, kv);
out:
	for (uint64_t k = 0; v.tokens && k < v.n; k++)
		free(v.tokens[k]);
	free(v.tokens);
	free(v.types);
	for (size_t k = 0; merge_buf && k < nmerges; k++)
		free(merge_buf[k]);
	free(merge_buf);
	free(merges);
	json_decref(root);
	json_decref(tcfg);
	json_decref(cfg);
	return rc;
}

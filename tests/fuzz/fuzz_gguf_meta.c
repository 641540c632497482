/* fuzz_gguf_meta.c - libFuzzer harness for the untrusted inputs export
 * parses besides the container: another GGUF's metadata (--vocab-from),
 * tokenizer.json and a SentencePiece tokenizer.model.  The first byte picks
 * the parser (2: tokenizer.model against a 512-row embedding; other even
 * values: GGUF metadata; odd: tokenizer.json against a 64-row embedding);
 * the rest is the input.  Promises: no crash or read out of bounds; a GGUF
 * parse copies only the keys asked for, each at least a key and a type
 * long; a tokenizer parse succeeds only with the vocabulary keys.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                             \
	do {                                                                    \
		if (!(cond)) {                                                  \
			fprintf(stderr, "%s:%d: broken promise: %s\n", __FILE__, \
				__LINE__, #cond);                               \
			abort();                                                \
		}                                                               \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	struct qs_diag d;
	struct qs_gguf_kv kv = {0};
	if (data[0] == 2) {
		/* model, tokens, scores, token_type, add_space_prefix at least */
		if (qs_gguf_vocab_from_spm("fuzz.qshard", data + 1, size - 1, NULL, 0, NULL, 512, &kv,
					   &d) == 0)
			CHECK(kv.count >= 5 || kv.oom);
	} else if (data[0] % 2 == 0) {
		static const char *const pre[] = {"tokenizer.", NULL};
		uint64_t found, ntok;
		if (qs_gguf_copy_keys_buf("fuzz.gguf", data + 1, size - 1, pre, &kv, &found, &ntok,
					  &d) == 0) {
			CHECK(kv.oom || kv.count == found);
			/* each copied entry is a key of the prefix and a type at least */
			CHECK(kv.oom || kv.len >= found * (8 + 10 + 4));
			if (!kv.oom && found)
				CHECK(memcmp(kv.buf + 8, "tokenizer.", 10) == 0);
		}
	} else {
		char *text = malloc(size);
		if (!text)
			return 0;
		memcpy(text, data + 1, size - 1);
		text[size - 1] = 0;
		if (qs_gguf_vocab_from_hf("fuzz.qshard", text, size - 1, NULL, NULL, NULL, 64, &kv,
					  &d) == 0)
			CHECK(kv.count >= 5 || kv.oom);
		free(text);
	}
	qs_gguf_kv_release(&kv);
	return 0;
}

/* fuzz_st_index.c - libFuzzer harness for the model.safetensors.index.json
 * parser.  The input is the index text.  A successful parse must name only
 * plain file names inside the checkpoint folder (the names are later joined
 * to the folder), list every tensor once and every shard once.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                             \
	do {                                                                    \
		if (!(cond)) {                                                  \
			fprintf(stderr, "%s:%d: broken promise: %s\n", __FILE__, \
				__LINE__, #cond);                               \
			abort();                                                \
		}                                                               \
	} while (0)

static void check_shard_name(const char *s)
{
	CHECK(s && s[0]);
	CHECK(strcmp(s, ".") != 0 && strcmp(s, "..") != 0);
	CHECK(strchr(s, '/') == NULL && strchr(s, '\\') == NULL);
}

static void check_index(const struct qs_st_index *idx)
{
	CHECK(idx->nshards <= idx->nentries);
	CHECK(idx->nentries == 0 || idx->entries);
	for (size_t i = 0; i < idx->nentries; i++) {
		const struct qs_st_index_entry *e = &idx->entries[i];
		CHECK(e->tensor && e->tensor[0]);
		check_shard_name(e->shard);
		size_t found = 0;
		for (size_t j = 0; j < idx->nshards; j++)
			found += strcmp(idx->shards[j], e->shard) == 0;
		CHECK(found == 1);
	}
	for (size_t j = 0; j < idx->nshards; j++)
		check_shard_name(idx->shards[j]);
	/* quadratic, so only on small indexes: tensor names are distinct */
	if (idx->nentries <= 256)
		for (size_t i = 0; i < idx->nentries; i++)
			for (size_t j = i + 1; j < idx->nentries; j++)
				CHECK(strcmp(idx->entries[i].tensor, idx->entries[j].tensor) != 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qs_st_index idx;
	struct qs_diag d = {{0}};
	int rc = qs_st_parse_index("fuzz.index.json", (const char *)data, size, &idx, &d);
	if (rc == 0) {
		check_index(&idx);
		qs_st_index_release(&idx);
	} else {
		CHECK(rc < 0);
		CHECK(strstr(d.msg, "'fuzz.index.json'") != NULL);
	}
	return 0;
}

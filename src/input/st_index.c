/* st_index.c - model.safetensors.index.json, the map from tensor name to
 * shard file that sharded Hugging Face checkpoints carry.
 *
 * The shard names come from an untrusted file and are joined to the
 * checkpoint folder, so anything that could name a file outside that folder
 * is rejected here, before a path is ever built.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "safetensors.h"
#include "util.h"

void qs_st_index_release(struct qs_st_index *idx)
{
	if (!idx)
		return;
	for (size_t i = 0; i < idx->nentries; i++) {
		free(idx->entries[i].tensor);
		free(idx->entries[i].shard);
	}
	free(idx->entries);
	for (size_t i = 0; i < idx->nshards; i++)
		free(idx->shards[i]);
	free(idx->shards);
	memset(idx, 0, sizeof(*idx));
}

/* A shard name must be a plain file name inside the checkpoint folder. */
static bool shard_name_ok(const char *s)
{
	if (s[0] == '\0' || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return false;
	return strchr(s, '/') == NULL && strchr(s, '\\') == NULL;
}

int qs_st_parse_index(const char *fname, const char *text, size_t len,
		      struct qs_st_index *out, struct qs_diag *diag)
{
	memset(out, 0, sizeof(*out));
	if (!fname)
		fname = "?";
	json_error_t jerr;
	json_t *root = json_loadb(text ? text : "", text ? len : 0,
				  JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': not valid JSON: %s (line %d, column %d)",
				   fname, jerr.text, jerr.line, jerr.column);
	int ret = 0;
	/* Distinct shard names, as a hash set so huge indexes stay linear. */
	json_t *seen = json_object();
	json_t *map = json_object_get(root, "weight_map");
	if (!seen) {
		ret = qs_diag_set(diag, -ENOMEM, "'%s': out of memory", fname);
		goto fail;
	}
	if (!json_is_object(root)) {
		ret = qs_diag_set(diag, -QS_EFORMAT, "'%s': not a JSON object", fname);
		goto fail;
	}
	if (!json_is_object(map)) {
		ret = qs_diag_set(diag, -QS_EFORMAT,
				  "'%s': 'weight_map' missing or not a JSON object", fname);
		goto fail;
	}
	size_t n = json_object_size(map);
	if (n) {
		out->entries = calloc(n, sizeof(*out->entries));
		out->shards = calloc(n, sizeof(*out->shards));
		if (!out->entries || !out->shards) {
			ret = qs_diag_set(diag, -ENOMEM, "'%s': out of memory", fname);
			goto fail;
		}
	}
	const char *key;
	json_t *val;
	json_object_foreach(map, key, val) {
		if (key[0] == '\0') {
			ret = qs_diag_set(diag, -QS_EFORMAT,
					  "'%s': 'weight_map' holds an empty tensor name", fname);
			goto fail;
		}
		if (!json_is_string(val)) {
			ret = qs_diag_set(diag, -QS_EFORMAT,
					  "'%s': tensor '%s': shard name is not a string",
					  fname, key);
			goto fail;
		}
		const char *shard = json_string_value(val);
		if (!shard_name_ok(shard)) {
			ret = qs_diag_set(diag, -QS_EFORMAT,
					  "'%s': tensor '%s': shard name '%s' is not a plain file name in the checkpoint folder",
					  fname, key, shard);
			goto fail;
		}
		struct qs_st_index_entry *e = &out->entries[out->nentries];
		e->tensor = strdup(key);
		e->shard = strdup(shard);
		out->nentries++;
		if (!e->tensor || !e->shard) {
			ret = qs_diag_set(diag, -ENOMEM, "'%s': out of memory", fname);
			goto fail;
		}
		if (!json_object_get(seen, shard)) {
			char *copy = strdup(shard);
			if (!copy || json_object_set_new(seen, shard, json_true()) < 0) {
				free(copy);
				ret = qs_diag_set(diag, -ENOMEM, "'%s': out of memory", fname);
				goto fail;
			}
			out->shards[out->nshards++] = copy;
		}
	}
	json_decref(seen);
	json_decref(root);
	return 0;
fail:
	qs_st_index_release(out);
	json_decref(seen);
	json_decref(root);
	return ret;
}

/* safetensors.c - parsing and validating one safetensors header.
 *
 * Every rule of https://huggingface.co/docs/safetensors is checked before a
 * byte of the data area is trusted: the header is an attacker-controlled
 * JSON document and its offsets are later used for reads of hundreds of GB,
 * so a bad offset must never reach the reader.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "safetensors.h"
#include "util.h"

/* strerror() text with a lower-case first letter, to fit the one-line
 * lower-case diagnostic style. */
static const char *lower_strerror(int err, char *buf, size_t len)
{
	snprintf(buf, len, "%s", strerror(err));
	if (buf[0] >= 'A' && buf[0] <= 'Z')
		buf[0] = (char)(buf[0] - 'A' + 'a');
	return buf;
}

static void release_tensors(struct qs_st_tensor *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(t[i].name);
	free(t);
}

void qs_st_header_release(struct qs_st_header *h)
{
	if (!h)
		return;
	release_tensors(h->tensors, h->ntensors);
	free(h->metadata_json);
	memset(h, 0, sizeof(*h));
}

/* A JSON integer that fits in u64 and is not negative.  jansson already
 * rejects integers beyond long long while parsing. */
static bool get_u64(const json_t *v, uint64_t *out)
{
	if (!json_is_integer(v))
		return false;
	json_int_t i = json_integer_value(v);
	if (i < 0)
		return false;
	*out = (uint64_t)i;
	return true;
}

static int parse_metadata(const char *fname, json_t *meta, char **out,
			  struct qs_diag *diag)
{
	if (!json_is_object(meta))
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': '__metadata__' is not a JSON object", fname);
	const char *key;
	json_t *val;
	json_object_foreach(meta, key, val) {
		if (!json_is_string(val))
			return qs_diag_set(diag, -QS_EFORMAT,
					   "'%s': '__metadata__' value '%s' is not a string",
					   fname, key);
	}
	/* Sorted, compact text so the same metadata always fingerprints the
	 * same, whatever order the writer used. */
	*out = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS);
	if (!*out)
		return qs_diag_set(diag, -ENOMEM, "'%s': out of memory", fname);
	return 0;
}

/* Fills t from one header entry; begin/end get the relative data offsets. */
static int parse_entry(const char *fname, const char *name, json_t *entry,
		       struct qs_st_tensor *t, uint64_t *begin, uint64_t *end,
		       struct qs_diag *diag)
{
	if (name[0] == '\0')
		return qs_diag_set(diag, -QS_EFORMAT, "'%s': tensor with an empty name", fname);
	if (!json_is_object(entry))
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': tensor '%s': entry is not a JSON object", fname, name);

	json_t *dtype = json_object_get(entry, "dtype");
	json_t *shape = json_object_get(entry, "shape");
	json_t *offs = json_object_get(entry, "data_offsets");
	if (!json_is_string(dtype))
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': tensor '%s': 'dtype' missing or not a string",
				   fname, name);
	if (!json_is_array(shape))
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': tensor '%s': 'shape' missing or not an array",
				   fname, name);
	if (!json_is_array(offs) || json_array_size(offs) != 2)
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': tensor '%s': 'data_offsets' is not an array of 2 integers",
				   fname, name);

	if (qs_dtype_parse(json_string_value(dtype), &t->dtype) < 0)
		return qs_diag_set(diag, -QS_EDTYPE, "'%s': tensor '%s': unknown dtype '%s'",
				   fname, name, json_string_value(dtype));

	size_t ndim = json_array_size(shape);
	if (ndim > QS_MAX_DIMS)
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': tensor '%s': %zu dimensions, at most %d supported",
				   fname, name, ndim, QS_MAX_DIMS);
	t->ndim = (uint32_t)ndim;
	uint64_t count = 1;
	bool overflow = false;
	for (size_t d = 0; d < ndim; d++) {
		if (!get_u64(json_array_get(shape, d), &t->shape[d]))
			return qs_diag_set(diag, -QS_EFORMAT,
					   "'%s': tensor '%s': shape holds a value that is not a non-negative integer",
					   fname, name);
		/* Keep scanning after an overflow: a later 0 makes the product
		 * 0, but the size is still reported as unrepresentable because
		 * no reader could index such a shape. */
		if (!qs_mul_u64(count, t->shape[d], &count))
			overflow = true;
	}
	if (!overflow && !qs_mul_u64(count, qs_dtype_size(t->dtype), &t->nbytes))
		overflow = true;
	if (overflow)
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': tensor '%s': shape size overflows 64 bits", fname, name);

	if (!get_u64(json_array_get(offs, 0), begin) ||
	    !get_u64(json_array_get(offs, 1), end))
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': tensor '%s': 'data_offsets' is not an array of 2 non-negative integers",
				   fname, name);
	if (*begin > *end)
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': tensor '%s': data offsets begin %llu > end %llu",
				   fname, name, (unsigned long long)*begin,
				   (unsigned long long)*end);
	if (*end - *begin != t->nbytes)
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': tensor '%s': shape and dtype need %llu bytes but data offsets span %llu",
				   fname, name, (unsigned long long)t->nbytes,
				   (unsigned long long)(*end - *begin));
	return 0;
}

/* Sorting key: begin, then end (zero-size tensors sitting at the boundary
 * of a non-empty one come first so they do not look like overlap), then
 * name for a total, deterministic order. */
static int cmp_tensor(const void *a, const void *b)
{
	const struct qs_st_tensor *x = a, *y = b;
	if (x->offset != y->offset)
		return x->offset < y->offset ? -1 : 1;
	if (x->nbytes != y->nbytes)
		return x->nbytes < y->nbytes ? -1 : 1;
	return strcmp(x->name, y->name);
}

int qs_st_parse_header(const char *fname, const char *json, size_t json_len,
		       uint64_t file_size, struct qs_st_header *out,
		       struct qs_diag *diag)
{
	memset(out, 0, sizeof(*out));
	if (!fname)
		fname = "?";
	if ((uint64_t)json_len > QS_ST_MAX_HEADER)
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': header length %zu exceeds the %llu-byte limit",
				   fname, json_len, QS_ST_MAX_HEADER);
	if (file_size < 8 || file_size - 8 < (uint64_t)json_len)
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': header length %zu extends past end of file (%llu bytes)",
				   fname, json_len, (unsigned long long)file_size);
	uint64_t data_offset = 8 + (uint64_t)json_len;
	uint64_t data_size = file_size - data_offset;

	json_error_t jerr;
	/* json_loadb accepts trailing whitespace, which is how writers pad
	 * the header to 8-byte alignment, and rejects anything else after
	 * the object. */
	json_t *root = json_loadb(json ? json : "", json ? json_len : 0,
				  JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': header is not valid JSON: %s (line %d, column %d)",
				   fname, jerr.text, jerr.line, jerr.column);
	int ret = 0;
	if (!json_is_object(root)) {
		ret = qs_diag_set(diag, -QS_EFORMAT, "'%s': header is not a JSON object", fname);
		goto out;
	}

	size_t cap = json_object_size(root);
	struct qs_st_tensor *tensors = cap ? calloc(cap, sizeof(*tensors)) : NULL;
	if (cap && !tensors) {
		ret = qs_diag_set(diag, -ENOMEM, "'%s': out of memory", fname);
		goto out;
	}
	size_t n = 0;
	char *meta = NULL;
	const char *key;
	json_t *val;
	json_object_foreach(root, key, val) {
		if (strcmp(key, "__metadata__") == 0) {
			ret = parse_metadata(fname, val, &meta, diag);
			if (ret < 0)
				goto fail;
			continue;
		}
		struct qs_st_tensor *t = &tensors[n];
		uint64_t begin = 0, end = 0;
		ret = parse_entry(fname, key, val, t, &begin, &end, diag);
		if (ret < 0)
			goto fail;
		if (end > data_size) {
			ret = qs_diag_set(diag, -QS_EFORMAT,
					  "'%s': tensor '%s' extends past end of file (data ends at %llu, data area is %llu bytes)",
					  fname, key, (unsigned long long)end,
					  (unsigned long long)data_size);
			goto fail;
		}
		t->name = strdup(key);
		if (!t->name) {
			ret = qs_diag_set(diag, -ENOMEM, "'%s': out of memory", fname);
			goto fail;
		}
		/* cannot overflow: begin <= end <= file_size - data_offset */
		t->offset = data_offset + begin;
		n++;
	}

	if (n > 1)
		qsort(tensors, n, sizeof(*tensors), cmp_tensor);
	/* The tensors must tile the data area exactly: no byte unaccounted
	 * for (a hole could hide data), none shared (an overlap would make
	 * two tensors alias). */
	uint64_t cursor = data_offset;
	const char *prev = NULL;
	for (size_t i = 0; i < n; i++) {
		const struct qs_st_tensor *t = &tensors[i];
		if (t->offset > cursor) {
			ret = qs_diag_set(diag, -QS_EFORMAT,
					  "'%s': tensor '%s': hole of %llu bytes before its data",
					  fname, t->name,
					  (unsigned long long)(t->offset - cursor));
			goto fail;
		}
		if (t->offset < cursor) {
			ret = qs_diag_set(diag, -QS_EFORMAT,
					  "'%s': tensor '%s' overlaps tensor '%s'",
					  fname, t->name, prev ? prev : "?");
			goto fail;
		}
		cursor = t->offset + t->nbytes;
		if (t->nbytes > 0)
			prev = t->name;
	}
	if (cursor != file_size) {
		ret = qs_diag_set(diag, -QS_EFORMAT,
				  "'%s': %llu bytes at the end of the data area belong to no tensor",
				  fname, (unsigned long long)(file_size - cursor));
		goto fail;
	}

	out->tensors = tensors;
	out->ntensors = n;
	out->data_offset = data_offset;
	out->metadata_json = meta;
	goto out;
fail:
	release_tensors(tensors, n);
	free(meta);
out:
	json_decref(root);
	return ret;
}

int qs_st_read_file(const char *path, struct qs_st_header *out,
		    uint64_t *file_size, int64_t *mtime_ns, struct qs_diag *diag)
{
	struct qs_file_id id;
	int ret = qs_st_read_file_id(path, out, &id, diag);
	if (ret == 0 && file_size)
		*file_size = id.size;
	if (ret == 0 && mtime_ns)
		*mtime_ns = id.mtime_ns;
	return ret;
}

int qs_st_read_file_id(const char *path, struct qs_st_header *out, struct qs_file_id *id,
		       struct qs_diag *diag)
{
	char ebuf[128];
	memset(out, 0, sizeof(*out));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		if (e == ELOOP)
			return qs_diag_set(diag, -e,
					   "'%s': cannot open: too many levels of symbolic links (symlink loop?)",
					   path);
		return qs_diag_set(diag, -e, "'%s': cannot open: %s", path,
				   lower_strerror(e, ebuf, sizeof(ebuf)));
	}
	int ret;
	char *buf = NULL;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		ret = qs_diag_set(diag, -errno, "'%s': cannot stat: %s", path,
				  lower_strerror(errno, ebuf, sizeof(ebuf)));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = qs_diag_set(diag, -QS_EFORMAT, "'%s': not a regular file", path);
		goto out;
	}
	uint64_t size = (uint64_t)st.st_size;
	if (size < 8) {
		ret = qs_diag_set(diag, -QS_EFORMAT,
				  "'%s': file is %llu bytes, too short for the 8-byte header length",
				  path, (unsigned long long)size);
		goto out;
	}
	uint8_t lenbuf[8];
	ret = qs_pread_full(fd, lenbuf, sizeof(lenbuf), 0);
	if (ret < 0) {
		ret = qs_diag_set(diag, ret, "'%s': cannot read header length: %s", path,
				  ret == -QS_EFORMAT ? "file shrank while reading"
						     : lower_strerror(-ret, ebuf, sizeof(ebuf)));
		goto out;
	}
	uint64_t n = qs_get_le64(lenbuf);
	if (n > QS_ST_MAX_HEADER) {
		ret = qs_diag_set(diag, -QS_EFORMAT,
				  "'%s': header length %llu exceeds the %llu-byte limit",
				  path, (unsigned long long)n, QS_ST_MAX_HEADER);
		goto out;
	}
	if (n > size - 8) {
		ret = qs_diag_set(diag, -QS_EFORMAT,
				  "'%s': header length %llu extends past end of file (%llu bytes)",
				  path, (unsigned long long)n, (unsigned long long)size);
		goto out;
	}
	buf = malloc(n ? (size_t)n : 1);
	if (!buf) {
		ret = qs_diag_set(diag, -ENOMEM, "'%s': out of memory reading header", path);
		goto out;
	}
	ret = qs_pread_full(fd, buf, (size_t)n, 8);
	if (ret < 0) {
		ret = qs_diag_set(diag, ret, "'%s': cannot read header: %s", path,
				  ret == -QS_EFORMAT ? "file shrank while reading"
						     : lower_strerror(-ret, ebuf, sizeof(ebuf)));
		goto out;
	}
	ret = qs_st_parse_header(path, buf, (size_t)n, size, out, diag);
	if (ret < 0)
		goto out;
	qs_file_id_from_stat(&st, id);
out:
	free(buf);
	close(fd);
	return ret;
}

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

#include "safetensors.h"
#include "st_stream.h"
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

/* The tensors (offsets relative to the data area) must tile the data
 * area exactly; on success out owns tensors and meta. */
static int finish_header(const char *fname, struct qs_st_tensor *tensors, size_t n, char *meta,
			 uint64_t data_offset, uint64_t file_size, struct qs_st_header *out,
			 struct qs_diag *diag)
{
	int ret = 0;
	for (size_t i = 0; i < n; i++)
		/* cannot overflow: end <= file_size - data_offset was checked */
		tensors[i].offset += data_offset;
	if (n > 1)
		qsort(tensors, n, sizeof(*tensors), cmp_tensor);
	/* No byte unaccounted for (a hole could hide data), none shared (an
	 * overlap would make two tensors alias). */
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
	return 0;
fail:
	release_tensors(tensors, n);
	free(meta);
	return ret;
}

/* The header of len bytes, from mem or (mem NULL) from fd at offset 8. */
static int parse_header(const char *fname, const uint8_t *mem, int fd, uint64_t len,
			uint64_t file_size, struct qs_st_header *out, struct qs_diag *diag)
{
	memset(out, 0, sizeof(*out));
	if (len > QS_ST_MAX_HEADER)
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': header length %llu exceeds the %llu-byte limit",
				   fname, (unsigned long long)len, QS_ST_MAX_HEADER);
	if (file_size < 8 || file_size - 8 < len)
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': header length %llu extends past end of file (%llu bytes)",
				   fname, (unsigned long long)len, (unsigned long long)file_size);
	uint64_t data_offset = 8 + len;
	struct qs_st_tensor *tensors;
	size_t n;
	char *meta;
	int ret = qs_st_parse_stream(fname, mem, fd, 8, len, file_size - data_offset, &tensors,
				     &n, &meta, diag);
	if (ret < 0)
		return ret;
	return finish_header(fname, tensors, n, meta, data_offset, file_size, out, diag);
}

int qs_st_parse_header(const char *fname, const char *json, size_t json_len,
		       uint64_t file_size, struct qs_st_header *out,
		       struct qs_diag *diag)
{
	return parse_header(fname ? fname : "?", (const uint8_t *)(json ? json : ""),
			    -1, json ? json_len : 0, file_size, out, diag);
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
	/* streamed from the file: memory does not grow with the header */
	ret = parse_header(path, NULL, fd, n, size, out, diag);
	if (ret < 0)
		goto out;
	qs_file_id_from_stat(&st, id);
out:
	close(fd);
	return ret;
}

/* st_writer.c - writing a safetensors file (used by unpack), loadable by the
 * reference Python safetensors library and by our own reader.
 *
 * The header is written up front with consecutive offsets, so the data can
 * be streamed tensor by tensor without ever holding a whole tensor.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "fsafe.h"
#include "safetensors.h"
#include "util.h"

struct qs_st_writer {
	int fd;
	int dirfd;             /* the caller's folder (not owned), or AT_FDCWD */
	char *path;            /* name relative to dirfd, for unlinkat and messages */
	uint64_t data_offset;  /* 8 + header length */
	uint64_t total;        /* declared data bytes */
	uint64_t written;      /* data bytes appended so far */
};

static const char *lower_strerror(int err, char *buf, size_t len)
{
	snprintf(buf, len, "%s", strerror(err));
	if (buf[0] >= 'A' && buf[0] <= 'Z')
		buf[0] = (char)(buf[0] - 'A' + 'a');
	return buf;
}

static json_t *u64_json(uint64_t v)
{
	/* jansson integers are signed; callers checked v fits. */
	return json_integer((json_int_t)v);
}

/* Builds the header object; *total gets the data area size. */
static int build_header(const char *path, const struct qs_st_out_tensor *tensors,
			size_t n, const char *metadata_json, json_t **out,
			uint64_t *total, struct qs_diag *diag)
{
	json_t *root = json_object();
	if (!root)
		return qs_diag_set(diag, -ENOMEM, "'%s': out of memory", path);
	int ret = 0;
	/* "" is how a container without metadata may hand it over. */
	if (metadata_json && metadata_json[0]) {
		json_error_t jerr;
		json_t *meta = json_loads(metadata_json, JSON_REJECT_DUPLICATES, &jerr);
		if (!json_is_object(meta)) {
			json_decref(meta);
			ret = qs_diag_set(diag, -QS_EFORMAT,
					  "'%s': metadata is not a JSON object", path);
			goto fail;
		}
		const char *k;
		json_t *v;
		json_object_foreach(meta, k, v) {
			if (!json_is_string(v)) {
				ret = qs_diag_set(diag, -QS_EFORMAT,
						  "'%s': metadata value '%s' is not a string",
						  path, k);
				json_decref(meta);
				goto fail;
			}
		}
		/* Set first: jansson keeps insertion order, so __metadata__
		 * leads the header as the reference writer does. */
		if (json_object_set_new(root, "__metadata__", meta) < 0) {
			ret = qs_diag_set(diag, -ENOMEM, "'%s': out of memory", path);
			goto fail;
		}
	}
	uint64_t off = 0;
	for (size_t i = 0; i < n; i++) {
		const struct qs_st_out_tensor *t = &tensors[i];
		const char *name = t->name ? t->name : "";
		if (!name[0] || strcmp(name, "__metadata__") == 0) {
			ret = qs_diag_set(diag, -QS_EUSAGE, "'%s': invalid tensor name '%s'",
					  path, name);
			goto fail;
		}
		if (json_object_get(root, name)) {
			ret = qs_diag_set(diag, -QS_EUSAGE, "'%s': tensor '%s' given twice",
					  path, name);
			goto fail;
		}
		unsigned esize = qs_dtype_size(t->dtype);
		if (esize == 0 || t->ndim > QS_MAX_DIMS) {
			ret = qs_diag_set(diag, -QS_EUSAGE,
					  "'%s': tensor '%s': invalid dtype or dimension count",
					  path, name);
			goto fail;
		}
		uint64_t bytes = esize, end;
		bool ok = true;
		json_t *shape = json_array();
		json_t *entry = json_object();
		json_t *offs = json_array();
		for (uint32_t d = 0; d < t->ndim; d++) {
			ok = ok && qs_mul_u64(bytes, t->shape[d], &bytes) &&
			     t->shape[d] <= (uint64_t)LLONG_MAX;
			if (shape && json_array_append_new(shape, u64_json(t->shape[d])) < 0) {
				json_decref(shape);
				shape = NULL;
			}
		}
		ok = ok && qs_add_u64(off, bytes, &end) && end <= (uint64_t)LLONG_MAX;
		if (!ok) {
			json_decref(shape);
			json_decref(entry);
			json_decref(offs);
			ret = qs_diag_set(diag, -QS_ETOOBIG, "'%s': tensor '%s': too large",
					  path, name);
			goto fail;
		}
		/* Non-stealing sets, then one decref of every local: exact
		 * ownership whichever allocation failed. */
		bool built = shape && entry && offs &&
			     json_array_append_new(offs, u64_json(off)) == 0 &&
			     json_array_append_new(offs, u64_json(end)) == 0 &&
			     json_object_set_new(entry, "dtype",
						 json_string(qs_dtype_name(t->dtype))) == 0 &&
			     json_object_set(entry, "shape", shape) == 0 &&
			     json_object_set(entry, "data_offsets", offs) == 0 &&
			     json_object_set(root, name, entry) == 0;
		json_decref(shape);
		json_decref(offs);
		json_decref(entry);
		if (!built) {
			ret = qs_diag_set(diag, -ENOMEM, "'%s': out of memory", path);
			goto fail;
		}
		off = end;
	}
	*out = root;
	*total = off;
	return 0;
fail:
	json_decref(root);
	return ret;
}

int qs_st_writer_open(const char *path, const struct qs_st_out_tensor *tensors,
		      size_t n, const char *metadata_json,
		      struct qs_st_writer **out, struct qs_diag *diag)
{
	return qs_st_writer_openat(AT_FDCWD, path, tensors, n, metadata_json, out, diag);
}

int qs_st_writer_openat(int dirfd, const char *path, const struct qs_st_out_tensor *tensors,
			size_t n, const char *metadata_json, struct qs_st_writer **out,
			struct qs_diag *diag)
{
	*out = NULL;
	json_t *root = NULL;
	uint64_t total = 0;
	int ret = build_header(path, tensors, n, metadata_json, &root, &total, diag);
	if (ret < 0)
		return ret;
	char *text = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	if (!text)
		return qs_diag_set(diag, -ENOMEM, "'%s': out of memory", path);
	size_t len = strlen(text);
	/* Pad with spaces (valid JSON whitespace) so the data area starts
	 * 8-byte aligned, which lets readers map tensors in place. */
	size_t padded = len + (8 - (8 + len) % 8) % 8;
	if (padded > QS_ST_MAX_HEADER) {
		free(text);
		return qs_diag_set(diag, -QS_ETOOBIG, "'%s': header larger than %llu bytes",
				   path, QS_ST_MAX_HEADER);
	}
	uint8_t *buf = malloc(8 + padded);
	if (!buf) {
		free(text);
		return qs_diag_set(diag, -ENOMEM, "'%s': out of memory", path);
	}
	qs_put_le64(buf, padded);
	memcpy(buf + 8, text, len);
	memset(buf + 8 + len, ' ', padded - len);
	free(text);

	struct qs_st_writer *w = calloc(1, sizeof(*w));
	if (!w || !(w->path = strdup(path))) {
		free(w);
		free(buf);
		return qs_diag_set(diag, -ENOMEM, "'%s': out of memory", path);
	}
	char ebuf[128];
	w->dirfd = dirfd;
	/* a new file, never one reached through a planted link or shared
	 * with another name */
	w->fd = openat(dirfd, path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (w->fd < 0) {
		int e = errno;
		struct stat lst;
		if (e == EEXIST && fstatat(dirfd, path, &lst, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISLNK(lst.st_mode))
			ret = qs_diag_set(diag, -ELOOP, "'%s': cannot create: %s", path,
					  qs_write_open_error(-ELOOP));
		else
			ret = qs_diag_set(diag, -e, "'%s': cannot create: %s", path,
					  lower_strerror(e, ebuf, sizeof(ebuf)));
		free(buf);
		free(w->path);
		free(w);
		return ret;
	}
	w->data_offset = 8 + padded;
	w->total = total;
	ret = qs_pwrite_full(w->fd, buf, 8 + padded, 0);
	free(buf);
	if (ret < 0) {
		qs_diag_set(diag, ret, "'%s': cannot write header: %s", path,
			    lower_strerror(-ret, ebuf, sizeof(ebuf)));
		qs_st_writer_abort(w);
		return ret;
	}
	*out = w;
	return 0;
}

int qs_st_writer_write(struct qs_st_writer *w, const void *data, size_t len,
		       struct qs_diag *diag)
{
	if ((uint64_t)len > w->total - w->written)
		return qs_diag_set(diag, -QS_EUSAGE,
				   "'%s': writing %zu bytes past the %llu declared", w->path,
				   len, (unsigned long long)w->total);
	int ret = qs_pwrite_full(w->fd, data, len, w->data_offset + w->written);
	if (ret < 0) {
		char ebuf[128];
		return qs_diag_set(diag, ret, "'%s': cannot write: %s", w->path,
				   lower_strerror(-ret, ebuf, sizeof(ebuf)));
	}
	w->written += len;
	return 0;
}

int qs_st_writer_close(struct qs_st_writer *w, struct qs_diag *diag)
{
	if (!w)
		return 0;
	char ebuf[128];
	int ret = 0;
	if (w->written != w->total)
		ret = qs_diag_set(diag, -QS_EUSAGE,
				  "'%s': %llu of %llu declared data bytes written", w->path,
				  (unsigned long long)w->written, (unsigned long long)w->total);
	else if (fsync(w->fd) < 0)
		ret = qs_diag_set(diag, -errno, "'%s': cannot sync: %s", w->path,
				  lower_strerror(errno, ebuf, sizeof(ebuf)));
	if (ret < 0) {
		/* An incomplete file would load as garbage: remove it. */
		qs_st_writer_abort(w);
		return ret;
	}
	if (close(w->fd) < 0)
		ret = qs_diag_set(diag, -errno, "'%s': cannot close: %s", w->path,
				  lower_strerror(errno, ebuf, sizeof(ebuf)));
	if (ret < 0)
		unlinkat(w->dirfd, w->path, 0);
	free(w->path);
	free(w);
	return ret;
}

void qs_st_writer_abort(struct qs_st_writer *w)
{
	if (!w)
		return;
	close(w->fd);
	unlinkat(w->dirfd, w->path, 0);
	free(w->path);
	free(w);
}

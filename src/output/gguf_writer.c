/* gguf_writer.c - GGUF v3 files (layout in gguf.h, after ggml's
 * docs/gguf.md): the metadata builder, the streaming writer and a bounded
 * reader of another GGUF's metadata (for --vocab-from).
 *
 * The writer knows every tensor's type and size before any data exists,
 * so header, metadata and tensor infos are written first and the data is
 * then streamed tensor by tensor; nothing is ever seeked back to.  Like
 * convert, it writes NAME.partial and renames only after fsync, so a file
 * under the final name is always complete.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"
#include "util.h"

#define GGUF_MAGIC "GGUF"
#define GGUF_VERSION 3u

/* ------------------------------------------------------------ metadata */

void qs_gguf_kv_release(struct qs_gguf_kv *kv)
{
	free(kv->buf);
	memset(kv, 0, sizeof(*kv));
}

static uint8_t *kv_room(struct qs_gguf_kv *kv, size_t n)
{
	if (kv->oom)
		return NULL;
	if (kv->len + n > kv->cap) {
		size_t cap = kv->cap ? kv->cap : 4096;
		while (cap < kv->len + n)
			cap *= 2;
		uint8_t *b = realloc(kv->buf, cap);
		if (!b) {
			kv->oom = true;
			return NULL;
		}
		kv->buf = b;
		kv->cap = cap;
	}
	uint8_t *p = kv->buf + kv->len;
	kv->len += n;
	return p;
}

static void put_str(struct qs_gguf_kv *kv, const char *s, size_t n)
{
	uint8_t *p = kv_room(kv, 8 + n);
	if (!p)
		return;
	qs_put_le64(p, n);
	if (n)
		memcpy(p + 8, s, n);
}

static void put_u32(struct qs_gguf_kv *kv, uint32_t v)
{
	uint8_t *p = kv_room(kv, 4);
	if (p)
		qs_put_le32(p, v);
}

static void key(struct qs_gguf_kv *kv, const char *k, enum qs_gguf_vtype t)
{
	put_str(kv, k, strlen(k));
	put_u32(kv, t);
	kv->count++;
}

void qs_gguf_kv_u32(struct qs_gguf_kv *kv, const char *k, uint32_t v)
{
	key(kv, k, QS_GGUF_U32);
	put_u32(kv, v);
}

void qs_gguf_kv_i32(struct qs_gguf_kv *kv, const char *k, int32_t v)
{
	key(kv, k, QS_GGUF_I32);
	put_u32(kv, (uint32_t)v);
}

void qs_gguf_kv_f32(struct qs_gguf_kv *kv, const char *k, float v)
{
	uint32_t bits;
	memcpy(&bits, &v, 4);
	key(kv, k, QS_GGUF_F32);
	put_u32(kv, bits);
}

void qs_gguf_kv_bool(struct qs_gguf_kv *kv, const char *k, bool v)
{
	key(kv, k, QS_GGUF_BOOL);
	uint8_t *p = kv_room(kv, 1);
	if (p)
		*p = v ? 1 : 0;
}

void qs_gguf_kv_str(struct qs_gguf_kv *kv, const char *k, const char *v)
{
	key(kv, k, QS_GGUF_STRING);
	put_str(kv, v, strlen(v));
}

static void array_head(struct qs_gguf_kv *kv, const char *k, enum qs_gguf_vtype t, size_t n)
{
	key(kv, k, QS_GGUF_ARRAY);
	put_u32(kv, t);
	uint8_t *p = kv_room(kv, 8);
	if (p)
		qs_put_le64(p, n);
}

void qs_gguf_kv_str_array(struct qs_gguf_kv *kv, const char *k, const char *const *v,
			  size_t n)
{
	array_head(kv, k, QS_GGUF_STRING, n);
	for (size_t i = 0; i < n; i++)
		put_str(kv, v[i], strlen(v[i]));
}

void qs_gguf_kv_i32_array(struct qs_gguf_kv *kv, const char *k, const int32_t *v, size_t n)
{
	array_head(kv, k, QS_GGUF_I32, n);
	uint8_t *p = kv_room(kv, 4 * n);
	for (size_t i = 0; p && i < n; i++)
		qs_put_le32(p + 4 * i, (uint32_t)v[i]);
}

void qs_gguf_kv_f32_array(struct qs_gguf_kv *kv, const char *k, const float *v, size_t n)
{
	array_head(kv, k, QS_GGUF_F32, n);
	uint8_t *p = kv_room(kv, 4 * n);
	for (size_t i = 0; p && i < n; i++) {
		uint32_t bits;
		memcpy(&bits, &v[i], 4);
		qs_put_le32(p + 4 * i, bits);
	}
}

void qs_gguf_kv_raw(struct qs_gguf_kv *kv, const uint8_t *bytes, size_t len)
{
	uint8_t *p = kv_room(kv, len);
	if (p) {
		memcpy(p, bytes, len);
		kv->count++;
	}
}

/* ------------------------------------------------- reading another GGUF */

struct rd {
	const uint8_t *p;
	size_t left;
	bool bad;
};

static const uint8_t *rd_take(struct rd *r, uint64_t n)
{
	if (r->bad || n > r->left) {
		r->bad = true;
		return NULL;
	}
	const uint8_t *at = r->p;
	r->p += n;
	r->left -= (size_t)n;
	return at;
}

static uint64_t rd_u64(struct rd *r)
{
	const uint8_t *b = rd_take(r, 8);
	return b ? qs_get_le64(b) : 0;
}

static uint32_t rd_u32(struct rd *r)
{
	const uint8_t *b = rd_take(r, 4);
	return b ? qs_get_le32(b) : 0;
}

/* Skips one value of type t; depth bounds nested arrays. */
static void skip_value(struct rd *r, uint32_t t, int depth)
{
	static const uint8_t size[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
	if (t > QS_GGUF_F64 || depth > 4) {
		r->bad = true;
		return;
	}
	if (t == QS_GGUF_STRING) {
		rd_take(r, rd_u64(r));
		return;
	}
	if (t == QS_GGUF_ARRAY) {
		uint32_t et = rd_u32(r);
		uint64_t n = rd_u64(r);
		if (et > QS_GGUF_F64) {
			r->bad = true;
			return;
		}
		if (et != QS_GGUF_STRING && et != QS_GGUF_ARRAY) {
			if (n > r->left / size[et]) {
				r->bad = true;
				return;
			}
			rd_take(r, n * size[et]);
			return;
		}
		/* each element takes at least 8 bytes */
		if (n > r->left / 8) {
			r->bad = true;
			return;
		}
		for (uint64_t i = 0; i < n && !r->bad; i++)
			skip_value(r, et, depth + 1);
		return;
	}
	rd_take(r, size[t]);
}

int qs_gguf_copy_keys_buf(const char *fname, const uint8_t *buf, size_t size,
			  const char *const *prefixes, struct qs_gguf_kv *kv, uint64_t *found,
			  uint64_t *n_tokens, struct qs_diag *diag)
{
	*found = 0;
	*n_tokens = UINT64_MAX;
	struct rd r = {buf, size, false};
	const uint8_t *magic = rd_take(&r, 4);
	uint32_t version = rd_u32(&r);
	rd_u64(&r);  /* tensor count: the tensors are not read */
	uint64_t nkv = rd_u64(&r);
	if (!magic || r.bad || memcmp(magic, GGUF_MAGIC, 4) != 0 || (version != 2 && version != 3))
		return qs_diag_set(diag, -QS_EFORMAT, "'%s': not a GGUF v2/v3 file", fname);
	for (uint64_t i = 0; i < nkv; i++) {
		const uint8_t *start = r.p;
		uint64_t klen = rd_u64(&r);
		const uint8_t *k = rd_take(&r, klen);
		uint32_t t = rd_u32(&r);
		const uint8_t *vstart = r.p;
		skip_value(&r, t, 0);
		if (r.bad || klen > 65535)
			return qs_diag_set(diag, -QS_EFORMAT,
					   "'%s': metadata entry %llu is malformed or runs past the end",
					   fname, (unsigned long long)i);
		static const char tok[] = "tokenizer.ggml.tokens";
		if (klen == sizeof(tok) - 1 && memcmp(k, tok, klen) == 0 && t == QS_GGUF_ARRAY)
			*n_tokens = qs_get_le64(vstart + 4);
		for (size_t j = 0; prefixes[j]; j++) {
			size_t pl = strlen(prefixes[j]);
			if (klen >= pl && memcmp(k, prefixes[j], pl) == 0) {
				qs_gguf_kv_raw(kv, start, (size_t)(r.p - start));
				(*found)++;
				break;
			}
		}
	}
	return 0;
}

int qs_gguf_copy_keys(const char *path, const char *const *prefixes, struct qs_gguf_kv *kv,
		      uint64_t *found, uint64_t *n_tokens, struct qs_diag *diag)
{
	*found = 0;
	*n_tokens = UINT64_MAX;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return qs_diag_set(diag, -errno, "'%s': cannot open: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 24) {
		close(fd);
		return qs_diag_set(diag, -QS_EFORMAT, "'%s': not a GGUF file", path);
	}
	size_t size = (size_t)st.st_size;
	/* mapped, not read: only the metadata pages are touched, so a 40 GB
	 * vocabulary donor costs no memory */
	const uint8_t *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (map == MAP_FAILED)
		return qs_diag_set(diag, -errno, "'%s': cannot map: %s", path, strerror(errno));
	int rc = qs_gguf_copy_keys_buf(path, map, size, prefixes, kv, found, n_tokens, diag);
	munmap((void *)map, size);
	return rc;
}

/* ---------------------------------------------------------------- writer */

struct qs_gguf_writer {
	int fd;
	char *path, *partial;
	uint8_t *buf;
	size_t buf_len, buf_cap;
	uint64_t pos;            /* bytes written to the file so far (incl. buf) */
	uint64_t data_start;     /* file offset of the data section */
	struct qs_gguf_tensor *tensors;
	size_t n, cur;
	uint64_t cur_written;    /* bytes of the current tensor */
};

static int flush_buf(struct qs_gguf_writer *w, struct qs_diag *diag)
{
	size_t off = 0;
	while (off < w->buf_len) {
		ssize_t k = write(w->fd, w->buf + off, w->buf_len - off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return qs_diag_set(diag, k < 0 ? -errno : -EIO, "'%s': write failed: %s",
					   w->partial, k < 0 ? strerror(errno) : "no progress");
		off += (size_t)k;
	}
	w->buf_len = 0;
	return 0;
}

static int put(struct qs_gguf_writer *w, const void *data, size_t len, struct qs_diag *diag)
{
	const uint8_t *p = data;
	while (len) {
		size_t room = w->buf_cap - w->buf_len;
		size_t k = len < room ? len : room;
		memcpy(w->buf + w->buf_len, p, k);
		w->buf_len += k;
		w->pos += k;
		p += k;
		len -= k;
		if (w->buf_len == w->buf_cap) {
			int rc = flush_buf(w, diag);
			if (rc)
				return rc;
		}
	}
	return 0;
}

static int pad_to(struct qs_gguf_writer *w, uint64_t align, struct qs_diag *diag)
{
	static const uint8_t zeros[QS_GGUF_ALIGNMENT];
	uint64_t pad = (align - w->pos % align) % align;
	return pad ? put(w, zeros, (size_t)pad, diag) : 0;
}

static void writer_free(struct qs_gguf_writer *w)
{
	if (!w)
		return;
	if (w->fd >= 0)
		close(w->fd);
	free(w->path);
	free(w->partial);
	free(w->buf);
	free(w);
}

void qs_gguf_writer_abort(struct qs_gguf_writer *w)
{
	if (w && w->partial)
		unlink(w->partial);
	writer_free(w);
}

static uint64_t align_up(uint64_t v)
{
	return v + (QS_GGUF_ALIGNMENT - v % QS_GGUF_ALIGNMENT) % QS_GGUF_ALIGNMENT;
}

int qs_gguf_writer_open(const char *path, const struct qs_gguf_kv *kv,
			struct qs_gguf_tensor *tensors, size_t n, size_t buf_bytes,
			struct qs_gguf_writer **out, struct qs_diag *diag)
{
	*out = NULL;
	if (kv->oom)
		return qs_diag_set(diag, -ENOMEM, "'%s': out of memory", path);
	struct qs_gguf_writer *w = calloc(1, sizeof(*w));
	if (!w)
		return qs_diag_set(diag, -ENOMEM, "'%s': out of memory", path);
	w->fd = -1;
	w->path = strdup(path);
	w->partial = malloc(strlen(path) + 9);
	w->buf_cap = buf_bytes < 4096 ? 4096 : buf_bytes;
	w->buf = malloc(w->buf_cap);
	w->tensors = tensors;
	w->n = n;
	int rc;
	if (!w->path || !w->partial || !w->buf) {
		rc = qs_diag_set(diag, -ENOMEM, "'%s': out of memory", path);
		goto fail;
	}
	sprintf(w->partial, "%s.partial", path);
	/* O_NOFOLLOW: a planted symlink never redirects the write */
	w->fd = open(w->partial, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (w->fd < 0) {
		rc = qs_diag_set(diag, -errno, "'%s': cannot create: %s", w->partial,
				 strerror(errno));
		free(w->partial);
		w->partial = NULL;  /* not ours to remove */
		goto fail;
	}
	/* one writer per output; the kernel drops the lock if we die, so the
	 * .partial of a killed run is simply started over */
	if (flock(w->fd, LOCK_EX | LOCK_NB) != 0) {
		rc = qs_diag_set(diag, errno == EWOULDBLOCK ? -QS_EEXIST : -errno,
				 "'%s': another export is writing it", w->partial);
		close(w->fd);
		w->fd = -1;
		free(w->partial);
		w->partial = NULL;
		goto fail;
	}
	struct stat st;
	if (fstat(w->fd, &st) != 0 || !S_ISREG(st.st_mode) || ftruncate(w->fd, 0) != 0) {
		rc = qs_diag_set(diag, -errno, "'%s': cannot truncate: %s", w->partial,
				 strerror(errno));
		goto fail;
	}

	uint8_t h[24];
	memcpy(h, GGUF_MAGIC, 4);
	qs_put_le32(h + 4, GGUF_VERSION);
	qs_put_le64(h + 8, n);
	qs_put_le64(h + 16, kv->count);
	if ((rc = put(w, h, sizeof(h), diag)) || (rc = put(w, kv->buf, kv->len, diag)))
		goto fail;
	uint64_t off = 0;
	for (size_t i = 0; i < n; i++) {
		struct qs_gguf_tensor *t = &tensors[i];
		size_t nl = strlen(t->name);
		uint8_t b[8 + QS_GGUF_MAX_NAME + 4 + 8 * QS_GGUF_MAX_DIMS + 4 + 8];
		size_t at = 0;
		t->offset = off;
		qs_put_le64(b, nl);
		memcpy(b + 8, t->name, nl);
		at = 8 + nl;
		qs_put_le32(b + at, t->ndim);
		at += 4;
		for (uint32_t d = 0; d < t->ndim; d++, at += 8)
			qs_put_le64(b + at, t->ne[d]);
		qs_put_le32(b + at, t->type->id);
		qs_put_le64(b + at + 4, t->offset);
		at += 12;
		if ((rc = put(w, b, at, diag)))
			goto fail;
		off = align_up(off + t->bytes);
	}
	if ((rc = pad_to(w, QS_GGUF_ALIGNMENT, diag)))
		goto fail;
	w->data_start = w->pos;
	*out = w;
	return 0;
fail:
	qs_gguf_writer_abort(w);
	return rc;
}

int qs_gguf_writer_data(struct qs_gguf_writer *w, const void *data, size_t len,
			struct qs_diag *diag)
{
	if (w->cur >= w->n || w->cur_written + len > w->tensors[w->cur].bytes)
		return qs_diag_set(diag, -QS_EUSAGE, "'%s': tensor '%s': more data than declared",
				   w->partial, w->cur < w->n ? w->tensors[w->cur].name : "?");
	w->cur_written += len;
	return put(w, data, len, diag);
}

int qs_gguf_writer_end_tensor(struct qs_gguf_writer *w, struct qs_diag *diag)
{
	const struct qs_gguf_tensor *t = &w->tensors[w->cur];
	if (w->cur_written != t->bytes)
		return qs_diag_set(diag, -QS_EUSAGE,
				   "'%s': tensor '%s': %llu bytes written, %llu declared", w->partial,
				   t->name, (unsigned long long)w->cur_written,
				   (unsigned long long)t->bytes);
	w->cur++;
	w->cur_written = 0;
	/* the last tensor needs no padding after it */
	return w->cur < w->n ? pad_to(w, QS_GGUF_ALIGNMENT, diag) : 0;
}

int qs_gguf_writer_finish(struct qs_gguf_writer *w, struct qs_diag *diag)
{
	int rc = 0;
	if (w->cur != w->n)
		rc = qs_diag_set(diag, -QS_EUSAGE, "'%s': %zu of %zu tensors written", w->partial,
				 w->cur, w->n);
	if (!rc)
		rc = flush_buf(w, diag);
	if (!rc && fsync(w->fd) != 0)
		rc = qs_diag_set(diag, -errno, "'%s': fsync failed: %s", w->partial,
				 strerror(errno));
	if (!rc && rename(w->partial, w->path) != 0)
		rc = qs_diag_set(diag, -errno, "'%s': cannot rename to '%s': %s", w->partial,
				 w->path, strerror(errno));
	if (rc) {
		qs_gguf_writer_abort(w);
		return rc;
	}
	/* the rename is durable once the folder is synced */
	char *dir = strdup(w->path);
	if (dir) {
		int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
		free(dir);
	}
	writer_free(w);
	return 0;
}

/* cwriter.c - the appending container writer.  The output is written as
 * OUT.partial; after every tensor a checksummed record frame makes the file
 * its own journal, so an interrupted run can be resumed by keeping every
 * tensor whose record is intact and truncating the torn tail.  The final
 * name appears only by rename after index, trailer and fsync. */
#include "container.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "fsafe.h"
#include "outbuf.h"
#include "util.h"

/* A data frame written since the last record. */
struct pending {
	uint64_t off, size, xxh3;
};

struct qs_cwriter {
	char *final_path;
	char *partial_path;
	/* The output folder, opened once: the .partial is created, locked
	 * and renamed relative to it, so a folder swapped meanwhile (or a
	 * link planted in the path) cannot redirect a write. */
	int dirfd;
	const char *final_name, *partial_name;  /* last components */
	char *dir;
	int fd;
	uint64_t size;          /* bytes written so far: the next frame's offset */
	bool sync_each;
	struct qs_record *records;  /* deep copies, for the index */
	size_t nrecords, cap;
	struct pending *pending;    /* frames awaiting their record */
	size_t npending, pending_cap;
	/* O_DIRECT staging (outbuf.h), opened at the first append; every
	 * append goes through it and is on file after the next record */
	struct qs_outbuf ob;
};

static char *partial_name(const char *final_path)
{
	size_t n = strlen(final_path);
	char *p = malloc(n + sizeof(".partial"));
	if (p) {
		memcpy(p, final_path, n);
		memcpy(p + n, ".partial", sizeof(".partial"));
	}
	return p;
}

static char *dup_str(const char *s)
{
	return s ? strdup(s) : NULL;
}

static int record_copy(struct qs_record *dst, const struct qs_record *src)
{
	*dst = *src;
	dst->name = dup_str(src->name);
	dst->shard = dup_str(src->shard);
	dst->scheme = dup_str(src->scheme);
	dst->chunks = NULL;
	if (src->nchunks) {
		dst->chunks = malloc(src->nchunks * sizeof(*dst->chunks));
		if (dst->chunks)
			memcpy(dst->chunks, src->chunks, src->nchunks * sizeof(*dst->chunks));
	}
	if ((src->name && !dst->name) || (src->shard && !dst->shard) ||
	    (src->scheme && !dst->scheme) || (src->nchunks && !dst->chunks)) {
		qs_record_release(dst);
		return -ENOMEM;
	}
	return 0;
}

static void writer_free(struct qs_cwriter *w)
{
	if (!w)
		return;
	qs_outbuf_release(&w->ob);
	if (w->fd >= 0)
		close(w->fd);
	if (w->dirfd >= 0)
		close(w->dirfd);
	free(w->dir);
	for (size_t i = 0; i < w->nrecords; i++)
		qs_record_release(&w->records[i]);
	free(w->records);
	free(w->pending);
	free(w->final_path);
	free(w->partial_path);
	free(w);
}

static struct qs_cwriter *writer_new(const char *final_path, bool sync_each)
{
	struct qs_cwriter *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->fd = -1;
	w->dirfd = -1;
	w->sync_each = sync_each;
	w->final_path = strdup(final_path);
	w->partial_path = partial_name(final_path);
	if (!w->final_path || !w->partial_path) {
		writer_free(w);
		return NULL;
	}
	const char *pn;
	w->dir = qs_split_path(w->partial_path, &pn);
	w->final_name = qs_basename(w->final_path);
	w->partial_name = pn;
	if (!w->dir || !w->final_name[0]) {
		writer_free(w);
		return NULL;
	}
	return w;
}

enum open_mode { OPEN_CREATE, OPEN_FORCE, OPEN_RESUME };

/* Opens OUT.partial inside the output folder without following a link,
 * and takes the lock that makes this process its only writer: created
 * with O_EXCL (a fresh run), reused and truncated (--force) or reused as it
 * is (--resume).  The kernel drops the lock when the process dies, so a
 * kill -9 never leaves a stale one. */
static int open_partial(struct qs_cwriter *w, enum open_mode mode, struct qs_diag *diag)
{
	const char *pp = w->partial_path;
	w->dirfd = open(w->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (w->dirfd < 0)
		return qs_diag_set(diag, -errno, "'%s': cannot open the output folder: %s", w->dir,
				   qs_strerror(-errno));
	/* a --force run that finds the .partial renamed away (its writer
	 * just finished) starts again from the name */
	for (int attempt = 0; attempt < 4; attempt++) {
		int fd = -1, err;
		bool created = false;
		if (mode != OPEN_RESUME) {
			fd = openat(w->dirfd, w->partial_name,
				    O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
			created = fd >= 0;
			if (fd < 0 && errno != EEXIST)
				return qs_diag_set(diag, -errno, "'%s': cannot create: %s", pp,
						   qs_strerror(-errno));
		}
		if (fd < 0) {
			struct stat lst;
			if (fstatat(w->dirfd, w->partial_name, &lst, AT_SYMLINK_NOFOLLOW) == 0 &&
			    S_ISLNK(lst.st_mode))
				return qs_diag_set(diag, -ELOOP, "'%s': %s", pp,
						   qs_write_open_error(-ELOOP));
			if (mode == OPEN_CREATE)
				return qs_diag_set(diag, -QS_EEXIST,
						   "'%s' already exists: use --resume to continue "
						   "it or --force to start over",
						   pp);
			fd = openat(w->dirfd, w->partial_name, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
			if (fd < 0 && errno == ENOENT && mode == OPEN_FORCE)
				continue;
			if (fd < 0) {
				err = -errno;
				if (err == -ENOENT)
					return qs_diag_set(diag, err, "'%s': no partial output to resume",
							   pp);
				return qs_diag_set(diag, err, "'%s': cannot open: %s", pp,
						   qs_write_open_error(err));
			}
		}
		long holder;
		err = qs_lock_fd(fd, &holder);
		if (err == -QS_ELOCKED) {
			/* even one this call created is not ours to remove:
			 * the holder opened it in between */
			close(fd);
			if (holder > 0)
				return qs_diag_set(diag, err,
						   "'%s' is being written by another qshard (pid %ld); "
						   "wait for it to finish or stop it first",
						   pp, holder);
			return qs_diag_set(diag, err,
					   "'%s' is being written by another process; wait for it "
					   "to finish or stop it first",
					   pp);
		}
		if (err == 0)
			err = qs_still_named(w->dirfd, w->partial_name, fd);
		if (err == -ESTALE) {
			close(fd);
			continue;
		}
		struct stat st;
		if (err == 0 && fstat(fd, &st) != 0)
			err = -errno;
		if (err < 0) {
			close(fd);
			return qs_diag_set(diag, err, "'%s': cannot lock: %s", pp, qs_strerror(err));
		}
		if (!S_ISREG(st.st_mode)) {
			close(fd);
			return qs_diag_set(diag, -QS_EUSAGE, "'%s': not a regular file", pp);
		}
		/* another name for the same inode would see (and lose) what
		 * this run writes or truncates */
		if (st.st_nlink > 1) {
			close(fd);
			return qs_diag_set(diag, -QS_EUSAGE,
					   "'%s' has %lu hard links; qshard writes only files no "
					   "other name refers to",
					   pp, (unsigned long)st.st_nlink);
		}
		if (mode == OPEN_FORCE && !created && ftruncate(fd, 0) != 0) {
			err = -errno;
			close(fd);
			return qs_diag_set(diag, err, "'%s': cannot truncate: %s", pp,
					   qs_strerror(err));
		}
		w->fd = fd;
		return 0;
	}
	return qs_diag_set(diag, -QS_ELOCKED, "'%s' keeps being replaced by another process", pp);
}

/* Appends a copy of r (with its record frame location) to the index list. */
static int keep_record(struct qs_cwriter *w, const struct qs_record *r,
		       uint64_t offset, uint32_t content_len)
{
	if (w->nrecords == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 64;
		struct qs_record *nr = realloc(w->records, cap * sizeof(*nr));
		if (!nr)
			return -ENOMEM;
		w->records = nr;
		w->cap = cap;
	}
	int err = record_copy(&w->records[w->nrecords], r);
	if (err)
		return err;
	w->records[w->nrecords].record_offset = offset;
	w->records[w->nrecords].record_content_len = content_len;
	w->nrecords++;
	return 0;
}

static int append(struct qs_cwriter *w, const void *buf, size_t len, uint64_t *offset,
		  struct qs_diag *diag)
{
	int err = 0;
	if (!w->ob.open)
		err = qs_outbuf_open(&w->ob, w->fd, w->dirfd, w->partial_name, w->size);
	if (!err)
		err = qs_outbuf_append(&w->ob, buf, len);
	if (err)
		return qs_diag_set(diag, err, "'%s': write failed: %s", w->partial_path,
				   qs_strerror(err));
	if (offset)
		*offset = w->size;
	w->size += len;
	return 0;
}

int qs_cwriter_create(const char *final_path, const struct qs_header *h,
		      bool force, bool sync_each, struct qs_cwriter **out,
		      struct qs_diag *diag)
{
	*out = NULL;
	struct qs_cwriter *w = writer_new(final_path, sync_each);
	if (!w)
		return qs_diag_set(diag, -ENOMEM, "'%s': out of memory", final_path);
	int err = open_partial(w, force ? OPEN_FORCE : OPEN_CREATE, diag);
	if (err < 0) {
		writer_free(w);
		return err;
	}
	uint8_t *frame;
	size_t len;
	err = qs_header_encode(h, &frame, &len);
	if (err) {
		qs_diag_set(diag, err, "'%s': cannot encode the header: %s",
			    w->partial_path, qs_strerror(err));
		writer_free(w);
		return err;
	}
	err = append(w, frame, len, NULL, diag);
	free(frame);
	if (err) {
		writer_free(w);
		return err;
	}
	*out = w;
	return 0;
}

int qs_cwriter_frame(struct qs_cwriter *w, const void *frame, size_t len,
		     uint64_t *offset, struct qs_diag *diag)
{
	if (w->npending == w->pending_cap) {
		size_t cap = w->pending_cap ? w->pending_cap * 2 : 64;
		struct pending *np = realloc(w->pending, cap * sizeof(*np));
		if (!np)
			return qs_diag_set(diag, -ENOMEM, "'%s': out of memory", w->partial_path);
		w->pending = np;
		w->pending_cap = cap;
	}
	uint64_t off;
	int err = append(w, frame, len, &off, diag);
	if (err)
		return err;
	w->pending[w->npending++] = (struct pending){off, len, XXH3_64bits(frame, len)};
	if (offset)
		*offset = off;
	return 0;
}

int qs_cwriter_record(struct qs_cwriter *w, const struct qs_record *r,
		      struct qs_diag *diag)
{
	uint8_t *frame;
	size_t len;
	uint64_t off;
	const char *name = r->name ? r->name : "";
	/* The record must list exactly the frames written since the previous
	 * one (resume relies on it); their hashes come from here. */
	if (r->nchunks != w->npending)
		return qs_diag_set(diag, -QS_EUSAGE,
				   "'%s': tensor '%s': record lists %u chunks but %zu frames "
				   "were written",
				   w->partial_path, name, r->nchunks, w->npending);
	struct qs_record copy = *r;
	/* never the caller's table: a zero-chunk (empty) tensor must not
	 * free it below */
	copy.chunks = NULL;
	if (r->nchunks) {
		copy.chunks = malloc(r->nchunks * sizeof(*copy.chunks));
		if (!copy.chunks)
			return qs_diag_set(diag, -ENOMEM, "'%s': out of memory", w->partial_path);
		memcpy(copy.chunks, r->chunks, r->nchunks * sizeof(*copy.chunks));
	}
	for (uint32_t c = 0; c < r->nchunks; c++) {
		if (copy.chunks[c].frame_offset != w->pending[c].off ||
		    copy.chunks[c].frame_size != w->pending[c].size) {
			free(copy.chunks);
			return qs_diag_set(diag, -QS_EUSAGE,
					   "'%s': tensor '%s': chunk %u is not the frame written "
					   "for it",
					   w->partial_path, name, c);
		}
		copy.chunks[c].frame_xxh3 = w->pending[c].xxh3;
	}
	int err = qs_record_encode(&copy, &frame, &len);
	if (err) {
		free(copy.chunks);
		return qs_diag_set(diag, err, "'%s': tensor '%s': cannot encode the record: %s",
				   w->partial_path, name, qs_strerror(err));
	}
	err = append(w, frame, len, &off, diag);
	free(frame);
	if (!err) {
		err = keep_record(w, &copy, off, (uint32_t)(len - 8));
		if (err)
			qs_diag_set(diag, err, "'%s': out of memory", w->partial_path);
	}
	free(copy.chunks);
	if (err)
		return err;
	w->npending = 0;
	/* the record and its frames leave the staging buffer: a run killed
	 * from here on finds the tensor on file */
	err = qs_outbuf_flush(&w->ob);
	if (err)
		return qs_diag_set(diag, err, "'%s': write failed: %s", w->partial_path,
				   qs_strerror(err));
	if (w->sync_each && fdatasync(w->fd) != 0) {
		err = -errno;
		return qs_diag_set(diag, err, "'%s': fdatasync failed: %s", w->partial_path,
				   qs_strerror(err));
	}
	if (w->sync_each)
		qs_outbuf_drop_cached(&w->ob);
	return 0;
}

/* Makes the rename itself durable. */
static int sync_dir(int dirfd)
{
	int err = fsync(dirfd) == 0 ? 0 : -errno;
	/* some file systems cannot fsync a folder; the data itself is synced */
	if (err == -EINVAL || err == -ENOTSUP)
		err = 0;
	return err;
}

int qs_cwriter_finish(struct qs_cwriter *w, struct qs_diag *diag)
{
	uint8_t *index;
	size_t ilen;
	uint64_t ioff;
	int err = qs_index_encode(w->records, w->nrecords, &index, &ilen);
	if (err) {
		qs_diag_set(diag, err, "'%s': cannot encode the index: %s", w->partial_path,
			    qs_strerror(err));
		goto out;
	}
	err = append(w, index, ilen, &ioff, diag);
	free(index);
	if (err)
		goto out;
	struct qs_trailer t = {
		.version = QS_FORMAT_VERSION,
		.index_offset = ioff,
		.index_size = ilen,
		.file_size = w->size + QS_TRAILER_FRAME_SIZE,
		.tensor_count = w->nrecords,
	};
	uint8_t tr[QS_TRAILER_FRAME_SIZE];
	qs_trailer_encode(&t, tr);
	err = append(w, tr, sizeof(tr), NULL, diag);
	if (err)
		goto out;
	err = qs_outbuf_flush(&w->ob);
	if (err) {
		qs_diag_set(diag, err, "'%s': write failed: %s", w->partial_path,
			    qs_strerror(err));
		goto out;
	}
	if (fsync(w->fd) != 0) {
		err = -errno;
		qs_diag_set(diag, err, "'%s': fsync failed: %s", w->partial_path,
			    qs_strerror(err));
		goto out;
	}
	qs_outbuf_drop_cached(&w->ob);
	if (renameat(w->dirfd, w->partial_name, w->dirfd, w->final_name) != 0) {
		err = -errno;
		qs_diag_set(diag, err, "'%s': cannot rename to '%s': %s", w->partial_path,
			    w->final_path, qs_strerror(err));
		goto out;
	}
	err = sync_dir(w->dirfd);
	if (err)
		qs_diag_set(diag, err, "'%s': cannot sync the containing folder: %s",
			    w->final_path, qs_strerror(err));
out:
	writer_free(w);
	return err;
}

int qs_cwriter_close_partial(struct qs_cwriter *w, struct qs_diag *diag)
{
	/* after a write error the staged bytes stay unwritten: resume cuts
	 * the file back to its last intact record anyway */
	int err = w->ob.open && !w->ob.failed ? qs_outbuf_flush(&w->ob) : 0;
	if (err)
		qs_diag_set(diag, err, "'%s': write failed: %s", w->partial_path,
			    qs_strerror(err));
	if (fdatasync(w->fd) != 0 && !err) {
		err = -errno;
		qs_diag_set(diag, err, "'%s': fdatasync failed: %s", w->partial_path,
			    qs_strerror(err));
	}
	if (w->ob.open)
		qs_outbuf_drop_cached(&w->ob);
	if (close(w->fd) != 0 && !err) {
		err = -errno;
		qs_diag_set(diag, err, "'%s': close failed: %s", w->partial_path,
			    qs_strerror(err));
	}
	w->fd = -1;
	writer_free(w);
	return err;
}

uint64_t qs_cwriter_size(const struct qs_cwriter *w)
{
	return w->size;
}

/* ------------------------------------------------------------- resume */

/* Reads a whole skippable frame's content (at most QS_MAX_META_FRAME). */
static int read_meta(int fd, uint64_t off, uint64_t fsize, uint8_t **out)
{
	if (fsize < 8 || fsize - 8 > QS_MAX_META_FRAME)
		return -QS_EFORMAT;
	uint8_t *buf = malloc(fsize - 8 ? (size_t)(fsize - 8) : 1);
	if (!buf)
		return -ENOMEM;
	int err = qs_pread_full(fd, buf, (size_t)(fsize - 8), off + 8);
	if (err) {
		free(buf);
		return err;
	}
	*out = buf;
	return 0;
}

struct span {
	uint64_t off, size;
};

/* Hashes size bytes at off in bounded pieces. */
static int hash_range(int fd, uint64_t off, uint64_t size, uint8_t *piece,
		      size_t piece_len, XXH3_state_t *st, uint64_t *out)
{
	XXH3_64bits_reset(st);
	while (size > 0) {
		size_t n = size < piece_len ? (size_t)size : piece_len;
		int err = qs_pread_full(fd, piece, n, off);
		if (err)
			return err;
		XXH3_64bits_update(st, piece, n);
		off += n;
		size -= n;
	}
	*out = XXH3_64bits_digest(st);
	return 0;
}

/* 1 when r's chunk table names exactly the data frames seen since the
 * previous record, in order, and their bytes still hash as recorded (a
 * crash without per-tensor sync can persist a record before the frames
 * it describes); 0 when not; -errno on I/O failure. */
static int chunks_match(int fd, const struct qs_record *r, const struct span *seen,
			size_t n)
{
	if (r->nchunks != n)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (r->chunks[i].frame_offset != seen[i].off ||
		    r->chunks[i].frame_size != seen[i].size)
			return 0;
	if (n == 0)
		return 1;
	size_t piece_len = 1u << 20;
	uint8_t *piece = malloc(piece_len);
	XXH3_state_t *st = XXH3_createState();
	int res = 1;
	if (!piece || !st)
		res = -ENOMEM;
	for (size_t i = 0; i < n && res == 1; i++) {
		uint64_t h;
		int err = hash_range(fd, seen[i].off, seen[i].size, piece, piece_len, st, &h);
		if (err)
			res = err == -QS_EFORMAT ? 0 : err;
		else if (h != r->chunks[i].frame_xxh3)
			res = 0;
	}
	free(piece);
	XXH3_freeState(st);
	return res;
}

/* Walks the frames after the header, keeping every complete tensor, and
 * returns in *good_end the offset just after the last kept record. */
static int scan_partial(struct qs_cwriter *w, uint64_t pos, uint64_t fsize,
			uint64_t *good_end, struct qs_diag *diag)
{
	struct span *seen = NULL;
	size_t nseen = 0, cap = 0;
	int err = 0;
	*good_end = pos;
	for (;;) {
		uint32_t magic;
		uint64_t sz;
		int r = qs_frame_size_at(w->fd, pos, fsize, &magic, &sz);
		if (r == -QS_EFORMAT)
			break;
		if (r < 0) {
			err = qs_diag_set(diag, r, "'%s': read failed: %s", w->partial_path,
					  qs_strerror(r));
			break;
		}
		if (magic == QS_ZSTD_MAGIC) {
			if (nseen == cap) {
				size_t nc = cap ? cap * 2 : 64;
				struct span *ns = realloc(seen, nc * sizeof(*ns));
				if (!ns) {
					err = qs_diag_set(diag, -ENOMEM, "'%s': out of memory",
							  w->partial_path);
					break;
				}
				seen = ns;
				cap = nc;
			}
			seen[nseen++] = (struct span){pos, sz};
			pos += sz;
			continue;
		}
		/* an index or trailer means a finished run that was not renamed:
		 * its records were all seen already, the index is rewritten */
		if (magic != QS_MAGIC_RECORD)
			break;
		uint8_t *content;
		r = read_meta(w->fd, pos, sz, &content);
		if (r == -QS_EFORMAT)
			break;
		if (r < 0) {
			err = qs_diag_set(diag, r, "'%s': read failed: %s", w->partial_path,
					  qs_strerror(r));
			break;
		}
		struct qs_record rec;
		r = qs_record_decode(w->partial_path, content, (size_t)(sz - 8), &rec, NULL);
		free(content);
		if (r == -ENOMEM) {
			err = qs_diag_set(diag, r, "'%s': out of memory", w->partial_path);
			break;
		}
		if (r < 0)
			break;
		int ok = chunks_match(w->fd, &rec, seen, nseen);
		if (ok < 0) {
			qs_record_release(&rec);
			err = qs_diag_set(diag, ok, "'%s': read failed: %s", w->partial_path,
					  qs_strerror(ok));
			break;
		}
		if (ok) {
			r = keep_record(w, &rec, pos, (uint32_t)(sz - 8));
			if (r) {
				qs_record_release(&rec);
				err = qs_diag_set(diag, r, "'%s': out of memory", w->partial_path);
				break;
			}
		}
		qs_record_release(&rec);
		if (!ok)
			break;
		pos += sz;
		*good_end = pos;
		nseen = 0;
	}
	free(seen);
	return err;
}

/* Describes the first line where two input descriptions (plan.c) differ:
 * "was: <line>; now: <line>". */
static void first_difference(const char *was, const char *now, char *out, size_t len)
{
	if (!was || !now) {
		snprintf(out, len, "tensor names, shapes, dtypes, sizes or shard modification times");
		return;
	}
	while (*was && *now) {
		size_t a = strcspn(was, "\n"), b = strcspn(now, "\n");
		if (a != b || memcmp(was, now, a) != 0) {
			snprintf(out, len, "was %.*s; now %.*s", (int)(a > 250 ? 250 : a), was,
				 (int)(b > 250 ? 250 : b), now);
			return;
		}
		was += a + (was[a] == '\n');
		now += b + (now[b] == '\n');
	}
	if (*was)
		snprintf(out, len, "was %.*s; now absent", (int)strcspn(was, "\n"), was);
	else
		snprintf(out, len, "now also %.*s", (int)strcspn(now, "\n"), now);
}

/* Returns 1 when the .partial (of fsize bytes) is a strict prefix of the
 * header frame for h and has been rewritten with the whole header, 0 when
 * it is not such a prefix, negative on failure. */
static int restart_torn_header(struct qs_cwriter *w, const struct qs_header *h,
			       uint64_t fsize, struct qs_diag *diag)
{
	uint8_t *frame, *disk = NULL;
	size_t len;
	int err = qs_header_encode(h, &frame, &len);
	if (err)
		return qs_diag_set(diag, err, "'%s': cannot encode the header: %s",
				   w->partial_path, qs_strerror(err));
	int torn = 0;
	if (fsize < len) {
		disk = malloc(fsize + 1);
		if (!disk) {
			free(frame);
			return -ENOMEM;
		}
		torn = qs_pread_full(w->fd, disk, (size_t)fsize, 0) == 0 &&
		       memcmp(disk, frame, (size_t)fsize) == 0;
	}
	if (torn) {
		if (ftruncate(w->fd, 0) != 0) {
			err = qs_diag_set(diag, -errno, "'%s': cannot truncate: %s",
					  w->partial_path, strerror(errno));
		} else {
			w->size = 0;
			qs_outbuf_release(&w->ob);  /* reopened at the new end */
			err = append(w, frame, len, NULL, diag);
		}
	}
	free(disk);
	free(frame);
	return err < 0 ? err : torn;
}

int qs_cwriter_resume(const char *final_path, const struct qs_header *h,
		      bool sync_each, struct qs_cwriter **out,
		      struct qs_record **kept, size_t *nkept, struct qs_diag *diag)
{
	*out = NULL;
	*kept = NULL;
	*nkept = 0;
	struct qs_cwriter *w = writer_new(final_path, sync_each);
	if (!w)
		return qs_diag_set(diag, -ENOMEM, "'%s': out of memory", final_path);
	const char *pp = w->partial_path;
	int err = open_partial(w, OPEN_RESUME, diag);
	if (err < 0)
		goto fail;
	struct stat st;
	if (fstat(w->fd, &st) != 0) {
		err = -errno;
		qs_diag_set(diag, err, "'%s': cannot stat: %s", pp, qs_strerror(err));
		goto fail;
	}
	uint64_t fsize = (uint64_t)st.st_size;
	/* A run killed while writing its header leaves a prefix of the
	 * header this run would write: nothing of value, start afresh. */
	err = restart_torn_header(w, h, fsize, diag);
	if (err == 1) {
		*out = w;
		return 0;
	}
	if (err < 0)
		goto fail;
	uint32_t magic;
	uint64_t hsize;
	uint8_t *content = NULL;
	err = qs_frame_size_at(w->fd, 0, fsize, &magic, &hsize);
	if (!err && magic != QS_MAGIC_HEADER)
		err = -QS_EFORMAT;
	if (!err)
		err = read_meta(w->fd, 0, hsize, &content);
	if (err) {
		qs_diag_set(diag, err, "'%s': header: %s", pp,
			    err == -QS_EFORMAT ? "not a qshard header frame; use --force to start over"
					       : qs_strerror(err));
		goto fail;
	}
	struct qs_header old;
	err = qs_header_decode(pp, content, (size_t)(hsize - 8), &old, diag);
	free(content);
	if (err)
		goto fail;
	if (old.input_fp != h->input_fp) {
		char what[600];
		first_difference(old.input, h->input, what, sizeof(what));
		err = qs_diag_set(diag, -QS_EMISMATCH,
				  "'%s': input differs from the interrupted run: %s", pp, what);
	} else if (old.options_fp != h->options_fp) {
		err = qs_diag_set(diag, -QS_EMISMATCH,
				  "'%s': options differ from the interrupted run (was '%s', now '%s')",
				  pp, old.options ? old.options : "",
				  h->options ? h->options : "");
	}
	qs_header_release(&old);
	if (err)
		goto fail;

	uint64_t good_end;
	err = scan_partial(w, hsize, fsize, &good_end, diag);
	if (err)
		goto fail;
	if (ftruncate(w->fd, (off_t)good_end) != 0 || fsync(w->fd) != 0) {
		err = -errno;
		qs_diag_set(diag, err, "'%s': cannot truncate the torn tail: %s", pp,
			    qs_strerror(err));
		goto fail;
	}
	w->size = good_end;
	/* the scan read every kept frame back: none of it is needed again */
	(void)posix_fadvise(w->fd, 0, 0, POSIX_FADV_DONTNEED);

	if (w->nrecords) {
		struct qs_record *ks = calloc(w->nrecords, sizeof(*ks));
		if (!ks) {
			err = qs_diag_set(diag, -ENOMEM, "'%s': out of memory", pp);
			goto fail;
		}
		for (size_t i = 0; i < w->nrecords; i++) {
			err = record_copy(&ks[i], &w->records[i]);
			if (err) {
				for (size_t j = 0; j < i; j++)
					qs_record_release(&ks[j]);
				free(ks);
				qs_diag_set(diag, err, "'%s': out of memory", pp);
				goto fail;
			}
		}
		*kept = ks;
		*nkept = w->nrecords;
	}
	*out = w;
	return 0;
fail:
	writer_free(w);
	return err;
}

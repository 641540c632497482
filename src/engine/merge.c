/* merge.c - qs_merge: joins the part files of convert --part K/N into the
 * container one convert with the same options writes, byte for byte.
 *
 * Every part's header is the whole conversion's header but for the
 * " part=K/N" suffix of its options text (part_id.c), so the final header
 * is recovered exactly; the data frames are copied unchanged (their bytes
 * depend only on the plan), so the offsets, and with them the records, come
 * out as a single convert lays them out.  A tensor split between parts has
 * one record per piece; the pieces' chunk tables are joined and the piece
 * that ends the tensor carries the checksum of its whole source.
 *
 * Everything that can be checked from metadata (same input, same options,
 * each part once, the pieces chaining) is checked before the output is
 * created; frame and payload checksums are checked while copying, and a
 * failure removes the .partial, so no output ever claims to be complete. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>
#include <zstd.h>

#include "container.h"
#include "util.h"

struct part {
	const char *path;
	const char *fname;         /* for messages */
	struct qs_qfile *qf;
	unsigned k, n;
	size_t prefix_len;         /* options text before " part=K/N" */
};

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static bool str_eq(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* The options of the whole conversion: the same text before the suffix. */
static bool same_options(const struct part *a, const struct part *b)
{
	return a->n == b->n && a->prefix_len == b->prefix_len &&
	       memcmp(a->qf->header.options, b->qf->header.options, a->prefix_len) == 0 &&
	       str_eq(a->qf->header.creator, b->qf->header.creator);
}

/* The input the conversion read: checkpoint description, config.json and
 * metadata (config.json is not part of the input fingerprint). */
static bool same_input(const struct part *a, const struct part *b)
{
	const struct qs_header *x = &a->qf->header, *y = &b->qf->header;
	return x->input_fp == y->input_fp && str_eq(x->input, y->input) &&
	       str_eq(x->config_json, y->config_json) &&
	       str_eq(x->metadata_json, y->metadata_json);
}

/* "was LINE; here LINE" for the first line where two input descriptions
 * differ, so a stale part says which shard changed. */
static void input_difference(const char *ref, const char *here, char *out, size_t len)
{
	if (!ref || !here) {
		snprintf(out, len, "no input description to compare");
		return;
	}
	while (*ref || *here) {
		size_t a = strcspn(ref, "\n"), b = strcspn(here, "\n");
		if (a != b || memcmp(ref, here, a) != 0) {
			snprintf(out, len, "%.*s there, %.*s here", (int)(a > 200 ? 200 : a), ref,
				 (int)(b > 200 ? 200 : b), here);
			return;
		}
		ref += a + (ref[a] == '\n');
		here += b + (here[b] == '\n');
	}
	snprintf(out, len, "config.json or metadata differ");
}

/* Opens one part, naming an unfinished one. */
static int open_part(struct part *p, struct qs_diag *diag)
{
	p->fname = qs_basename(p->path);
	size_t len = strlen(p->path);
	struct stat st;
	if (len > 8 && strcmp(p->path + len - 8, ".partial") == 0)
		return qs_diag_set(diag, -QS_EFORMAT,
				   "'%s': an unfinished part: run its convert --part again "
				   "with --resume",
				   p->fname);
	if (stat(p->path, &st) != 0 && errno == ENOENT) {
		char partial[4200];
		snprintf(partial, sizeof(partial), "%s.partial", p->path);
		if (stat(partial, &st) == 0)
			return qs_diag_set(diag, -ENOENT,
					   "'%s': missing, and '%s.partial' is unfinished: run "
					   "its convert --part again with --resume",
					   p->fname, p->fname);
	}
	int rc = qs_qfile_open(p->path, &p->qf, diag);
	if (rc < 0)
		return rc;
	if (!qs_part_id_parse(p->qf->header.options, &p->k, &p->n, &p->prefix_len))
		return qs_diag_set(diag, -QS_EMISMATCH,
				   "'%s': not a part file (written without --part K/N)", p->fname);
	return 0;
}

/* The part every other one is compared with: the one most parts agree
 * with in input and options (the first given on a tie), so the message
 * names the odd one out. */
static size_t reference(const struct part *parts, size_t n)
{
	size_t best = 0, best_votes = 0;
	for (size_t i = 0; i < n; i++) {
		size_t votes = 0;
		for (size_t j = 0; j < n; j++)
			votes += same_options(&parts[i], &parts[j]) && same_input(&parts[i], &parts[j]);
		if (votes > best_votes) {
			best = i;
			best_votes = votes;
		}
	}
	return best;
}

static int check_set(const struct part *parts, size_t np, const struct part *ref,
		     const char *output, const struct part **by_k, struct qs_diag *diag)
{
	for (size_t i = 0; i < np; i++) {
		const struct part *p = &parts[i];
		if (p->n != ref->n)
			return qs_diag_set(diag, -QS_EMISMATCH,
					   "'%s': foreign part: part %u of %u, but '%s' is part %u of %u",
					   p->fname, p->k, p->n, ref->fname, ref->k, ref->n);
		if (!same_options(p, ref))
			return qs_diag_set(diag, -QS_EMISMATCH,
					   "'%s': foreign part: made with other options or qshard "
					   "version than '%s' ('%.*s' by %s there, '%.*s' by %s here)",
					   p->fname, ref->fname, (int)ref->prefix_len,
					   ref->qf->header.options, ref->qf->header.creator,
					   (int)p->prefix_len, p->qf->header.options,
					   p->qf->header.creator);
		if (!same_input(p, ref)) {
			char what[600];
			input_difference(ref->qf->header.input, p->qf->header.input, what,
					 sizeof(what));
			return qs_diag_set(diag, -QS_EMISMATCH,
					   "'%s': stale part: made from another state of the input "
					   "than '%s' (%s)",
					   p->fname, ref->fname, what);
		}
		if (by_k[p->k - 1])
			return qs_diag_set(diag, -QS_EMISMATCH,
					   "part %u of %u given twice: '%s' and '%s'", p->k, p->n,
					   by_k[p->k - 1]->fname, p->fname);
		by_k[p->k - 1] = p;
	}
	for (unsigned k = 1; k <= ref->n; k++) {
		if (by_k[k - 1])
			continue;
		char want[4096];
		if (qs_part_path(output, k, ref->n, want, sizeof(want)) < 0)
			snprintf(want, sizeof(want), "?");
		return qs_diag_set(diag, -QS_EMISMATCH, "part %u of %u is missing (expected '%s')",
				   k, ref->n, qs_basename(want));
	}
	return 0;
}

static uint64_t record_rows(const struct qs_record *r)
{
	uint64_t n = 1;
	for (uint32_t d = 0; d + 1 < r->ndim; d++)
		n *= r->shape[d];  /* qfile checked the product */
	return n;
}

/* Rows [*begin, *end) that a record's chunks hold. */
static void record_range(const struct qs_record *r, uint64_t *begin, uint64_t *end)
{
	if (!r->nchunks) {
		*begin = *end = 0;
		return;
	}
	*begin = r->chunks[0].row_begin;
	const struct qs_chunk_entry *last = &r->chunks[r->nchunks - 1];
	*end = last->row_begin + last->row_count;
}

static bool same_tensor(const struct qs_record *a, const struct qs_record *b)
{
	return strcmp(a->name, b->name) == 0 && str_eq(a->shard, b->shard) &&
	       a->dtype == b->dtype && a->ndim == b->ndim &&
	       memcmp(a->shape, b->shape, sizeof(a->shape[0]) * a->ndim) == 0 &&
	       strcmp(a->scheme, b->scheme) == 0;
}

struct named {
	const char *name;
	const char *fname;
};

static int cmp_named(const void *a, const void *b)
{
	return strcmp(((const struct named *)a)->name, ((const struct named *)b)->name);
}

/* The parts, in order, must hold every tensor once: a piece that leaves
 * rows over is the last record of its part and the next non-empty part
 * continues it where it stopped.  *tensors receives the merged count. */
static int check_chain(const struct part *const *by_k, unsigned n, size_t *tensors,
		       size_t *split, struct qs_diag *diag)
{
	const struct qs_record *open = NULL;
	const struct part *open_in = NULL;
	uint64_t open_end = 0;
	size_t total = 0, count = 0;
	bool was_split = false;
	int rc = 0;
	*split = 0;
	for (unsigned k = 0; k < n; k++)
		total += by_k[k]->qf->nrecords;
	struct named *names = malloc((total ? total : 1) * sizeof(*names));
	if (!names)
		return qs_diag_set(diag, -ENOMEM, "out of memory");
	for (unsigned k = 0; k < n && !rc; k++) {
		const struct part *p = by_k[k];
		for (size_t i = 0; i < p->qf->nrecords; i++) {
			const struct qs_record *r = &p->qf->records[i];
			uint64_t rb, re, rows = record_rows(r);
			record_range(r, &rb, &re);
			if (open) {
				if (!same_tensor(open, r) || rb != open_end) {
					rc = qs_diag_set(diag, -QS_EMISMATCH,
							 "'%s': tensor '%s' rows %llu-%llu should "
							 "continue tensor '%s' from row %llu, where "
							 "'%s' left it",
							 p->fname, r->name, (unsigned long long)rb,
							 (unsigned long long)re, open->name,
							 (unsigned long long)open_end, open_in->fname);
					break;
				}
				was_split = true;
			} else if (rb != 0) {
				rc = qs_diag_set(diag, -QS_EMISMATCH,
						 "'%s': tensor '%s' starts at row %llu, but no "
						 "earlier part holds its first rows",
						 p->fname, r->name, (unsigned long long)rb);
				break;
			}
			if (re < rows && r->nchunks) {
				if (i + 1 != p->qf->nrecords) {
					rc = qs_diag_set(diag, -QS_EFORMAT,
							 "'%s': tensor '%s' stops at row %llu of %llu "
							 "before the end of the part",
							 p->fname, r->name, (unsigned long long)re,
							 (unsigned long long)rows);
					break;
				}
				open = r;
				open_in = p;
				open_end = re;
				continue;
			}
			if (was_split)
				(*split)++;
			was_split = false;
			open = NULL;
			names[count++] = (struct named){r->name, p->fname};
		}
	}
	if (!rc && open)
		rc = qs_diag_set(diag, -QS_EMISMATCH,
				 "'%s': tensor '%s' stops at row %llu of %llu and no later part "
				 "continues it",
				 open_in->fname, open->name, (unsigned long long)open_end,
				 (unsigned long long)record_rows(open));
	if (!rc && count > 1) {
		qsort(names, count, sizeof(*names), cmp_named);
		for (size_t i = 1; i < count && !rc; i++)
			if (strcmp(names[i - 1].name, names[i].name) == 0)
				rc = qs_diag_set(diag, -QS_EMISMATCH,
						 "tensor '%s' is held twice ('%s' and '%s')",
						 names[i].name, names[i - 1].fname, names[i].fname);
	}
	free(names);
	*tensors = count;
	return rc;
}

/* ------------------------------------------------------------- copying */

struct copier {
	struct qs_cwriter *w;
	uint8_t *frame;            /* one stored frame at a time */
	size_t frame_cap;
	uint8_t *out;              /* decompressed piece, for the payload hash */
	size_t out_cap;
	ZSTD_DCtx *dctx;
	XXH3_state_t *hash;
	struct qs_chunk_entry *chunks;  /* the current tensor's, as written */
	size_t nchunks, chunks_cap;
	uint64_t bytes_read;
};

/* Checks that the frame decompresses to exactly the recorded payload,
 * streaming through a fixed buffer so memory does not grow with it. */
static int check_payload(struct copier *c, const struct part *p, const struct qs_record *r,
			 uint32_t ci, size_t len, struct qs_diag *diag)
{
	const struct qs_chunk_entry *e = &r->chunks[ci];
	ZSTD_DCtx_reset(c->dctx, ZSTD_reset_session_only);
	XXH3_64bits_reset(c->hash);
	ZSTD_inBuffer in = {c->frame, len, 0};
	uint64_t got = 0;
	size_t ret = 1;
	while (ret != 0) {
		ZSTD_outBuffer out = {c->out, c->out_cap, 0};
		ret = ZSTD_decompressStream(c->dctx, &out, &in);
		if (ZSTD_isError(ret))
			return qs_diag_set(diag, -QS_ECHECKSUM,
					   "'%s': tensor '%s': chunk %u: decompression failed: %s",
					   p->fname, r->name, ci, ZSTD_getErrorName(ret));
		XXH3_64bits_update(c->hash, c->out, out.pos);
		got += out.pos;
		if (ret != 0 && in.pos == in.size && out.pos < out.size)
			return qs_diag_set(diag, -QS_ECHECKSUM,
					   "'%s': tensor '%s': chunk %u: truncated zstd frame",
					   p->fname, r->name, ci);
	}
	if (in.pos != in.size || got != e->payload_size ||
	    XXH3_64bits_digest(c->hash) != e->payload_xxh3)
		return qs_diag_set(diag, -QS_ECHECKSUM,
				   "'%s': tensor '%s': chunk %u: payload checksum mismatch",
				   p->fname, r->name, ci);
	return 0;
}

static int copy_chunk(struct copier *c, const struct part *p, const struct qs_record *r,
		      uint32_t ci, struct qs_diag *diag)
{
	const struct qs_chunk_entry *e = &r->chunks[ci];
	if (e->frame_size > SIZE_MAX / 2)
		return qs_diag_set(diag, -QS_ETOOBIG, "'%s': tensor '%s': chunk %u too large",
				   p->fname, r->name, ci);
	size_t len = (size_t)e->frame_size;
	if (len > c->frame_cap) {
		uint8_t *nb = realloc(c->frame, len);
		if (!nb)
			return qs_diag_set(diag, -ENOMEM, "'%s': tensor '%s': out of memory",
					   p->fname, r->name);
		c->frame = nb;
		c->frame_cap = len;
	}
	int rc = qs_pread_full(p->qf->fd, c->frame, len, e->frame_offset);
	if (rc < 0)
		return qs_diag_set(diag, rc, "'%s': tensor '%s': chunk %u: read failed: %s",
				   p->fname, r->name, ci, qs_strerror(rc));
	/* the stored bytes first: this covers every bit zstd would ignore */
	if (XXH3_64bits(c->frame, len) != e->frame_xxh3)
		return qs_diag_set(diag, -QS_ECHECKSUM,
				   "'%s': tensor '%s': chunk %u: frame checksum mismatch", p->fname,
				   r->name, ci);
	rc = check_payload(c, p, r, ci, len, diag);
	if (rc < 0)
		return rc;
	uint64_t off;
	rc = qs_cwriter_frame(c->w, c->frame, len, &off, diag);
	if (rc < 0)
		return rc;
	if (c->nchunks == c->chunks_cap) {
		size_t cap = c->chunks_cap ? c->chunks_cap * 2 : 64;
		struct qs_chunk_entry *nc = realloc(c->chunks, cap * sizeof(*nc));
		if (!nc)
			return qs_diag_set(diag, -ENOMEM, "out of memory");
		c->chunks = nc;
		c->chunks_cap = cap;
	}
	c->chunks[c->nchunks] = *e;
	c->chunks[c->nchunks].frame_offset = off;
	c->nchunks++;
	c->bytes_read += len;
	return 0;
}

static void report(const struct qs_merge_opts *o, uint64_t done, uint64_t total,
		   uint64_t bytes, uint64_t bytes_total, double t0, const char *name)
{
	if (!o->progress)
		return;
	struct qs_progress pr = {0};
	pr.tensors_done = done;
	pr.tensors_total = total;
	pr.bytes_read = bytes;
	pr.bytes_total = bytes_total;
	pr.bytes_written = bytes;
	pr.seconds = now_seconds() - t0;
	pr.tensor = name;
	o->progress(&pr, o->progress_user);
}

static int copy_all(const struct qs_merge_opts *o, const struct part *const *by_k,
		    unsigned n, struct copier *c, uint64_t tensors, double t0,
		    struct qs_diag *diag)
{
	uint64_t done = 0, bytes_total = 0;
	for (unsigned k = 0; k < n; k++)
		for (size_t i = 0; i < by_k[k]->qf->nrecords; i++)
			for (uint32_t ci = 0; ci < by_k[k]->qf->records[i].nchunks; ci++)
				bytes_total += by_k[k]->qf->records[i].chunks[ci].frame_size;
	for (unsigned k = 0; k < n; k++) {
		const struct part *p = by_k[k];
		for (size_t i = 0; i < p->qf->nrecords; i++) {
			const struct qs_record *r = &p->qf->records[i];
			for (uint32_t ci = 0; ci < r->nchunks; ci++) {
				if (o->stop && *o->stop)
					return qs_diag_set(diag, -QS_EINTERRUPTED,
							   "'%s': merge interrupted", o->output);
				int rc = copy_chunk(c, p, r, ci, diag);
				if (rc < 0)
					return rc;
			}
			uint64_t rb, re;
			record_range(r, &rb, &re);
			if (r->nchunks && re < record_rows(r))
				continue;  /* the next part holds the rest (check_chain) */
			struct qs_record out = *r;
			out.chunks = c->chunks;
			out.nchunks = (uint32_t)c->nchunks;
			int rc = qs_cwriter_record(c->w, &out, diag);
			if (rc < 0)
				return rc;
			c->nchunks = 0;
			report(o, ++done, tensors, c->bytes_read, bytes_total, t0, r->name);
		}
	}
	return 0;
}

/* ------------------------------------------------------------- entry */

/* The output must not be one of the parts (merge reads them to the end). */
static int check_output(const char *output, const struct part *parts, size_t np,
			struct qs_diag *diag)
{
	struct stat so;
	if (stat(output, &so) != 0)
		return 0;
	for (size_t i = 0; i < np; i++) {
		struct stat sp;
		if (fstat(parts[i].qf->fd, &sp) == 0 && sp.st_dev == so.st_dev &&
		    sp.st_ino == so.st_ino)
			return qs_diag_set(diag, -QS_EUSAGE,
					   "'%s': the output is one of the parts", output);
	}
	return 0;
}

int qs_merge(const struct qs_merge_opts *o, struct qs_merge_result *res,
	     struct qs_diag *diag)
{
	double t0 = now_seconds();
	memset(res, 0, sizeof(*res));
	if (!o->output || o->nparts == 0)
		return qs_diag_set(diag, -QS_EUSAGE, "merge needs an output and at least one part");
	struct part *parts = calloc(o->nparts, sizeof(*parts));
	const struct part **by_k = NULL;
	struct copier c = {0};
	char *options = NULL;
	int rc = 0;
	if (!parts)
		return qs_diag_set(diag, -ENOMEM, "out of memory");
	for (size_t i = 0; i < o->nparts && rc == 0; i++) {
		parts[i].path = o->parts[i];
		rc = open_part(&parts[i], diag);
	}
	if (rc < 0)
		goto out;
	const struct part *ref = &parts[reference(parts, o->nparts)];
	by_k = calloc(ref->n, sizeof(*by_k));
	if (!by_k) {
		rc = qs_diag_set(diag, -ENOMEM, "out of memory");
		goto out;
	}
	rc = check_set(parts, o->nparts, ref, o->output, by_k, diag);
	if (rc < 0)
		goto out;
	size_t tensors = 0, split = 0;
	rc = check_chain(by_k, ref->n, &tensors, &split, diag);
	if (rc < 0)
		goto out;
	rc = check_output(o->output, parts, o->nparts, diag);
	if (rc < 0)
		goto out;

	/* the whole conversion's header: the options without the suffix */
	options = strndup(ref->qf->header.options, ref->prefix_len);
	c.dctx = ZSTD_createDCtx();
	c.hash = XXH3_createState();
	c.out_cap = ZSTD_DStreamOutSize();
	c.out = malloc(c.out_cap);
	if (!options || !c.dctx || !c.hash || !c.out) {
		rc = qs_diag_set(diag, -ENOMEM, "out of memory");
		goto out;
	}
	struct qs_header h = ref->qf->header;
	h.options = options;
	h.options_fp = XXH3_64bits(options, strlen(options));
	/* the data is synced once at the end: a failed merge is simply rerun */
	rc = qs_cwriter_create(o->output, &h, o->force, false, &c.w, diag);
	if (rc < 0)
		goto out;
	rc = copy_all(o, by_k, ref->n, &c, tensors, t0, diag);
	if (rc == 0) {
		rc = qs_cwriter_finish(c.w, diag);
		c.w = NULL;
		if (rc < 0)
			goto out;
	}
	if (rc < 0) {
		struct qs_diag ignore;
		char partial[4200];
		qs_cwriter_close_partial(c.w, &ignore);
		c.w = NULL;
		/* nothing in it is worth resuming: the parts are all still there */
		snprintf(partial, sizeof(partial), "%s.partial", o->output);
		unlink(partial);
		goto out;
	}
	res->tensors = tensors;
	res->parts = ref->n;
	res->split_tensors = split;
	res->bytes_read = c.bytes_read;
	struct stat st;
	if (stat(o->output, &st) == 0)
		res->output_bytes = (uint64_t)st.st_size;
	if (o->remove_parts) {
		for (size_t i = 0; i < o->nparts; i++) {
			if (unlink(parts[i].path) != 0 && errno != ENOENT) {
				rc = -errno;
				qs_diag_set(diag, rc, "'%s': wrote '%s' but cannot remove the part: %s",
					    parts[i].fname, o->output, qs_strerror(rc));
				break;
			}
		}
	}
	res->seconds = now_seconds() - t0;
out:
	for (size_t i = 0; i < o->nparts; i++)
		qs_qfile_free(parts[i].qf);
	free(parts);
	free(by_k);
	free(options);
	free(c.frame);
	free(c.out);
	free(c.chunks);
	ZSTD_freeDCtx(c.dctx);
	XXH3_freeState(c.hash);
	return rc;
}
